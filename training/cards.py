"""The model card a training run writes, and the run's bookkeeping (machine, library versions)."""
from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import sys
from pathlib import Path
from typing import Any

import keras
import numpy
import tensorflow as tf
import tensorflow_datasets as tfds

from training.recipes import Recipe
from zoo import artifact, export
from zoo.data import images, ptb
from zoo.registry import ModelSpec

# The vector extensions that decide CPU training speed here (reported beside every time).
VECTOR_EXTENSIONS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
# Settings that keep the kernels of oneDNN (TensorFlow's and PyTorch's), MKL and PyTorch's own to an
# older instruction set than the CPU has (`make bench ISA=avx2`): a run under them says so.
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")


def files_sha256(dataset: str) -> dict[str, str]:
    """file name -> sha256 of the official files the dataset is built from."""
    if dataset == "ptb":
        return ptb.dataset_checksums()
    return images.image_dataset(dataset).files_sha256()


def make_card(spec: ModelSpec, recipe: Recipe, model: keras.Model, metrics: dict, history: dict,
              wall_seconds: float, extra: dict | None = None, destination: Path | None = None) -> dict[str, Any]:
    """The card of a run that exports to `destination` (default: the committed artifact's folder)."""
    dataset_card: dict[str, Any] = {"name": spec.dataset, "files_sha256": files_sha256(spec.dataset)}
    if spec.dataset in tfds.list_builders():
        dataset_card["version"] = str(tfds.builder(spec.dataset).info.version)
    return {
        "name": spec.name,
        "task": spec.task,
        "description": spec.description,
        "metrics": metrics,
        "bar": {"metric": spec.metric, "value": spec.bar},
        "reference": spec.reference,
        "parameter_count": int(model.count_params()),
        "label_names": list(spec.label_names),
        "model_config": _plain(dataclasses.asdict(spec.config)),
        "recipe": _plain(dataclasses.asdict(recipe)),
        "dataset": dataset_card,
        "preprocessing": export.preprocessing_doc(spec),
        "signatures": export.signature_doc(spec, model),
        "training": {
            "command": f"make train-{spec.name}",
            "epochs_run": len(history.get("epoch", [])),
            "wall_time_seconds": round(history.get("elapsed_seconds", [wall_seconds])[-1], 1),
            "hardware": hardware_summary(),
            "history": history,
        },
        "versions": library_versions(),
        "created": utc_now(),
        **({"previous": previous} if (previous := previous_artifact(destination or artifact.committed_dir(spec.name)))
           else {}),
        **(extra or {}),
    }


def previous_artifact(folder: Path) -> dict[str, Any] | None:
    """The artifact in `folder` that a new export there replaces: its version and numeric test and
    validation metrics (the bench times the new run to them); None where there is none."""
    if not artifact.is_artifact(folder):
        return None
    try:
        card = artifact.read_card(folder)
        version = artifact.card_version(card)
        entries = card.get("metrics")
    except artifact.ArtifactError:
        return None  # an unreadable old card must not cost the run: the new card just lacks the link
    metrics = {}
    for key, entry in (entries if isinstance(entries, dict) else {}).items():
        value = entry.get("value") if isinstance(entry, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[key] = float(value)  # a figure that is not a number is left out, not the link
    return {"version": version, "created": card.get("created"), "metrics": metrics}


def cpu_description() -> tuple[str, list[str]]:
    """(CPU model name, the VECTOR_EXTENSIONS it has), from /proc/cpuinfo where there is one."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model, [name for name in VECTOR_EXTENSIONS if name in flags]


def isa_limits() -> dict[str, str]:
    """The ISA_LIMITS set in this process's environment, name -> value."""
    return {name: os.environ[name] for name in ISA_LIMITS if os.environ.get(name)}


def hardware_summary() -> dict[str, Any]:
    cpu, extensions = cpu_description()
    gpu = bool(tf.config.list_physical_devices("GPU"))
    limits = isa_limits()
    limited = f"; kernels limited by {', '.join(f'{k}={v}' for k, v in limits.items())}" if limits else ""
    summary = f"GPU{limited}" if gpu else (f"{os.cpu_count()} CPU cores ({cpu}, {platform.machine()}, "
                                           f"{'/'.join(extensions) or 'no AVX2'}{limited}), no GPU")
    return {"summary": summary, "cpu_count": os.cpu_count(), "cpu_model": cpu, "vector_extensions": extensions,
            "isa_limits": limits, "machine": platform.machine(), "platform": platform.platform()}


def library_versions() -> dict[str, str]:
    return {"python": sys.version.split()[0], "tensorflow": tf.__version__,
            "keras": keras.__version__, "tensorflow_datasets": tfds.__version__,
            "numpy": numpy.__version__}


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
