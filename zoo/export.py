"""Write an artifact: SavedModel with named signatures, weights, card, README, manifest.

Everything is written into a temporary folder beside the destination and renamed into
place only when complete, so a crash never leaves a half-written artifact.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import keras

from zoo import artifact, tasks
from zoo.artifact import CARD_NAME, MANIFEST_NAME, export_dir, interrupted_export, is_artifact, write_manifest
from zoo.card import write_card_readme
from zoo.registry import ModelSpec


class ExportError(RuntimeError):
    """Writing an artifact failed; nothing was half-written."""


def export(model: keras.Model, spec: ModelSpec, card: dict, destination: Path | None = None,
           extra_files: dict[str, bytes] | None = None) -> Path:
    """Export `model` to `destination` (default: exported_models/<name>/) atomically. The
    destination must be absent, an empty folder or a zoo artifact (which is replaced). The
    card's `version` is the replaced artifact's + 1 (1 for a new one) unless the card sets it;
    a replaced committed artifact then needs `make pins` (tests/test_library.py says so)."""
    destination = Path(destination or export_dir(spec.name))
    check_target(destination)
    if "version" not in card:
        card = {**card, "version": next_version(destination)}
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{destination.name}-", dir=destination.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the artifact from other users
    except OSError as error:
        raise ExportError(f"could not create a folder beside {destination}: {error}") from error
    try:
        archive = tasks.get(spec.task).archive(model, spec, staging)
        archive.write_out(str(staging), verbose=False)
        save_weights_only(model, staging / "model.weights.h5")
        for name, content in (extra_files or {}).items():
            (staging / name).write_bytes(content)
        (staging / CARD_NAME).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
        write_card_readme(staging, card)
        write_manifest(staging)
        replace_directory(staging, destination)
    except OSError as error:  # disk full, permissions: say where, keep the old artifact
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"could not write the {spec.name} artifact to {destination}: {error}; "
                          "the previous artifact, if any, is unchanged") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def check_target(destination: Path) -> None:
    """Refuse (ExportError) to export over anything but nothing, an empty folder or a zoo
    artifact: whatever else is there belongs to the user and is never deleted."""
    destination = Path(destination)
    if destination.is_symlink() or (destination.exists() and not destination.is_dir()):
        raise ExportError(f"{destination} exists and is not a folder; give a new folder for the artifact")
    if destination.is_dir() and any(destination.iterdir()) and not is_artifact(destination):
        raise ExportError(f"{destination} is a folder that is neither empty nor a zoo artifact (no {MANIFEST_NAME} "
                          f"and {CARD_NAME}): refused, nothing in it is touched; give a new or empty folder")


def next_version(destination: Path) -> int:
    """The version an export to `destination` gets: the replaced artifact's (or the one an
    interrupted export left) + 1; 1 for a new artifact."""
    for folder in (destination, interrupted_export(destination)):
        if is_artifact(folder):
            try:
                return artifact.card_version(artifact.read_card(folder)) + 1
            except artifact.ArtifactError:
                continue  # an unreadable card: the version cannot be read, so start again from 1
    return 1


def save_weights_only(model: keras.Model, path: Path) -> None:
    """model.weights.h5 without the optimizer's slots (Keras saves them once compiled):
    what get_model(pretrained=True) needs, at a third of the size for Adam."""
    optimizer = getattr(model, "optimizer", None)
    model.optimizer = None
    try:
        model.save_weights(path)
    finally:
        model.optimizer = optimizer


def replace_directory(new: Path, destination: Path) -> None:
    """Swap `new` into `destination`; the old artifact is kept until the new one is in place."""
    previous = interrupted_export(destination)
    restore_interrupted(destination)
    if destination.exists():
        os.replace(destination, previous)
    try:
        os.replace(new, destination)
    except BaseException:
        if previous.exists():
            os.replace(previous, destination)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def restore_interrupted(destination: Path) -> None:
    """After a crash between the two renames, put the previous artifact back."""
    previous = interrupted_export(destination)
    if previous.exists() and not destination.exists():
        os.replace(previous, destination)


def signature_doc(spec: ModelSpec, model: keras.Model) -> dict:
    """Human-readable description of the artifact's signatures, for the model card."""
    return tasks.get(spec.task).signature_doc(spec, model)


def preprocessing_doc(spec: ModelSpec) -> str:
    """What the graph does to the raw input, for the model card."""
    return tasks.get(spec.task).preprocessing_doc(spec)
