"""MANIFEST.sha256: the sha256 of every other file of an artifact, checked before loading."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

MANIFEST_NAME = "MANIFEST.sha256"


class ArtifactError(ValueError):
    """An artifact folder is missing, not a zoo artifact, or fails its manifest."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _artifact_files(root: Path) -> list[str]:
    """Relative POSIX paths of every entry below root except the manifest; refuses links
    that leave the artifact."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for entry in dirnames + filenames:
            path = Path(dirpath) / entry
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                target = path.resolve()
                if root.resolve() not in target.parents:
                    raise ArtifactError(f"{relative}: symbolic link points outside the artifact ({target})")
                raise ArtifactError(f"{relative}: symbolic links are not allowed in an artifact")
            if entry in filenames and relative != MANIFEST_NAME:
                files.append(relative)
    return sorted(files)


def write_manifest(root: Path) -> Path:
    lines = [f"{sha256_file(root / name)}  {name}\n" for name in _artifact_files(root)]
    manifest = root / MANIFEST_NAME
    manifest.write_text("".join(lines))
    return manifest


def verify_manifest(root: Path) -> None:
    """Raise ArtifactError naming the first file that is changed, missing or unlisted."""
    root = Path(root)
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        raise ArtifactError(f"{root}: not a zoo artifact (no {MANIFEST_NAME})")
    expected = {}
    for number, line in enumerate(manifest.read_text().splitlines(), 1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise ArtifactError(f"{manifest}: line {number} is malformed: {line!r}")
        expected[name] = digest
    present = set(_artifact_files(root))
    for name in sorted(present - set(expected)):
        raise ArtifactError(f"{root}: file {name} is not listed in {MANIFEST_NAME}")
    for name, digest in sorted(expected.items()):
        if name not in present:
            raise ArtifactError(f"{root}: file {name} listed in {MANIFEST_NAME} is missing")
        if sha256_file(root / name) != digest:
            raise ArtifactError(f"{root}: file {name} does not match its sha256 in {MANIFEST_NAME} "
                                "(modified or truncated)")
