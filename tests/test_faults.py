"""Training that survives SIGKILL; exports and checkpoints that fail cleanly."""
import csv
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import export_fresh

ROOT = Path(__file__).resolve().parent.parent

TRAIN_SCRIPT = r"""
import sys, time, keras
import tensorflow_datasets as tfds
from training import tasks
destination, work_dir, slow = sys.argv[1], sys.argv[2], sys.argv[3] == "slow"

class Slow(keras.callbacks.Callback):  # make epochs long enough to be killed inside one
    def on_train_batch_end(self, batch, logs=None):
        if slow:
            time.sleep(0.05)

original_fit = keras.Model.fit
def fit(self, *args, callbacks=(), **kwargs):
    return original_fit(self, *args, callbacks=list(callbacks) + [Slow()], **kwargs)
keras.Model.fit = fit
with tfds.testing.mock_data(num_examples=640):
    tasks.train("linear_mnist", {"epochs": 4, "batch_size": 32}, destination=destination,
                work_dir=work_dir, verbose=0)
print("done")
"""


def start_training(tmp_path, slow):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(tmp_path / "artifact"),
                             str(tmp_path / "work"), "slow" if slow else "fast"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def completed_epochs(log_path: Path) -> list[int]:
    if not log_path.is_file():
        return []
    with open(log_path) as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_same_command_resumes(tmp_path):
    process = start_training(tmp_path, slow=True)
    log_path = tmp_path / "work" / "log.csv"
    deadline = time.time() + 240
    while len(completed_epochs(log_path)) < 2 and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.4)  # inside the third epoch (each takes ~1 s)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before_kill = completed_epochs(log_path)
    assert 2 <= len(done_before_kill) < 4, done_before_kill
    assert not (tmp_path / "artifact").exists()

    resumed = start_training(tmp_path, slow=False)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-2000:]
    assert (tmp_path / "artifact" / "MANIFEST.sha256").is_file()
    import json
    history = json.loads((tmp_path / "artifact" / "model_card.json").read_text())["training"]["history"]
    # Every epoch exactly once: the resumed run started after the last completed one.
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["elapsed_seconds"] == sorted(history["elapsed_seconds"])

    # The same run uninterrupted ends at the same loss, within run-to-run noise.
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    uninterrupted = start_training(reference_dir, slow=False)
    _, stderr = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, stderr[-2000:]
    reference = json.loads((reference_dir / "artifact" / "model_card.json").read_text())["training"]["history"]
    assert history["loss"][-1] == pytest.approx(reference["loss"][-1], rel=0.1)
    assert history["loss"][-1] < history["loss"][0]  # it kept learning after the resume


def test_disk_full_during_export_is_clear_and_leaves_nothing(tmp_path, monkeypatch):
    import keras

    from zoo.export import ExportError

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(keras.Model, "save_weights", no_space)
    with pytest.raises(ExportError, match="No space left on device.*unchanged"):
        export_fresh("linear_mnist", tmp_path / "linear_mnist")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_checkpoint_folder_is_a_clear_error(tmp_path):
    import tensorflow_datasets as tfds

    from training import tasks
    from training.loop import CheckpointError
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with tfds.testing.mock_data(num_examples=32):
        with pytest.raises(CheckpointError, match="could not create the checkpoint folder"):
            tasks.train("linear_mnist", {"epochs": 1, "batch_size": 16}, destination=tmp_path / "a",
                        work_dir=blocker / "work", verbose=0)
    assert not (tmp_path / "a").exists()
