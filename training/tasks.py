"""Train -> evaluate on the full test split -> export, for one registered model: the one place
in training that picks the code for a task."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import keras
import tensorflow as tf

from training import distribute, image_task, language_task, loop
from training.recipes import resolve
from zoo import artifact, export, registry

TRAINERS = {"image": image_task.train, "language": language_task.train}
# Train without exporting; returns the final weights' metrics (the paper-schedule runs).
FIT_AND_MEASURE = {"image": image_task.fit_and_measure, "language": language_task.fit_and_measure}
# The split a card's per-epoch `val_*` history was measured on, from the card's recipe (image recipes
# made before the `validation` setting read the test split each epoch; PTB has its own validation split).
EPOCH_VALIDATION_SPLIT = {"image": lambda recipe: recipe.get("validation", "test"),
                          "language": lambda recipe: "validation"}


def train(name: str, overrides: Mapping[str, Any] | None = None, data_dir=None,
          destination: str | os.PathLike | None = None, work_dir: Path | None = None,
          strategy: tf.distribute.Strategy | None = None, verbose: int | str = "auto") -> Path | None:
    """Train the registered model `name` and export it; returns the artifact folder (None on a
    multi-worker run's non-chief workers, which only train). Holds work_dir's lock throughout:
    a second training of the same folder is refused (loop.WorkDirBusy) instead of mixing with it."""
    spec = registry.get(name)
    recipe = resolve(spec, overrides)
    destination = Path(destination) if destination else None  # --output arrives as a string
    export.check_target(destination or artifact.export_dir(name))  # before hours of training
    keras.utils.set_random_seed(recipe.seed)
    work_dir = Path(work_dir or loop.CHECKPOINT_ROOT / name)
    if distribute.is_multi_worker(strategy):
        # Its custom loop keeps no checkpoints, and a one-machine cluster's workers share the folder.
        return TRAINERS[spec.task](spec, recipe, data_dir, destination, work_dir, strategy, verbose)
    with loop.work_dir_lock(work_dir):
        return TRAINERS[spec.task](spec, recipe, data_dir, destination, work_dir, strategy, verbose)
