"""Publishing: the pin file (`make pins`), the archives and index (`make package`) and TF
Serving's layout (`make export-serving`)."""
from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from zoo import artifact, hub, registry
from zoo.files import write_atomically

SAVED_MODEL_PARTS = ("saved_model.pb", "fingerprint.pb", "variables", "assets")


def trained_models() -> list[str]:
    return [name for name in registry.list_models() if artifact.is_trained(name)]


def current_pins() -> dict[str, dict[str, str]]:
    """The pins the committed artifacts need: every pinned version kept, each trained model's
    current version set to its manifest's digest."""
    pins = hub.read_pins()
    for name in trained_models():
        folder = artifact.committed_dir(name)
        version = artifact.card_version(artifact.read_card(folder))
        pins.setdefault(name, {})[str(version)] = artifact.manifest_digest(folder)
    return {name: dict(sorted(versions.items(), key=lambda item: int(item[0])))
            for name, versions in sorted(pins.items())}


def write_pins(path: Path = hub.PINS_PATH) -> Path:
    """`make pins`: zoo/pins.json from the committed artifacts (after verifying each manifest)."""
    for name in trained_models():
        artifact.verify_manifest(artifact.committed_dir(name))
    write_atomically(path, (json.dumps(current_pins(), indent=2) + "\n").encode())
    return path


def archive_bytes(folder: Path) -> bytes:
    """The artifact folder as a reproducible .tar.gz: members relative to the artifact's root,
    sorted, files 0644 and folders 0755, no owners, times 0."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.mtime = 0
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.mode, info.size = 0o644, path.stat().st_size
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as compressed:
        compressed.write(raw.getvalue())
    return out.getvalue()


def index_entry(name: str, folder: Path, archive_name: str, data: bytes) -> dict[str, Any]:
    card = artifact.read_card(folder)
    spec = registry.get(name)
    metric = card["metrics"][spec.metric_key]
    return {"name": name, "version": artifact.card_version(card), "archive": archive_name,
            "sha256": artifact.sha256_bytes(data), "manifest_sha256": artifact.manifest_digest(folder),
            "size": len(data), "metric": {"name": spec.metric_key, "value": metric["value"],
                                          "split": metric.get("split"), "examples": metric.get("examples")}}


def package(output: str | os.PathLike) -> Path:
    """`make package`: <output>/<name>-<version>.tar.gz for every trained model, pinned and
    verified, and <output>/index.json (entries of earlier versions whose archives are still
    there are kept, so a mirror can serve every published version)."""
    output = Path(output)
    entries: dict[tuple[str, int], dict[str, Any]] = {}
    index_path = output / hub.INDEX_NAME
    if index_path.is_file():
        for entry in json.loads(index_path.read_text()).get("models", []):
            if (output / entry["archive"]).is_file():
                entries[(entry["name"], entry["version"])] = entry
    for name in trained_models():
        folder = hub.check_pinned(artifact.committed_dir(name), name, "this checkout")
        version = artifact.card_version(artifact.read_card(folder))
        archive_name = f"{name}-{version}.tar.gz"
        data = archive_bytes(folder)
        write_atomically(output / archive_name, data)
        entries[(name, version)] = index_entry(name, folder, archive_name, data)
    index = {"format": 1, "models": [entries[key] for key in sorted(entries)]}
    write_atomically(index_path, (json.dumps(index, indent=2) + "\n").encode())
    return index_path


def export_serving(output: str | os.PathLike, names: list[str] | None = None) -> list[Path]:
    """`python -m zoo export-serving DIR`: DIR/<name>/<version>/ holding the SavedModel of every
    trained model (resolved by name, so pinned and verified), as TF Serving reads a model base path."""
    output = Path(output)
    written = []
    for name in names or [name for name in registry.list_models() if hub.pinned_versions(name)]:
        folder = hub.resolve(name)
        version = artifact.card_version(artifact.read_card(folder))
        destination = output / name / str(version)
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=destination.parent))
        try:
            for part in SAVED_MODEL_PARTS:
                source = folder / part
                if source.is_dir():
                    shutil.copytree(source, staging / part)
                elif source.is_file():
                    shutil.copyfile(source, staging / part)
            staging.chmod(0o755)
            if destination.exists():
                shutil.rmtree(destination)
            os.replace(staging, destination)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        written.append(destination)
    return written
