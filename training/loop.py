"""fit() with resumable, validated checkpoints, a CSV log and a clock; then evaluate and export.

A work folder (training/checkpoints/<name>) holds one interrupted run:
  training.lock      who trains there now: fcntl.flock, one training per folder (optional file)
  recipe.json        the recipe the run started with
  log.csv            one row per completed epoch: the 0-based epoch, then the logged values
  backup/latest.weights.h5, backup/training_metadata.json
                     the model and optimizer after the last completed epoch, and that epoch
                     (Keras BackupAndRestore's layout; the metadata adds the weights' sha256)
The zoo replaces each file whole (written beside it, synced, renamed). At an epoch's end the log
row is committed first, then the weights, then the metadata: the metadata is the commit point,
so the backup is the source of truth for where training resumes. A log row beyond it records an
epoch whose state was never committed: it is dropped and the epoch trained again. A log that
records fewer epochs than the backup holds has lost a record and is refused. Everything is
checked (inspect_work_dir, then Restore) before the first training step of a resumed run.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import math
import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator

import h5py
import keras
import numpy

from training import averaging, cards
from training.recipes import Recipe
from zoo.artifact import sha256_file
from zoo.files import sync_folder, write_atomically

CHECKPOINT_ROOT = Path(__file__).resolve().parent / "checkpoints"
LOCK_FILE = "training.lock"
RECIPE_FILE = "recipe.json"
LOG_FILE = "log.csv"
BACKUP_DIR = "backup"
WEIGHTS_FILE = "latest.weights.h5"
METADATA_FILE = "training_metadata.json"
INCOMING_WEIGHTS = ".incoming.weights.h5"  # Keras' save_weights wants the .weights.h5 ending


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
    if recipe.schedule == "triangular":
        return Triangular(recipe.learning_rate, int(recipe.triangle_peak * total_steps), total_steps)
    raise ValueError(f"schedule must be constant, cosine, steps or triangular, got {recipe.schedule!r}")


@keras.saving.register_keras_serializable(package="zoo")
class Triangular(keras.optimizers.schedules.LearningRateSchedule):
    """airbench94's schedule: linear from start x peak at step 0 to the peak at `peak_step`, then
    linear to end x peak at `total_steps`."""

    def __init__(self, peak: float, peak_step: int, total_steps: int, start: float = 0.2, end: float = 0.07):
        self.peak, self.peak_step, self.total_steps, self.start, self.end = peak, peak_step, total_steps, start, end

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        rising = self.start + (1 - self.start) * step / max(1, self.peak_step)
        falling = 1 + (self.end - 1) * (step - self.peak_step) / max(1, self.total_steps - self.peak_step)
        return self.peak * keras.ops.where(step < self.peak_step, rising, keras.ops.maximum(falling, self.end))

    def get_config(self):
        return {"peak": self.peak, "peak_step": self.peak_step, "total_steps": self.total_steps,
                "start": self.start, "end": self.end}


@contextlib.contextmanager
def precision(policy: str) -> Iterator[None]:
    """Layers built inside compute under Keras dtype policy `policy` (recipe.precision)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_optimizer(recipe: Recipe, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    rate = learning_rate_schedule(recipe, steps_per_epoch)
    options: dict = {"global_clipnorm": recipe.gradient_clip_norm} if recipe.gradient_clip_norm else {}
    if recipe.ema_momentum is not None:
        options.update(use_ema=True, ema_momentum=recipe.ema_momentum)
    if recipe.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=recipe.weight_decay, **options)
    if recipe.averaging == "nt_asgd":
        return averaging.AveragingSGD(rate, momentum=recipe.momentum, nesterov=True, l2=recipe.weight_decay,
                                      **options)
    if recipe.optimizer == "sgd":
        return CoupledWeightDecaySGD(rate, momentum=recipe.momentum, nesterov=True, l2=recipe.weight_decay,
                                     batch_norm_rate_factor=recipe.batch_norm_rate_factor, **options)
    raise ValueError(f"optimizer must be adamw or sgd, got {recipe.optimizer!r}")


class CoupledWeightDecaySGD(keras.optimizers.SGD):
    """SGD whose weight decay adds l2 * w to the gradient, so that it passes through the momentum
    as in He et al. 2016 and PyTorch. Keras' own `weight_decay` shrinks the weights outside the
    momentum, which at momentum 0.9 is about 10x weaker for the same coefficient (the 40- and
    100-epoch ResNet-20 runs were trained that way, with 5e-4). Every variable is decayed.

    batch_norm_rate_factor scales batch-norm offsets' (beta) gradients before the decay is added:
    the same steps as PyTorch's parameter group with lr x factor and weight_decay / factor. At a
    constant rate the steps are PyTorch's (Nesterov, dampening 0; tests/test_airbench.py): Keras
    keeps rate x gradient in its velocity where PyTorch keeps the gradient, so a changing rate
    reaches the velocity a few steps (~1 / (1 - momentum)) later."""

    def __init__(self, *args, l2: float = 0.0, batch_norm_rate_factor: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.l2 = l2
        self.batch_norm_rate_factor = batch_norm_rate_factor

    def update_step(self, gradient, variable, learning_rate):
        # Keras names batch-norm offsets `beta`; TensorFlow's variable here is named `beta:0`.
        if self.batch_norm_rate_factor != 1 and variable.name.split(":")[0].rsplit("/", 1)[-1] == "beta":
            gradient = gradient * keras.ops.cast(self.batch_norm_rate_factor, variable.dtype)
        if self.l2:
            gradient = gradient + keras.ops.cast(self.l2, variable.dtype) * variable
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2, "batch_norm_rate_factor": self.batch_norm_rate_factor}


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
            if epoch + 1 < self.params.get("epochs", 0):  # said, so that a slower machine's shorter run is no surprise
                print(f"time limit: {logs['elapsed_seconds'] / 60:.1f} min of training past the recipe's "
                      f"{self.minutes:g}, so training stops after epoch {epoch + 1} of {self.params['epochs']} "
                      "(the card records the epochs run)", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Writing files whole, and one training per work folder


def _sync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


_HELD_LOCKS: set[Path] = set()


@contextlib.contextmanager
def work_dir_lock(work_dir: Path) -> Iterator[None]:
    """Holds work_dir/training.lock for the block, or raises WorkDirBusy naming the holder.

    fcntl.flock: the kernel releases the lock when its holder exits or is killed, so the file a
    dead run leaves never blocks; a folder without the file is fine (it is created). Re-entrant
    within a process: tasks.train holds it across fit, evaluation and export, and fit takes it too."""
    key = Path(work_dir).resolve()
    if key in _HELD_LOCKS:
        yield
        return
    descriptor = _acquire_lock(key)
    _HELD_LOCKS.add(key)
    try:
        yield
    finally:
        _HELD_LOCKS.discard(key)
        os.close(descriptor)  # releases the flock


def _acquire_lock(work_dir: Path) -> int:
    path = work_dir / LOCK_FILE
    for _ in range(10):
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise CheckpointError(f"could not create the checkpoint folder {work_dir}: {error}") from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(descriptor)
            os.close(descriptor)
            raise WorkDirBusy(f"{work_dir} is in use by another training ({holder}); one training per "
                              "work folder at a time: wait for that one to end, or stop it, then rerun") from None
        except OSError as error:
            os.close(descriptor)
            raise CheckpointError(f"could not lock {path}: {error}; train on a local disk") from error
        # A holder that finished may have removed the folder (clear_checkpoints) between our open
        # and our flock: our lock would then be on a deleted file. Lock the current one instead.
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(descriptor).st_ino:
            record = {"pid": os.getpid(), "command": shlex.join(sys.orig_argv), "started": cards.utc_now()}
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, (json.dumps(record) + "\n").encode(), 0)
            return descriptor
        os.close(descriptor)
    raise CheckpointError(f"could not lock {path}: another process keeps deleting it; stop it, then rerun")


def _lock_holder(descriptor: int) -> str:
    """'pid N, started T: COMMAND' from a held lock file (the holder writes it once it holds the lock)."""
    try:
        holder = json.loads(os.pread(descriptor, 1 << 16, 0))
        command = _one_line(holder["command"])
        command = command if len(command) <= 160 else command[:157] + "..."
        return f"pid {int(holder['pid'])}, started {holder['started']}: {command}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown: it has only just started"


def _one_line(text) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------------
# The training log


def read_history(log_path: Path) -> dict[str, list[float]]:
    """log.csv as columns of numbers; the epoch column is 1-based. Raises CorruptCheckpoint for a
    log that is not one header and consecutive complete rows (non-finite values pass: a diverged
    run's record, which check_finite reports)."""
    # Work folders' logs are checked (and repaired) before training reads them: what fails here is
    # a copy, such as a paper run's report.
    advice = "make it again with the run that wrote it (make train-<name> or make paper-<name>)"
    header, rows, partial = parse_log(log_path, advice)
    if partial:
        raise CorruptCheckpoint(f"{log_path}: its last row is cut off; {advice}")
    if not rows:
        return {}
    history = {key: [float(row[index]) for row in rows] for index, key in enumerate(header)}
    history["epoch"] = [int(value) + 1 for value in history["epoch"]]
    return history


def parse_log(log_path: Path, advice: str | None = None) -> tuple[list[str], list[list[str]], bool]:
    """(header, complete rows, whether a cut-off last row follows them: a kill mid-write) of a
    log.csv; ([], [], False) when there is none. Raises CorruptCheckpoint unless the file is one
    header starting with `epoch`, then rows with a value per column, epochs 0, 1, 2..., numbers;
    its message ends with `advice` (default: a work folder's)."""

    def damaged(path: Path, fault: str) -> CorruptCheckpoint:
        return CorruptCheckpoint(f"{path}: {fault}; {advice}") if advice else _damaged(path, fault)

    try:
        text = log_path.read_text()  # universal newlines: CSVLogger ends rows with \r\n
    except FileNotFoundError:
        return [], [], False
    except (OSError, UnicodeDecodeError) as error:
        raise damaged(log_path, f"can't be read ({error})") from error
    lines = text.split("\n")
    partial = lines.pop() != ""  # text after the last line end: a row whose writing was cut off
    if not lines:
        return [], [], partial
    header = _fields(lines[0])
    if not header or header[0] != "epoch" or len(set(header)) != len(header) or "" in header:
        raise damaged(log_path, f"line 1 is {lines[0][:80]!r}, not a header of distinct columns starting with epoch")
    rows: list[list[str]] = []
    for number, line in enumerate(lines[1:], start=2):
        fields = _fields(line)
        if fields and fields[0] == "epoch":
            raise damaged(log_path, f"line {number} is a second header (two trainings wrote it at once)")
        if len(fields) != len(header):
            raise damaged(log_path, f"line {number} has {len(fields)} values for {len(header)} columns")
        if fields[0] != str(len(rows)):
            raise damaged(log_path, f"line {number} records epoch {fields[0]!r} where epoch {len(rows)} "
                                     "was due (rows must be epochs 0, 1, 2, ... once each)")
        for key, value in zip(header[1:], fields[1:]):
            try:
                float(value)
            except ValueError:
                raise damaged(log_path, f"line {number}: {key} is {value[:40]!r}, not a number") from None
        rows.append(fields)
    return header, rows, partial


def _fields(line: str) -> list[str]:
    return next(csv.reader([line]), [])


def _log_text(header: list[str], rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # CSVLogger's dialect: commas, \r\n
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


# ---------------------------------------------------------------------------------------------
# Resuming: what a work folder holds, checked before the first step


@dataclasses.dataclass(frozen=True)
class ResumeState:
    """A work folder's checked contents: where training resumes and what to repair first."""
    epoch: int  # epochs the committed backup holds; training resumes after them (0: from scratch)
    restore: bool  # a committed backup exists (metadata and weights)
    header: list[str]  # log.csv's columns ([]: no log yet)
    rows: list[list[str]]  # its rows for epochs 0..epoch-1
    drop_log_rows: int  # rows beyond the backup (a cut-off one counts): dropped, retrained
    uncommitted_weights: bool  # weights without metadata: a first commit cut short, removed


def inspect_work_dir(work_dir: Path) -> ResumeState:
    """Checks the files of an interrupted run in work_dir without touching the model: the
    backup's metadata parses, its weights file matches the recorded sha256 and reads as HDF5,
    the log is well formed with finite values, and the log's epochs agree with the backup's.
    Raises CorruptCheckpoint (naming the file, the fault and what to do) on the first fault."""
    work_dir = Path(work_dir)
    backup = work_dir / BACKUP_DIR
    weights, metadata = backup / WEIGHTS_FILE, backup / METADATA_FILE
    epoch, restore = 0, metadata.exists()
    if restore:
        epoch, digest = _read_metadata(metadata)
        _check_weights_file(weights, digest, metadata)
    log_path = work_dir / LOG_FILE
    header, rows, partial = parse_log(log_path)
    recorded = f"it records {_epochs(len(rows))}{' (its last row is cut off)' if partial else ''}"
    if len(rows) < epoch:
        raise _damaged(log_path, f"{recorded} but {metadata} holds {epoch}: the record of an epoch the "
                                 "weights have learned is lost")
    if len(rows) > epoch + 1:
        held = f"{metadata} holds {epoch}" if restore else f"{backup} holds no committed backup"
        raise _damaged(log_path, f"{recorded} but {held}: the checkpoint is gone or older than its log")
    for number, row in enumerate(rows[:epoch], start=2):
        for key, value in zip(header[1:], row[1:]):
            if not math.isfinite(float(value)):
                raise _damaged(log_path, f"line {number}: {key} is {value}: the run diverged at epoch {number - 1}")
    return ResumeState(epoch=epoch, restore=restore, header=header, rows=rows[:epoch],
                       drop_log_rows=len(rows) - epoch + partial,
                       uncommitted_weights=weights.exists() and not restore)


def _epochs(count: int) -> str:
    return f"{count} epoch{'' if count == 1 else 's'}"


def completed_epochs(work_dir: Path) -> int:
    """Epochs an interrupted run in work_dir has committed (0 for a fresh run); checks the folder."""
    return inspect_work_dir(work_dir).epoch


def _read_metadata(path: Path) -> tuple[int, str | None]:
    """(epoch, weights sha256 or None for Keras' own metadata) from training_metadata.json."""
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise _damaged(path, f"is not readable JSON ({_one_line(error)})") from error
    epoch = metadata.get("epoch") if isinstance(metadata, dict) else None
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise _damaged(path, f"holds no epoch count (found {_one_line(metadata)[:80]!r})")
    digest = metadata.get("weights_sha256")
    if digest is not None and not (isinstance(digest, str) and re.fullmatch("[0-9a-f]{64}", digest)):
        raise _damaged(path, f"weights_sha256 is {digest!r}, not a sha256")
    return epoch, digest


def _check_weights_file(path: Path, digest: str | None, metadata: Path) -> None:
    if not path.is_file():
        raise _damaged(path, f"is missing, though {metadata.name} records a backup")
    if digest is not None and (actual := sha256_file(path)) != digest:
        raise _damaged(path, f"has sha256 {actual[:16]}..., {metadata.name} recorded {digest[:16]}...: "
                             "the file was altered or damaged")

    def read(name, item):  # every array, so a file cut short fails here and not mid-load
        if isinstance(item, h5py.Dataset):
            item[()]

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(read)
    except (OSError, RuntimeError, ValueError, KeyError) as error:
        raise _damaged(path, f"is not a readable HDF5 weights file ({_one_line(error)[:120]})") from error


def _damaged(path: Path, fault: str) -> CorruptCheckpoint:
    """The one-line error for a damaged file of a work folder (training/checkpoints/<name>)."""
    work_dir = path.parent.parent if path.parent.name == BACKUP_DIR else path.parent
    return CorruptCheckpoint(f"{path}: {fault}; nothing was trained. Delete {work_dir} to start over "
                             "(or put back an intact copy of it)")


class Restore(keras.callbacks.Callback):
    """The first callback: loads the committed backup and checks it before the first step (it fits
    the model, the optimizer's step counter is completed epochs x steps per epoch, every value is
    finite); only then repairs what inspect_work_dir found (log rows beyond the backup dropped,
    uncommitted weights removed)."""

    def __init__(self, work_dir: Path, state: ResumeState, recipe: Recipe, steps_per_epoch: int | None):
        super().__init__()
        self.work_dir, self.state, self.recipe, self.steps_per_epoch = work_dir, state, recipe, steps_per_epoch

    def on_train_begin(self, logs=None):
        weights = self.work_dir / BACKUP_DIR / WEIGHTS_FILE
        if self.state.restore:
            self._load(weights)
            self._check_step_counter(weights)
            self._check_finite(weights)
        try:
            if self.state.uncommitted_weights:
                weights.unlink(missing_ok=True)
            if self.state.drop_log_rows:
                write_atomically(self.work_dir / LOG_FILE, _log_text(self.state.header, self.state.rows)
                                 if self.state.rows else b"")
        except OSError as error:
            raise CheckpointError(f"could not repair {self.work_dir}: {error}; fix permissions or free space, "
                                  "then rerun") from error

    def _load(self, weights: Path) -> None:
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)  # its variables must exist to be loaded
        try:
            self.model.load_weights(str(weights))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
            raise _damaged(weights, f"does not fit {self.model.name} ({_one_line(error)[:160]})") from error

    def _check_step_counter(self, weights: Path) -> None:
        """A wrong counter would silently run the learning-rate schedule from the wrong step."""
        optimizer = self.model.optimizer
        steps = self.steps_per_epoch or (self.params or {}).get("steps")
        if optimizer is None or steps is None:  # a dataset of unknown length: nothing to compare with
            return
        counter = int(keras.ops.convert_to_numpy(optimizer.iterations))
        # The perceptron learns in its own train_step and never steps its optimizer.
        expected = 0 if self.recipe.optimizer == "perceptron" else self.state.epoch * steps
        if counter != expected:
            raise _damaged(weights, f"the optimizer's step counter is {counter}, but {self.state.epoch} "
                                    f"completed epochs of {steps} steps make {expected}")

    def _check_finite(self, weights: Path) -> None:
        optimizer_variables = list(self.model.optimizer.variables) if self.model.optimizer is not None else []
        for variable in [*self.model.weights, *optimizer_variables]:
            if not numpy.isfinite(keras.ops.convert_to_numpy(variable)).all():
                raise _damaged(weights, f"{variable.path} holds NaN or infinite values, which its log "
                                        "does not show: the file is damaged")


class Commit(keras.callbacks.Callback):
    """The last callback (it sees every value the others logged): at each epoch's end commits the
    log row, then the weights, then the metadata with the weights' sha256, each file whole."""

    def __init__(self, work_dir: Path, state: ResumeState):
        super().__init__()
        self.work_dir = work_dir
        self.header, self.rows = list(state.header), [list(row) for row in state.rows]

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        log_path = self.work_dir / LOG_FILE
        if not self.header:
            self.header = ["epoch", *sorted(logs)]  # CSVLogger's columns
        missing = [key for key in self.header[1:] if key not in logs]
        if missing:
            raise CheckpointError(f"epoch {epoch + 1} logged no {', '.join(missing)}, a column of {log_path}; "
                                  f"was the run resumed with other code? Delete {self.work_dir} to start over")
        self.rows.append([str(epoch), *(str(float(logs[key])) for key in self.header[1:])])
        try:
            write_atomically(log_path, _log_text(self.header, self.rows))
            self._commit_backup(epoch + 1)
        except OSError as error:  # disk full, permissions: what was committed before stays intact
            raise CheckpointError(f"could not write checkpoints or logs in {self.work_dir}: {error}; free "
                                  "space or fix permissions, then rerun the same command to resume from "
                                  "the last completed epoch") from error

    def _commit_backup(self, epochs: int) -> None:
        backup = self.work_dir / BACKUP_DIR
        backup.mkdir(exist_ok=True)
        incoming_weights, incoming_metadata = backup / INCOMING_WEIGHTS, backup / f".{METADATA_FILE}.incoming"
        self.model.save_weights(str(incoming_weights), overwrite=True)
        _sync_file(incoming_weights)
        metadata = {"epoch": epochs, "batch": 0, "weights_sha256": sha256_file(incoming_weights)}
        with open(incoming_metadata, "w") as handle:
            handle.write(json.dumps(metadata))
            handle.flush()
            os.fsync(handle.fileno())
        # Back to back, so that a kill falls between them only by a very long chance; then the
        # metadata's sha256 no longer matches and the resume refuses instead of mixing two epochs.
        os.replace(incoming_weights, backup / WEIGHTS_FILE)
        os.replace(incoming_metadata, backup / METADATA_FILE)
        sync_folder(backup)


def fit(model: keras.Model, recipe: Recipe, train_data, validation_data, work_dir: Path,
        steps_per_epoch: int | None = None, verbose: int | str = "auto",
        callbacks: tuple[keras.callbacks.Callback, ...] = ()) -> dict[str, list[float]]:
    """model.fit that resumes from work_dir after a kill, once the folder passed every check;
    returns the whole run's history. Extra `callbacks` run before the log is committed, so values
    they add to the logs are recorded."""
    work_dir = Path(work_dir)
    with work_dir_lock(work_dir):
        state = inspect_work_dir(work_dir)
        if state.epoch > recipe.epochs:  # recipe.json, which pins the epochs, was lost or edited
            raise _damaged(work_dir / BACKUP_DIR / METADATA_FILE,
                           f"it holds epoch {state.epoch}, past the recipe's {recipe.epochs}")
        check_resumable(recipe, work_dir)
        log_path = work_dir / LOG_FILE
        every_callback = [
            Restore(work_dir, state, recipe, steps_per_epoch),
            keras.callbacks.TerminateOnNaN(),
            EpochClock(log_path),
            *([TimeLimit(recipe.time_limit_minutes)] if recipe.time_limit_minutes else []),
            *callbacks,
            Commit(work_dir, state),
        ]
        # shuffle=False: the datasets come in their own order (Keras ignores the flag for them
        # anyway, with a warning).
        model.fit(train_data, validation_data=validation_data, epochs=recipe.epochs, initial_epoch=state.epoch,
                  shuffle=False, steps_per_epoch=steps_per_epoch, callbacks=every_callback, verbose=verbose)
        history = read_history(log_path)
        check_finite(model, history, work_dir)
        return history


# A different budget may resume a run; anything else would silently change the run it continues.
_RESUMABLE_CHANGES = {"time_limit_minutes"}


def check_resumable(recipe: Recipe, work_dir: Path) -> None:
    """Pins the recipe in work_dir/recipe.json; a run that finds another recipe there refuses
    to resume it (a cosine schedule, for one, depends on the total number of epochs)."""
    path = work_dir / RECIPE_FILE
    current = json.loads(json.dumps(dataclasses.asdict(recipe)))  # tuples -> lists, as stored
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise _damaged(path, f"is not readable JSON ({_one_line(error)})") from error
        if not isinstance(stored, dict):
            raise _damaged(path, f"holds {_one_line(stored)[:80]!r}, not a recipe")
        # A setting the stored recipe lacks was added to Recipe after the run began, which ran
        # with its default (new settings default to the old behaviour).
        defaults = json.loads(json.dumps(dataclasses.asdict(Recipe())))
        changed = sorted(key for key in set(stored) | set(current) if key not in _RESUMABLE_CHANGES and
                         stored.get(key, defaults.get(key)) != current.get(key))
        if changed:
            details = ", ".join(f"{key}: {stored.get(key, defaults.get(key))!r} -> {current.get(key)!r}"
                                for key in changed)
            raise ValueError(f"{work_dir} holds an interrupted run with another recipe ({details}); "
                             "rerun with the same settings to resume it, or delete the folder to start over")
    try:
        write_atomically(path, (json.dumps(current, indent=2) + "\n").encode())
    except OSError as error:
        raise CheckpointError(f"could not write {path}: {error}; fix permissions or free space, then rerun") from error


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
    """The work folder can't be used: a write failed, a file is damaged, or another run holds it."""


class CorruptCheckpoint(CheckpointError):
    """A file of an interrupted run is unreadable or inconsistent (found before any training step)."""


class WorkDirBusy(CheckpointError):
    """Another process is training in the same work folder."""


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite."""


def clear_checkpoints(work_dir: Path) -> None:
    shutil.rmtree(work_dir, ignore_errors=True)


def steps_for(examples: int, batch_size: int) -> int:
    return max(1, math.floor(examples / batch_size))
