"""Work folders of interrupted runs: one training per folder, and checkpoints and logs that are
written whole and checked before a resumed run takes its first step. The Makefile and the
training commands fail with one clear line."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

from training import loop, paper, tasks, train
from training.recipes import Recipe

ROOT = Path(__file__).resolve().parent.parent
START_OVER = "to start over"


class Killed(Exception):
    """Stands for a kill between two epochs."""


class KillBefore(keras.callbacks.Callback):
    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Killed()


class CountSteps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.steps += 1


def tiny_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="mse")
    return model


def tiny_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, x.sum(axis=1, keepdims=True))).batch(4)  # 2 steps


RECIPE = Recipe(epochs=4)


def new_format_run(work_dir: Path, done: int = 2) -> Path:
    """A folder of this code's format: `done` of RECIPE's epochs, then a kill."""
    with pytest.raises(Killed):
        loop.fit(tiny_model(), RECIPE, tiny_data(), tiny_data(), work_dir, verbose=0, callbacks=(KillBefore(done),))
    return work_dir


def old_fit(model, recipe, train_data, validation_data, work_dir, steps_per_epoch=None, verbose="auto",
            callbacks=(), stop_before=2):
    """training.loop.fit as it was before this file's checks: Keras' BackupAndRestore and CSVLogger
    (the format of runs started with that code, such as a long run in progress), here killed
    before epoch `stop_before`."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    stored = json.loads(json.dumps(dataclasses.asdict(recipe)))
    (work_dir / "recipe.json").write_text(json.dumps(stored, indent=2) + "\n")
    log_path = work_dir / "log.csv"
    model.fit(train_data, validation_data=validation_data, epochs=recipe.epochs, shuffle=False,
              steps_per_epoch=steps_per_epoch, verbose=verbose, callbacks=[
                  keras.callbacks.BackupAndRestore(str(work_dir / "backup"), delete_checkpoint=False),
                  keras.callbacks.TerminateOnNaN(), loop.EpochClock(log_path), *callbacks,
                  keras.callbacks.CSVLogger(str(log_path), append=True), KillBefore(stop_before)])


def old_format_run(work_dir: Path, done: int = 2) -> Path:
    with pytest.raises(Killed):
        old_fit(tiny_model(), RECIPE, tiny_data(), tiny_data(), work_dir, verbose=0, stop_before=done)
    return work_dir


def resume(work_dir: Path) -> dict:
    return loop.fit(tiny_model(), RECIPE, tiny_data(), tiny_data(), work_dir, verbose=0)


def snapshot(work_dir: Path) -> dict[str, bytes]:
    """Every file of a work folder but the lock (whose holder record each attempt rewrites)."""
    return {str(path.relative_to(work_dir)): path.read_bytes() for path in sorted(work_dir.rglob("*"))
            if path.is_file() and path.name != loop.LOCK_FILE}


def assert_refused(work_dir: Path, match: str, error=loop.CorruptCheckpoint, run=None):
    """The resume fails with `error` (one line naming the fix), before any step, changing no file."""
    before = snapshot(work_dir)
    counter = CountSteps()
    with pytest.raises(error, match=match) as raised:
        (run or (lambda: loop.fit(tiny_model(), RECIPE, tiny_data(), tiny_data(), work_dir, verbose=0,
                                  callbacks=(counter,))))()
    message = str(raised.value)
    assert "\n" not in message and str(work_dir) in message
    assert counter.steps == 0
    assert snapshot(work_dir) == before
    return message


def weights_file(work_dir: Path) -> Path:
    return work_dir / "backup" / "latest.weights.h5"


def first_kernel(handle: h5py.File) -> h5py.Dataset:
    arrays: list[h5py.Dataset] = []
    handle["layers"].visititems(lambda name, item: arrays.append(item) if isinstance(item, h5py.Dataset) else None)
    return arrays[0]


# ---------------------------------------------------------------------------------------------
# Healthy folders resume, both formats


def test_healthy_folders_of_both_formats_resume_to_every_epoch_once(tmp_path):
    for name, make in (("new", new_format_run), ("old", old_format_run)):
        work_dir = make(tmp_path / name)
        assert (work_dir / loop.LOCK_FILE).exists() == (name == "new")  # the previous code made none
        assert loop.completed_epochs(work_dir) == 2
        history = resume(work_dir)
        assert history["epoch"] == [1, 2, 3, 4], name
        assert all(np.isfinite(history["loss"]))
        metadata = json.loads((work_dir / "backup" / "training_metadata.json").read_text())
        assert metadata["epoch"] == 4 and len(metadata["weights_sha256"]) == 64


@pytest.fixture(scope="module")
def linear_mnist_old_run(tmp_path_factory):
    """linear_mnist on mock data, 2 of 4 epochs trained by the previous code, then killed."""
    work_dir = tmp_path_factory.mktemp("old") / "linear_mnist"
    with pytest.MonkeyPatch.context() as patch, tfds.testing.mock_data(num_examples=640):
        patch.setattr(loop, "fit", old_fit)
        with pytest.raises(Killed):
            tasks.train("linear_mnist", {"epochs": 4, "batch_size": 32}, destination=work_dir.parent / "none",
                        work_dir=work_dir, verbose=0)
    assert not (work_dir.parent / "none").exists()
    (work_dir / loop.LOCK_FILE).unlink()  # tasks.train took it; the previous code had none
    return work_dir


def train_linear_mnist(work_dir: Path, destination: Path):
    with tfds.testing.mock_data(num_examples=640):
        return tasks.train("linear_mnist", {"epochs": 4, "batch_size": 32}, destination=destination,
                           work_dir=work_dir, verbose=0)


def test_a_run_started_by_the_previous_code_resumes_and_exports_a_clean_card(linear_mnist_old_run, tmp_path):
    work_dir = tmp_path / "linear_mnist"
    shutil.copytree(linear_mnist_old_run, work_dir)
    header = (work_dir / "log.csv").read_text().splitlines()[0]
    assert header == "epoch,accuracy,elapsed_seconds,learning_rate,loss,val_accuracy,val_loss"
    assert not (work_dir / loop.LOCK_FILE).exists()
    path = train_linear_mnist(work_dir, tmp_path / "artifact")
    training = json.loads((path / "model_card.json").read_text())["training"]
    assert training["epochs_run"] == 4
    assert training["history"]["epoch"] == [1, 2, 3, 4]
    assert all(0.0 <= value <= 1.0 for value in training["history"]["val_accuracy"])
    assert training["history"]["elapsed_seconds"] == sorted(training["history"]["elapsed_seconds"])
    assert not work_dir.exists()  # cleared after the export


def test_a_flipped_step_counter_is_refused_before_any_step(linear_mnist_old_run, tmp_path):
    work_dir = tmp_path / "linear_mnist"
    shutil.copytree(linear_mnist_old_run, work_dir)
    with h5py.File(weights_file(work_dir), "r+") as handle:  # Keras' own file: no checksum to catch it
        counter = handle["optimizer/vars/0"]
        assert counter[()] == 2 * 20  # 2 epochs of 640 / 32 steps
        counter[()] = counter[()] ^ (1 << 40)
    message = assert_refused(work_dir, r"latest.weights.h5: the optimizer's step counter is 1099511627816, but 2 "
                             r"completed epochs of 20 steps make 40",
                             run=lambda: train_linear_mnist(work_dir, tmp_path / "artifact"))
    assert START_OVER in message
    assert not (tmp_path / "artifact").exists()


def test_a_nan_weight_is_a_corrupt_checkpoint_not_a_divergence(linear_mnist_old_run, tmp_path):
    work_dir = tmp_path / "linear_mnist"
    shutil.copytree(linear_mnist_old_run, work_dir)
    with h5py.File(weights_file(work_dir), "r+") as handle:
        kernel = first_kernel(handle)
        values = kernel[()]
        values.flat[0] = np.nan
        kernel[()] = values
    assert_refused(work_dir, "latest.weights.h5: .* holds NaN or infinite values.*damaged",
                   run=lambda: train_linear_mnist(work_dir, tmp_path / "artifact"))
    assert not (tmp_path / "artifact").exists()


def test_a_perceptron_run_resumes_though_its_optimizer_never_steps(tmp_path, monkeypatch):
    real_fit = loop.fit

    def fit_killed_after_one_epoch(*args, callbacks=(), **kwargs):
        return real_fit(*args, **kwargs, callbacks=(*callbacks, KillBefore(1)))

    settings = {"epochs": 2, "batch_size": 32}
    with tfds.testing.mock_data(num_examples=640):
        monkeypatch.setattr(loop, "fit", fit_killed_after_one_epoch)
        with pytest.raises(Killed):
            tasks.train("perceptron_mnist", settings, destination=tmp_path / "artifact", work_dir=tmp_path / "work")
        monkeypatch.setattr(loop, "fit", real_fit)
        assert loop.completed_epochs(tmp_path / "work") == 1
        path = tasks.train("perceptron_mnist", settings, destination=tmp_path / "artifact", work_dir=tmp_path / "work",
                           verbose=0)
    assert json.loads((path / "model_card.json").read_text())["training"]["history"]["epoch"] == [1, 2]


def test_a_paper_run_holds_the_lock_and_writes_its_report_whole(tmp_path, monkeypatch):
    def fake_fit_and_measure(spec, recipe, data_dir, work_dir, verbose):
        assert json.loads((work_dir / loop.LOCK_FILE).read_text())["pid"] == os.getpid()
        (work_dir / "log.csv").write_text("epoch,loss\n0,1.5\n")
        return {"validation_perplexity": {"value": 1.0}}
    monkeypatch.setitem(tasks.FIT_AND_MEASURE, "language", fake_fit_and_measure)
    log = paper.run("lstm_ptb", minutes=1, report_dir=tmp_path / "reports", work_dir=tmp_path / "work")
    assert log.read_text() == "epoch,loss\n0,1.5\n"
    assert json.loads(log.with_suffix(".json").read_text())["final_metrics"]["validation_perplexity"]["value"] == 1.0
    assert sorted(path.name for path in (tmp_path / "reports").iterdir()) == [log.name, log.with_suffix(".json").name]
    assert not (tmp_path / "work").exists()


# ---------------------------------------------------------------------------------------------
# Damaged backups


@pytest.mark.parametrize("make", [new_format_run, old_format_run], ids=["new", "old"])
def test_a_truncated_weights_file_is_refused_the_same_way_every_time(tmp_path, make):
    work_dir = make(tmp_path / "work")
    weights = weights_file(work_dir)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    first = assert_refused(work_dir, "latest.weights.h5: ")
    assert "could not write" not in first and START_OVER in first
    assert assert_refused(work_dir, "latest.weights.h5: ") == first  # no loop of reruns: the same answer


def test_one_flipped_bit_in_the_weights_fails_their_checksum(tmp_path):
    work_dir = new_format_run(tmp_path / "work")
    weights = weights_file(work_dir)
    with h5py.File(weights, "r") as handle:
        offset = first_kernel(handle).id.get_offset()  # the kernel's first float, in the file
    data = bytearray(weights.read_bytes())
    data[offset + 1] ^= 0x10
    weights.write_bytes(bytes(data))
    assert_refused(work_dir, r"latest.weights.h5: has sha256 [0-9a-f]{16}\.\.\., training_metadata.json recorded")


@pytest.mark.parametrize("content, match", [
    ("{not json", "training_metadata.json: is not readable JSON"),
    ('{"batch": 0}', "training_metadata.json: holds no epoch count"),
    ('{"epoch": -1}', "training_metadata.json: holds no epoch count"),
    ('{"epoch": 2, "weights_sha256": "abc"}', "weights_sha256 is 'abc', not a sha256"),
])
def test_garbage_metadata_is_refused(tmp_path, content, match):
    work_dir = new_format_run(tmp_path / "work")
    (work_dir / "backup" / "training_metadata.json").write_text(content)
    assert_refused(work_dir, match)


def test_metadata_without_its_weights_is_refused(tmp_path):
    work_dir = new_format_run(tmp_path / "work")
    weights_file(work_dir).unlink()
    assert_refused(work_dir, "latest.weights.h5: is missing")


def test_garbage_recipe_file_is_refused(tmp_path):
    work_dir = new_format_run(tmp_path / "work")
    (work_dir / "recipe.json").write_text("[1, 2")
    assert_refused(work_dir, "recipe.json: is not readable JSON")


def test_a_run_pinned_before_a_recipe_setting_existed_resumes(tmp_path):
    """recipe.json from before a setting was added lacks it; the run had its default, so it resumes."""
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    stored = json.loads(json.dumps(dataclasses.asdict(RECIPE)))
    del stored["averaging"], stored["averaging_patience"]
    (work_dir / "recipe.json").write_text(json.dumps(stored))
    loop.check_resumable(RECIPE, work_dir)
    with pytest.raises(ValueError, match=r"another recipe \(averaging: 'none' -> 'nt_asgd', "):
        (work_dir / "recipe.json").write_text(json.dumps(stored))
        loop.check_resumable(dataclasses.replace(RECIPE, optimizer="sgd", averaging="nt_asgd", weight_decay=0.0),
                             work_dir)


def test_a_backup_past_the_recipes_epochs_is_refused(tmp_path):
    work_dir = new_format_run(tmp_path / "work")
    (work_dir / "recipe.json").unlink()  # lost: it would have refused the other recipe
    assert_refused(work_dir, "training_metadata.json: it holds epoch 2, past the recipe's 1", run=lambda: loop.fit(
        tiny_model(), dataclasses.replace(RECIPE, epochs=1), tiny_data(), tiny_data(), work_dir, verbose=0))


# ---------------------------------------------------------------------------------------------
# The log


def rows(work_dir: Path) -> list[str]:
    return (work_dir / "log.csv").read_text().splitlines()


def test_a_row_cut_off_mid_write_is_dropped_and_its_epoch_trained_again(tmp_path):
    """The backup is the source of truth: a row beyond it records an epoch it does not hold."""
    work_dir = new_format_run(tmp_path / "work")
    with open(work_dir / "log.csv", "a") as handle:
        handle.write("2,0.9,11.5")  # killed while writing epoch 3's row
    history = resume(work_dir)
    assert history["epoch"] == [1, 2, 3, 4]
    assert 11.5 not in [value for column in history.values() for value in column]


def test_a_row_of_an_epoch_whose_backup_was_not_committed_is_dropped(tmp_path):
    """Killed after an epoch's row was committed but before its weights: that epoch runs again."""
    work_dir = new_format_run(tmp_path / "work")
    header = rows(work_dir)[0].split(",")
    with open(work_dir / "log.csv", "a", newline="") as handle:
        handle.write(",".join(["2", *["123.0"] * (len(header) - 1)]) + "\r\n")
    assert loop.completed_epochs(work_dir) == 2
    history = resume(work_dir)
    assert history["epoch"] == [1, 2, 3, 4]
    assert 123.0 not in history["loss"]


def test_a_log_that_lost_the_record_of_a_committed_epoch_is_refused(tmp_path):
    """The previous code wrote the backup before the row: a kill between them, or a cut-off row."""
    work_dir = old_format_run(tmp_path / "work")
    lines = rows(work_dir)
    (work_dir / "log.csv").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:10])
    assert_refused(work_dir, "log.csv: it records 1 epoch \\(its last row is cut off\\) but .* holds 2")


@pytest.mark.parametrize("damage, match", [
    (lambda lines: lines + [lines[0]], "line 4 is a second header"),
    (lambda lines: [lines[0], lines[1], lines[0], lines[2]], "line 3 is a second header"),
    (lambda lines: [lines[0], lines[1], lines[2].replace("1,", "3,", 1)], "line 3 records epoch '3' where epoch 1"),
    (lambda lines: [lines[0], lines[1], lines[2].replace(",", ",,", 1)], "line 3 has 6 values for 5 columns"),
    (lambda lines: [*lines[:2], lines[2].rsplit(",", 1)[0] + ",NA"], "line 3: val_loss is 'NA', not a number"),
    (lambda lines: [*lines[:2], lines[2].rsplit(",", 1)[0] + ",nan"], "line 3: val_loss is nan: the run diverged"),
    (lambda lines: ["epoch,loss,loss", *lines[1:]], "line 1 is .* not a header"),
], ids=["header-at-end", "header-in-between", "epoch-skipped", "extra-value", "not-a-number", "nan", "bad-header"])
def test_a_damaged_log_is_refused(tmp_path, damage, match):
    work_dir = new_format_run(tmp_path / "work")
    (work_dir / "log.csv").write_text("\n".join(damage(rows(work_dir))) + "\n")
    assert_refused(work_dir, match)


def test_a_damaged_report_log_is_refused_with_the_run_that_remakes_it(tmp_path):
    report = tmp_path / "lstm_ptb_paper_schedule.csv"
    report.write_text("epoch,loss\n0,1.5\n1,1.")
    with pytest.raises(loop.CorruptCheckpoint, match=r"last row is cut off; make it again with the run that "
                                                     r"wrote it \(make train-<name> or make paper-<name>\)"):
        loop.read_history(report)
    report.write_text("epoch,loss\n0,1.5\n0,1.4\n")
    with pytest.raises(loop.CorruptCheckpoint, match="line 3 records epoch '0' where epoch 1 was due.*make paper"):
        loop.read_history(report)


def test_a_failed_checkpoint_write_is_clear_and_the_rerun_resumes(tmp_path, monkeypatch):
    work_dir = new_format_run(tmp_path / "work")
    original = loop.Commit._commit_backup

    def disk_full(self, epochs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(loop.Commit, "_commit_backup", disk_full)
    with pytest.raises(loop.CheckpointError, match="No space left on device.*rerun the same command"):
        resume(work_dir)
    monkeypatch.setattr(loop.Commit, "_commit_backup", original)
    assert resume(work_dir)["epoch"] == [1, 2, 3, 4]  # the row written before the failure was dropped


# ---------------------------------------------------------------------------------------------
# One training per work folder

HOLDER = r"""
import sys
from pathlib import Path
from training import loop
with loop.work_dir_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def lock_holder():
    """Starts a process that holds a work folder's lock; yields (start(work_dir) -> process)."""
    started = []

    def start(work_dir: Path) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(work_dir)], env=env, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.mark.slow  # real train steps of two models
def test_a_second_training_of_the_same_folder_is_refused_naming_the_first(tmp_path, lock_holder):
    work_dir = new_format_run(tmp_path / "work")
    holder = lock_holder(work_dir)
    record = json.loads((work_dir / loop.LOCK_FILE).read_text())
    assert record["pid"] == holder.pid and "work_dir_lock" in record["command"]
    message = assert_refused(work_dir, rf"is in use by another training \(pid {holder.pid}, started "
                                       r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00: .*\); one training per work folder",
                             error=loop.WorkDirBusy)
    assert "wait for that one to end" in message
    holder.stdin.close()  # the holder ends: the folder is free again
    holder.wait(timeout=60)
    assert resume(work_dir)["epoch"] == [1, 2, 3, 4]


@pytest.mark.slow  # a second Python process holds the lock
def test_the_lock_file_of_a_killed_run_does_not_block(tmp_path, lock_holder):
    holder = lock_holder(tmp_path / "work")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    assert json.loads((tmp_path / "work" / loop.LOCK_FILE).read_text())["pid"] == holder.pid  # stale
    with loop.work_dir_lock(tmp_path / "work"):
        assert json.loads((tmp_path / "work" / loop.LOCK_FILE).read_text())["pid"] == os.getpid()
        with loop.work_dir_lock(tmp_path / "work"):  # re-entrant within a process
            pass


def test_a_folder_removed_by_its_finished_holder_can_be_locked_again(tmp_path):
    with loop.work_dir_lock(tmp_path / "work"):
        loop.clear_checkpoints(tmp_path / "work")  # what a finished training does, lock held
    with loop.work_dir_lock(tmp_path / "work"):
        assert (tmp_path / "work" / loop.LOCK_FILE).is_file()


# ---------------------------------------------------------------------------------------------
# The commands print one line and exit 2


def assert_one_error_line(capsys, code: int, *fragments: str) -> str:
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err[-2000:]
    assert "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.mark.slow  # a second Python process holds the lock
def test_train_command_names_the_training_that_holds_the_folder(tmp_path, monkeypatch, capsys, lock_holder):
    monkeypatch.setattr(loop, "CHECKPOINT_ROOT", tmp_path)
    holder = lock_holder(tmp_path / "linear_mnist")
    code = train.main(["--model", "linear_mnist", "--epochs", "1", "--output", str(tmp_path / "artifact")])
    assert_one_error_line(capsys, code, f"pid {holder.pid}", "one training per work folder")
    assert not (tmp_path / "artifact").exists()


def test_train_command_reports_a_damaged_folder_and_a_refused_resume_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loop, "CHECKPOINT_ROOT", tmp_path)
    work_dir = tmp_path / "linear_mnist"
    (work_dir / "backup").mkdir(parents=True)
    (work_dir / "backup" / "training_metadata.json").write_text("{garbage")
    arguments = ["--model", "linear_mnist", "--epochs", "1", "--output", str(tmp_path / "artifact")]
    with tfds.testing.mock_data(num_examples=640):
        assert_one_error_line(capsys, train.main(arguments), "training_metadata.json: is not readable JSON")
        shutil.rmtree(work_dir)
        work_dir.mkdir()
        (work_dir / "recipe.json").write_text(json.dumps({"epochs": 7}))
        assert_one_error_line(capsys, train.main(arguments), "holds an interrupted run with another recipe")


@pytest.mark.parametrize("error", [
    NonMatchingChecksumError("Artifact https://example/x.gz, downloaded to /tmp/x,\nhas wrong checksum:\n  x"),
    ValueError("CIFAR-10 file '/raw/data_batch_1.bin' has sha256 00, expected 11"),
    loop.CorruptCheckpoint("log.csv: line 3 is a second header"),
    loop.WorkDirBusy("training/checkpoints/x is in use by another training (pid 1)"),
    loop.TrainingDiverged("training diverged (loss nan after epoch 3); nothing was exported."),
], ids=lambda error: type(error).__name__)
def test_both_training_commands_print_expected_failures_as_one_line(monkeypatch, capsys, error):
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(tasks, "train", fail)
    monkeypatch.setattr(paper, "run", fail)
    first_line = " ".join(str(error).split()[:3])
    assert_one_error_line(capsys, train.main(["--model", "linear_mnist"]), first_line)
    assert_one_error_line(capsys, paper.main(["lstm_ptb", "--minutes", "1"]), first_line)


# ---------------------------------------------------------------------------------------------
# The Makefile checks what reaches a shell


def make_environment() -> dict[str, str]:
    """This environment without what an outer `make test` passes down to sub-makes (its flags and
    command-line variables, and the level that makes them print "Entering directory")."""
    return {key: value for key, value in os.environ.items()
            if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def make_dry_run(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    """`make -n ARGUMENTS` on a copy of the Makefile (nothing of the checkout is touched)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    return subprocess.run(["make", "-n", *arguments], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env=make_environment())


INJECTED = "touch INJECTED"


@pytest.mark.parametrize("target", ["train", "paper", "evaluate", "export-onnx", "export-tflite", "experiment"])
@pytest.mark.parametrize("name", [f"x;{INJECTED};true", "x$(shell touch INJECTED)", "X", "a/b", "x`touch INJECTED`"])
def test_make_refuses_model_names_that_are_not_registry_names(tmp_path, target, name):
    result = make_dry_run(tmp_path, f"{target}-{name}")
    assert result.returncode != 0
    assert "must be letters a-z, digits and _ only" in result.stderr
    assert "INJECTED" not in result.stdout
    assert not (tmp_path / "INJECTED").exists()


@pytest.mark.parametrize("setting, message", [
    (f"EPOCHS=3;{INJECTED}", "must be a whole number of epochs"),
    ("EPOCHS=$(shell touch INJECTED)", "must be a whole number of epochs"),
    ("EPOCHS=3 4", "must be a whole number of epochs"),
    (f"DISTRIBUTE=none;{INJECTED}", "must be none, mirrored or multi_worker"),
    ("DISTRIBUTE=%", "must be none, mirrored or multi_worker"),
])
def test_make_refuses_hostile_training_settings(tmp_path, setting, message):
    result = make_dry_run(tmp_path, "train-linear_mnist", setting)
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "INJECTED").exists()


@pytest.mark.parametrize("data_dir", [f"/raw'; {INJECTED}; echo '", "/raw$(shell touch INJECTED)", '/raw "x" $HOME'])
def test_make_passes_data_dir_as_text_never_as_code(tmp_path, data_dir):
    result = make_dry_run(tmp_path, "train-linear_mnist", f"DATA_DIR={data_dir}")
    assert result.returncode == 0, result.stderr
    assert "INJECTED" not in result.stdout and not (tmp_path / "INJECTED").exists()
    shown = subprocess.run(["make", "--eval", "show: ; @printenv ZOO_DATA_DIR", "show", f"DATA_DIR={data_dir}"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60, env=make_environment())
    assert shown.stdout == data_dir + "\n"  # through the environment, literally
    assert not (tmp_path / "INJECTED").exists()


def test_make_still_prints_the_training_command(tmp_path):
    result = make_dry_run(tmp_path, "train-linear_mnist", "EPOCHS=3")
    assert result.returncode == 0, result.stderr
    assert ".venv/bin/python -m training.train --model linear_mnist --epochs 3 --distribute none" in result.stdout
    result = make_dry_run(tmp_path, "experiment-linear_mnist", "export-onnx-cnn_mnist", "DISTRIBUTE=mirrored")
    assert result.returncode == 0, result.stderr
    assert ".venv/bin/python -m training.experiments linear_mnist" in result.stdout
    assert ".venv/bin/python -m zoo convert onnx cnn_mnist" in result.stdout
