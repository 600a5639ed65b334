"""The artifact format: where an artifact lives, how a name resolves to it, its model card and
its MANIFEST.sha256 (the sha256 of every other file, checked before anything is loaded).

An artifact folder holds a SavedModel (saved_model.pb, variables/, assets/), model.weights.h5,
model_card.json, README.md, training_curve.png and MANIFEST.sha256.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from zoo import registry

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPORT_ROOT = REPO_ROOT / "exported_models"
MANIFEST_NAME = "MANIFEST.sha256"
CARD_NAME = "model_card.json"
# The card's keys and their types; `zoo verify` checks committed cards against them.
CARD_KEYS = {"name": str, "task": str, "metrics": dict, "parameter_count": int, "label_names": list,
             "model_config": dict, "recipe": dict, "dataset": dict, "preprocessing": str,
             "signatures": dict, "training": dict, "versions": dict, "created": str}


def cache_dir() -> Path:
    """The zoo's cache (conversions): $ZOO_CACHE_DIR, else ~/.cache/zoo."""
    return Path(os.environ.get("ZOO_CACHE_DIR") or Path.home() / ".cache" / "zoo").expanduser()


class ArtifactError(ValueError):
    """An artifact folder is missing, not a zoo artifact, or fails its manifest."""


def committed_dir(name: str) -> Path:
    """Where the registered model `name`'s artifact lives in this checkout."""
    return EXPORT_ROOT / registry.get(name).name


def is_trained(name: str) -> bool:
    return committed_dir(name).is_dir()


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A registry name -> its committed artifact folder; anything else is taken as a folder path."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"expected a model name or artifact folder path, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    if text in registry.list_models():
        path = committed_dir(text)
        if not path.is_dir():
            raise ArtifactError(f"model {text!r} is registered but not trained: no artifact at {path}; "
                                f"run `make train-{text}`")
        return path
    path = Path(text)
    if not path.is_dir():
        raise ArtifactError(f"{text!r} is neither a registered model ({', '.join(registry.list_models())}) "
                            "nor an artifact folder")
    return path


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The model card of the artifact folder `path` (its manifest is not checked here)."""
    card_path = Path(path) / CARD_NAME
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if not isinstance(card, dict) or not isinstance(card.get("task"), str) or not isinstance(card.get("name"), str):
            raise ValueError("no 'task' and 'name' strings")
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{path}: not a zoo artifact ({CARD_NAME} unreadable or incomplete: {error})") from None
    return card


def committed_card(name: str) -> dict[str, Any] | None:
    """The committed artifact's card for the registered model `name`; None if untrained."""
    return read_card(committed_dir(name)) if is_trained(name) else None


def card_value(spec: registry.ModelSpec, card: dict[str, Any]) -> float:
    """The test metric the bar judges, from a card of `spec`'s model."""
    return float(card["metrics"][spec.metric_key]["value"])


def committed_value(spec: registry.ModelSpec) -> float | None:
    """The committed artifact's test metric (the one the bar judges); None if untrained."""
    card = committed_card(spec.name)
    return None if card is None else card_value(spec, card)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _artifact_files(root: Path) -> list[str]:
    """Relative POSIX paths of every entry below root except the manifest; refuses links."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for entry in dirnames + filenames:
            path = Path(dirpath) / entry
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise ArtifactError(f"{root}: {relative} is a symbolic link; an artifact holds only files")
            if entry in filenames and relative != MANIFEST_NAME:
                files.append(relative)
    return sorted(files)


def write_manifest(root: Path) -> Path:
    lines = [f"{sha256_file(root / name)}  {name}\n" for name in _artifact_files(root)]
    manifest = root / MANIFEST_NAME
    manifest.write_text("".join(lines))
    return manifest


def verify_manifest(root: str | os.PathLike) -> None:
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


def card_problems(card: dict[str, Any], spec: registry.ModelSpec) -> list[str]:
    """What is wrong with a committed card for the registered model `spec` (empty: nothing)."""
    problems = [f"card key {key!r} missing or not a {kind.__name__}"
                for key, kind in CARD_KEYS.items() if not isinstance(card.get(key), kind)]
    if problems:
        return problems
    if card["name"] != spec.name:
        problems.append(f"card name {card['name']!r} != registry name {spec.name!r}")
    if card["parameter_count"] != spec.parameter_count:
        problems.append(f"card parameter_count {card['parameter_count']} != registry {spec.parameter_count}")
    for key, entry in card["metrics"].items():
        if not {"value", "split", "examples"} <= set(entry):
            problems.append(f"metric {key!r} lacks value/split/examples")
    if spec.metric_key not in card["metrics"]:
        problems.append(f"card has no {spec.metric_key}")
    return problems


def verify_all(names: list[str] | None = None) -> list[str]:
    """`zoo verify`: every committed artifact's manifest and card; returns the problems found."""
    problems = []
    for name in names or registry.list_models():
        if not is_trained(name):
            continue  # not trained: nothing to verify
        folder = committed_dir(name)
        try:
            verify_manifest(folder)
            card = read_card(folder)
        except ArtifactError as error:
            problems.append(f"{name}: {error}")
            continue
        problems.extend(f"{name}: {problem}" for problem in card_problems(card, registry.get(name)))
    return problems
