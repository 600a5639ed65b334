"""fit() with resumable checkpoints, a CSV log and a clock; then evaluate and export."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import keras
import numpy

from training.recipes import Recipe

CHECKPOINT_ROOT = Path(__file__).resolve().parent / "checkpoints"


def learning_rate_schedule(recipe: Recipe, steps_per_epoch: int):
    total_steps = max(1, recipe.epochs * steps_per_epoch)
    warmup_steps = int(recipe.warmup_epochs * steps_per_epoch)
    if recipe.schedule == "constant":
        return recipe.learning_rate
    if recipe.schedule == "cosine":
        if warmup_steps:
            return keras.optimizers.schedules.CosineDecay(
                0.0, max(1, total_steps - warmup_steps), warmup_target=recipe.learning_rate,
                warmup_steps=warmup_steps)
        return keras.optimizers.schedules.CosineDecay(recipe.learning_rate, total_steps)
    if recipe.schedule == "steps":
        # PiecewiseConstantDecay keeps the old rate while step <= boundary; step e*steps is the
        # first of epoch e, so the boundary sits one step earlier.
        boundaries = [epoch * steps_per_epoch - 1 for epoch in recipe.step_epochs]
        values = [recipe.learning_rate * recipe.step_factor ** index for index in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    raise ValueError(f"schedule must be constant, cosine or steps, got {recipe.schedule!r}")


def make_optimizer(recipe: Recipe, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    rate = learning_rate_schedule(recipe, steps_per_epoch)
    clip = {"global_clipnorm": recipe.gradient_clip_norm} if recipe.gradient_clip_norm else {}
    if recipe.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=recipe.weight_decay, **clip)
    if recipe.optimizer == "sgd":
        return CoupledWeightDecaySGD(rate, momentum=recipe.momentum, nesterov=True,
                                     l2=recipe.weight_decay, **clip)
    raise ValueError(f"optimizer must be adamw or sgd, got {recipe.optimizer!r}")


class CoupledWeightDecaySGD(keras.optimizers.SGD):
    """SGD whose weight decay adds l2 * w to the gradient, so that it passes through the momentum
    as in He et al. 2016 and PyTorch. Keras' own `weight_decay` shrinks the weights outside the
    momentum, which at momentum 0.9 is about 10x weaker for the same coefficient (the 40- and
    100-epoch ResNet-20 runs were trained that way, with 5e-4). Every variable is decayed."""

    def __init__(self, *args, l2: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.l2 = l2

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = gradient + keras.ops.cast(self.l2, variable.dtype) * variable
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


class EpochClock(keras.callbacks.Callback):
    """Adds cumulative training seconds (across resumed runs) and the learning rate to logs."""

    def __init__(self, log_path: Path):
        super().__init__()
        self.log_path = log_path
        self.offset = 0.0

    def on_train_begin(self, logs=None):
        history = read_history(self.log_path)
        self.offset = history["elapsed_seconds"][-1] if history.get("elapsed_seconds") else 0.0
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["elapsed_seconds"] = self.offset + time.perf_counter() - self.start
            optimizer = self.model.optimizer
            # The perceptron has an optimizer it never steps.
            if optimizer is not None and int(keras.ops.convert_to_numpy(optimizer.iterations)) > 0:
                logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class TimeLimit(keras.callbacks.Callback):
    """Stops training after the first epoch that ends past `minutes` of cumulative training time
    (EpochClock's elapsed_seconds, so resumed runs count their earlier sessions)."""

    def __init__(self, minutes: float):
        super().__init__()
        self.minutes = minutes

    def on_epoch_end(self, epoch, logs=None):
        if logs and logs.get("elapsed_seconds", 0.0) >= 60 * self.minutes:
            self.model.stop_training = True


def read_history(log_path: Path) -> dict[str, list[float]]:
    """CSVLogger's file as columns; the epoch column is 1-based."""
    if not log_path.is_file():
        return {}
    with open(log_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    history = {key: [float(row[key]) for row in rows if row.get(key) not in (None, "")] for key in rows[0]}
    history["epoch"] = [int(value) + 1 for value in history["epoch"]]
    return history


def completed_epochs(work_dir: Path) -> int:
    """Epochs an interrupted run in work_dir has finished (0 for a fresh run)."""
    return len(read_history(work_dir / "log.csv").get("epoch", []))


def fit(model: keras.Model, recipe: Recipe, train_data, validation_data, work_dir: Path,
        steps_per_epoch: int | None = None, verbose: int | str = "auto",
        callbacks: tuple[keras.callbacks.Callback, ...] = ()) -> dict[str, list[float]]:
    """model.fit that resumes from work_dir after a kill; returns the whole run's history.
    Extra `callbacks` run before the CSV log, so values they add to the logs are recorded."""
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"could not create the checkpoint folder {work_dir}: {error}") from error
    check_resumable(recipe, work_dir)
    log_path = work_dir / "log.csv"
    every_callback = [
        keras.callbacks.BackupAndRestore(str(work_dir / "backup"), delete_checkpoint=False),
        keras.callbacks.TerminateOnNaN(),
        EpochClock(log_path),
        *([TimeLimit(recipe.time_limit_minutes)] if recipe.time_limit_minutes else []),
        *callbacks,
        keras.callbacks.CSVLogger(str(log_path), append=True),
    ]
    try:
        # shuffle=False: the datasets come in their own order (Keras ignores the flag for them
        # anyway, with a warning).
        model.fit(train_data, validation_data=validation_data, epochs=recipe.epochs, shuffle=False,
                  steps_per_epoch=steps_per_epoch, callbacks=every_callback, verbose=verbose)
    except OSError as error:  # checkpoint or log writes: disk full, permissions
        raise CheckpointError(f"could not write checkpoints or logs in {work_dir}: {error}; "
                              "rerun the same command to resume from the last completed epoch") from error
    history = read_history(log_path)
    check_finite(model, history, work_dir)
    return history


# A different budget may resume a run; anything else would silently change the run it continues.
_RESUMABLE_CHANGES = {"time_limit_minutes"}


def check_resumable(recipe: Recipe, work_dir: Path) -> None:
    """Pins the recipe in work_dir/recipe.json; a run that finds another recipe there refuses
    to resume it (a cosine schedule, for one, depends on the total number of epochs)."""
    path = work_dir / "recipe.json"
    current = json.loads(json.dumps(dataclasses.asdict(recipe)))  # tuples -> lists, as stored
    if path.is_file():
        stored = json.loads(path.read_text())
        changed = sorted(key for key in set(stored) | set(current)
                         if key not in _RESUMABLE_CHANGES and stored.get(key) != current.get(key))
        if changed:
            details = ", ".join(f"{key}: {stored.get(key)!r} -> {current.get(key)!r}" for key in changed)
            raise ValueError(f"{work_dir} holds an interrupted run with another recipe ({details}); "
                             "rerun with the same settings to resume it, or delete the folder to start over")
    path.write_text(json.dumps(current, indent=2) + "\n")


def check_finite(model: keras.Model, history: dict, work_dir: Path) -> None:
    """Raises TrainingDiverged (before anything is exported) when the last epoch's loss or any
    weight is NaN or infinite; TerminateOnNaN only stops the run."""
    losses = history.get("loss", [])
    if (losses and not math.isfinite(losses[-1])) or not all(
            numpy.isfinite(weight).all() for weight in model.get_weights()):
        raise TrainingDiverged(f"training diverged (loss {losses[-1] if losses else 'n/a'} after epoch "
                               f"{len(losses)}); nothing was exported. Lower the learning rate or clip "
                               f"gradients, and delete {work_dir} before rerunning (it holds the diverged run)")


class CheckpointError(RuntimeError):
    """Writing a checkpoint or the training log failed."""


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite."""


def clear_checkpoints(work_dir: Path) -> None:
    shutil.rmtree(work_dir, ignore_errors=True)


def steps_for(examples: int, batch_size: int) -> int:
    return max(1, math.floor(examples / batch_size))
