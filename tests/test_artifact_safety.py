"""Nothing lost, nothing run blindly: what the zoo refuses before it deletes, opens or runs anything."""
import json
import os
import shutil
import signal
import socket
import stat
import string
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo
from tests.conftest import export_fresh, random_images, registry_params
from training import formats
from training import tasks as training_tasks
from zoo import artifact, convert, export, registry
from zoo.artifact import ArtifactError
from zoo.serving import image


@pytest.fixture
def copy_of(fresh_cnn_artifact, tmp_path):
    """A function: a fresh copy of the untrained cnn_mnist artifact at tmp_path/<name>."""
    def make(name="copy"):
        folder = tmp_path / name
        shutil.copytree(fresh_cnn_artifact[1], folder)
        return folder
    return make


def rewrite_card(folder: Path, **changes):
    card = json.loads((folder / "model_card.json").read_text())
    card.update(changes)
    for key in [key for key, value in changes.items() if value is None]:
        del card[key]
    (folder / "model_card.json").write_text(json.dumps(card))
    artifact.write_manifest(folder)  # a consistent manifest: only the content is wrong


# 1. Nothing the user owns is deleted.

def test_export_refuses_a_folder_that_is_neither_empty_nor_an_artifact(tmp_path, copy_of):
    own = tmp_path / "mine"
    own.mkdir()
    (own / "thesis.tex").write_text("years of work")
    with pytest.raises(export.ExportError, match="neither empty nor a zoo artifact"):
        training_tasks.train("linear_mnist", {"epochs": 1}, destination=own, work_dir=tmp_path / "work")
    assert (own / "thesis.tex").read_text() == "years of work" and not (tmp_path / "work").exists()
    folder_of_artifacts = tmp_path / "models"
    folder_of_artifacts.mkdir()
    shutil.copytree(copy_of(), folder_of_artifacts / "cnn_mnist")
    with pytest.raises(export.ExportError):  # `--output exported_models` deleted nine artifacts
        export.check_target(folder_of_artifacts)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(export.ExportError, match="not a folder"):
        export.check_target(tmp_path / "a_file")
    export.check_target(tmp_path / "new")  # absent, empty or an artifact: fine
    (tmp_path / "empty").mkdir()
    export.check_target(tmp_path / "empty")
    export.check_target(copy_of("artifact"))


def test_exported_folders_are_readable_by_others(fresh_cnn_artifact):
    assert stat.S_IMODE(fresh_cnn_artifact[1].stat().st_mode) == 0o755


def test_a_crash_between_the_two_renames_keeps_the_previous_artifact_in_use(tmp_path, monkeypatch):
    committed = artifact.committed_dir("cnn_mnist")  # loaded by name, so the pinned one
    monkeypatch.setattr(artifact, "EXPORT_ROOT", tmp_path)
    shutil.copytree(committed, tmp_path / ".old-cnn_mnist")  # the export renamed the old artifact away, then died
    assert artifact.committed_dir("cnn_mnist") == tmp_path / ".old-cnn_mnist"
    assert zoo.load("cnn_mnist").name == "cnn_mnist"
    export.restore_interrupted(artifact.export_dir("cnn_mnist"))  # what the next export does first
    assert artifact.committed_dir("cnn_mnist") == tmp_path / "cnn_mnist"


# 2. Every file the zoo runs is verified: conversion caches too.

@pytest.mark.slow
def test_onnx_cache_files_are_checked_by_their_digest_and_their_outputs(copy_of, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    folder = copy_of("cnn_mnist")
    images = random_images((28, 28, 1), count=6, seed=5)
    expected = zoo.load(folder).predict(images).class_id
    zoo.load(folder, runtime="onnxruntime")
    (cached,) = (tmp_path / "cache" / "converted" / "cnn_mnist").glob("*.onnx")
    # Garbage under the right name: fails its own digest, converted again.
    cached.write_bytes(b"not onnx")
    assert (zoo.load(folder, runtime="onnxruntime").predict(images).class_id == expected).all()
    # A planted conversion of another model, named with its own digest: fails the probe batch.
    other = tmp_path / "other"
    export_fresh("cnn_mnist", other)
    (good,) = (tmp_path / "cache" / "converted" / "cnn_mnist").glob("*.onnx")
    planted = convert.to_onnx(other, tmp_path / "planted.onnx")
    good.unlink()
    key = good.name.split("-")[1]
    shutil.copyfile(planted, good.parent / f"onnx-{key}-{artifact.sha256_file(planted)}.onnx")
    model = zoo.load(folder, runtime="onnxruntime")
    np.testing.assert_array_equal(model.predict(images).class_id, expected)
    assert model.runtime == "onnxruntime"


def test_a_planted_int8_file_fails_its_probe_and_is_deleted(copy_of, tmp_path, monkeypatch):
    """An int8 file of another model, named with the artifact's key and its own digest, has the
    right output names and shapes: it fails the probe against the SavedModel, is deleted, and a
    conversion of this artifact is made and used."""
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(convert, "CALIBRATION_IMAGES", 40)
    monkeypatch.setattr(convert, "CHECK_IMAGES", 40)
    monkeypatch.setattr(convert, "INT8_AGREEMENT", 0.5)  # untrained: near ties on noise, which int8 flips
    monkeypatch.setattr(image, "training_sample", lambda dataset, count, data_dir=None: random_images(
        (28, 28, 1), count=count, seed=1))
    folder, other = copy_of("cnn_mnist"), tmp_path / "other"
    export_fresh("cnn_mnist", other)
    images = convert.probe_images((28, 28, 1))
    reference = zoo.load(folder)
    planted = convert.to_tflite(other, tmp_path / "planted.tflite", "int8",
                                convert.batches(random_images((28, 28, 1), count=40, seed=1)))
    assert convert.same_outputs(convert.open_runner(planted.read_bytes(), "tflite", "serving_default")(image=images),
                                convert.reference_outputs(reference, images))  # the old check passed it
    directory = tmp_path / "cache" / "converted" / "cnn_mnist"
    directory.mkdir(parents=True)
    key = artifact.manifest_digest(folder)[:16]
    planted_name = directory / f"tflite_int8-{key}-{artifact.sha256_file(planted)}.tflite"
    shutil.copyfile(planted, planted_name)
    model = zoo.load(folder, runtime="litert", precision="int8")
    assert not planted_name.exists() and len(list(directory.glob("tflite_int8-*"))) == 1
    agreement = np.mean(model.predict(images).class_id == reference.predict(images).class_id)
    assert agreement >= convert.INT8_PROBE_AGREEMENT


def test_a_conversion_that_fails_its_probe_is_not_kept(copy_of, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    folder = copy_of("cnn_mnist")
    monkeypatch.setattr(convert, "PARITY_TOLERANCE", -1.0)  # no file can agree
    with pytest.raises(ArtifactError, match="does not reproduce the SavedModel's outputs on a probe batch"):
        zoo.load(folder, runtime="litert")
    assert list((tmp_path / "cache" / "converted" / "cnn_mnist").iterdir()) == []


def test_names_from_a_card_must_be_plain_names(copy_of):
    for name in ("../../elsewhere", "/tmp/x", "CNN", "", "a b"):
        folder = copy_of(f"bad{abs(hash(name))}")
        rewrite_card(folder, name=name)
        with pytest.raises(ArtifactError, match="model name must match"):
            zoo.load(folder)


def test_an_artifact_loaded_by_name_must_be_that_model(tmp_path, monkeypatch, copy_of):
    monkeypatch.setattr(artifact, "EXPORT_ROOT", tmp_path)
    shutil.copytree(copy_of(), tmp_path / "mlp_mnist")
    with pytest.raises(ArtifactError, match="names model 'cnn_mnist', but it is loaded as 'mlp_mnist'"):
        zoo.load("mlp_mnist")


# 3. Loading an artifact does not run arbitrary operations.

class Writer(tf.Module):
    """A SavedModel that writes a file whenever it is served, and reports 7 for everything."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target
        self.bias = tf.Variable(tf.zeros([10]))

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.uint8, name="image")])
    def serve(self, image):
        tf.io.write_file(self.target, "written by a model")
        scores = tf.zeros([tf.shape(image)[0], 10]) + self.bias
        return {"scores": scores, "probabilities": tf.nn.softmax(scores),
                "class_id": tf.fill([tf.shape(image)[0]], tf.constant(7, tf.int64))}


def writer_artifact(genuine: Path, folder: Path, target: Path) -> Path:
    """A Writer SavedModel at `folder` with `genuine`'s card, weights and README, and a manifest
    regenerated to match: what passes every check but the operations'."""
    module = Writer(str(target))
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    for name in ("model_card.json", "model.weights.h5", "README.md"):
        shutil.copyfile(genuine / name, folder / name)
    artifact.write_manifest(folder)
    return folder


def test_loading_refuses_operations_outside_the_allowlist(copy_of, tmp_path):
    target = tmp_path / "written.txt"
    folder = writer_artifact(copy_of(), tmp_path / "writer", target)
    artifact.verify_manifest(folder)  # a manifest proves integrity, not origin
    with pytest.raises(ArtifactError, match="operation 'WriteFile'.*trust=True"):
        zoo.load(folder)
    assert not target.exists()


def test_converting_refuses_operations_outside_the_allowlist(copy_of, tmp_path, monkeypatch):
    """Converters and `make formats` load the SavedModel too: its graph is checked first."""
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    target = tmp_path / "written.txt"
    folder = writer_artifact(copy_of(), tmp_path / "writer", target)
    for convert_it in (lambda: convert.to_tflite(folder, tmp_path / "out.tflite"),
                       lambda: convert.cached(folder, "tflite"),
                       lambda: formats.savedmodel_runner(folder, "serving_default")):
        with pytest.raises(ArtifactError, match="operation 'WriteFile'"):
            convert_it()
    assert not target.exists() and not (tmp_path / "out.tflite").exists()


def test_zoo_verify_refuses_what_zoo_load_refuses(copy_of, tmp_path, monkeypatch):
    """The review's case: a plain-TF model copied over a committed artifact, with the card, the
    weights and the README copied and the manifest regenerated."""
    monkeypatch.setattr(artifact, "EXPORT_ROOT", tmp_path / "models")
    writer_artifact(copy_of(), tmp_path / "models" / "cnn_mnist", tmp_path / "written.txt")
    (problem,) = artifact.verify_all(["cnn_mnist"])
    assert "operation 'WriteFile'" in problem


@pytest.mark.parametrize("name", registry_params(registry.list_models()))
def test_every_registered_model_exports_only_allowed_operations(name, tmp_path):
    export_fresh(name, tmp_path / name)
    artifact.check_operations(tmp_path / name)


def test_committed_artifacts_use_only_allowed_operations():
    for name in registry.list_models():
        if artifact.is_trained(name):
            artifact.check_operations(artifact.committed_dir(name))


def test_a_damaged_graph_file_is_an_artifact_error(copy_of):
    folder = copy_of()
    (folder / "saved_model.pb").write_bytes(b"\x08\xff\xff garbage")
    artifact.write_manifest(folder)
    with pytest.raises(ArtifactError, match="saved_model.pb"):
        zoo.load(folder)


# 5. Only regular files, the required ones present; load and verify agree.

def test_a_fifo_is_refused_without_opening_it(copy_of):
    folder = copy_of()
    os.mkfifo(folder / "variables" / "pipe")
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("hung on the FIFO"))
    signal.alarm(20)
    try:
        with pytest.raises(ArtifactError, match="not a regular file"):
            artifact.verify_manifest(folder)
        with pytest.raises(ArtifactError, match="not a regular file"):
            zoo.load(folder)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("required", ["model.weights.h5", "README.md", "model_card.json", "saved_model.pb"])
def test_required_files_are_checked_by_load_and_verify_alike(required, copy_of, tmp_path, monkeypatch):
    monkeypatch.setattr(artifact, "EXPORT_ROOT", tmp_path)
    folder = copy_of("cnn_mnist")
    (folder / required).unlink()
    artifact.write_manifest(folder)
    with pytest.raises(ArtifactError, match=f"required file {required} is missing"):
        zoo.load(folder)
    assert any(f"required file {required} is missing" in problem for problem in artifact.verify_all(["cnn_mnist"]))


# 9. Malformed cards, vocabularies and manifests.

@pytest.mark.parametrize("changes, message", [
    ({"label_names": None}, "'label_names' to be a list"),
    ({"label_names": []}, "0 label_names"),
    ({"label_names": ["a", "b"]}, "2 label_names"),
    ({"label_names": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}, "label_names must be strings"),
    ({"task": "language"}, "needs the signatures"),
    ({"task": "audio"}, "unknown task 'audio'"),
    ({"metrics": [1]}, "'metrics' to be a dict"),
])
def test_malformed_cards_are_artifact_errors(changes, message, copy_of):
    folder = copy_of()
    rewrite_card(folder, **changes)
    with pytest.raises(ArtifactError, match=message):
        zoo.load(folder)


def test_a_card_that_is_not_json_or_not_an_object(copy_of):
    for text in ("{not json", "[1, 2]", "\xff"):
        folder = copy_of(f"card{len(text)}")
        (folder / "model_card.json").write_text(text, encoding="latin-1")
        artifact.write_manifest(folder)
        with pytest.raises(ArtifactError, match="model_card.json"):
            zoo.load(folder)


def test_manifests_with_duplicates_or_bad_bytes(copy_of):
    folder = copy_of("dup")
    lines = (folder / "MANIFEST.sha256").read_text().splitlines()
    (folder / "MANIFEST.sha256").write_text("\n".join(lines + lines[:1]) + "\n")
    with pytest.raises(ArtifactError, match="listed twice"):
        zoo.load(folder)
    folder = copy_of("bytes")
    (folder / "MANIFEST.sha256").write_bytes(b"\xff\xfe" + (folder / "MANIFEST.sha256").read_bytes())
    with pytest.raises(ArtifactError, match="MANIFEST.sha256: expected UTF-8 text, got byte 0xff"):
        zoo.load(folder)


def test_a_language_artifact_with_a_bad_vocabulary(tmp_path):
    from tests.test_language import export_tiny, tiny_model, tiny_spec
    spec = tiny_spec("gru")
    folder = export_tiny(spec, tiny_model(spec), tmp_path / "gru_ptb")
    vocabulary = folder / "assets" / "vocab.txt"
    words = vocabulary.read_text().splitlines()
    vocabulary.write_text("\n".join(["<unkk>" if w == "<unk>" else w for w in words]) + "\n")
    artifact.write_manifest(folder)
    with pytest.raises(ArtifactError, match="including <unk> and <eos>"):
        zoo.load(folder)


# 13. No minutes of retries without data or network.

def test_evaluate_without_data_or_network_fails_at_once(copy_of, monkeypatch):
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)

    def unreachable(*args, **kwargs):
        raise OSError(101, "Network is unreachable")
    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(ValueError, match="mnist: no raw-data directory is set.*cannot be reached"):
        zoo.load(copy_of()).evaluate()


# Generated artifact folders: a loaded model or an ArtifactError, never a hang, never a write.

ENTRY = st.text(string.ascii_lowercase + "._", min_size=1, max_size=8).filter(lambda n: n not in (".", ".."))


@st.composite
def damaged(draw):
    return draw(st.lists(st.one_of(
        st.tuples(st.just("file"), ENTRY, st.binary(max_size=64)),
        st.tuples(st.just("fifo"), ENTRY, st.just(b"")),
        st.tuples(st.just("link"), ENTRY, st.sampled_from([b"/etc/passwd", b"saved_model.pb", b".."])),
        st.tuples(st.just("remove"), st.sampled_from(["model.weights.h5", "README.md", "saved_model.pb",
                                                      "variables/variables.index", "MANIFEST.sha256"]), st.just(b"")),
        st.tuples(st.just("manifest"), st.just(""), st.binary(max_size=200)),
        st.tuples(st.just("card"), st.just(""), st.binary(max_size=200)),
        st.tuples(st.just("card_json"), st.just(""), st.dictionaries(st.sampled_from(
            ["name", "task", "label_names", "metrics", "signatures"]), st.one_of(
                st.none(), st.integers(), st.text(max_size=5), st.lists(st.text(max_size=3), max_size=11)),
            max_size=3).map(lambda d: json.dumps(d).encode())),
    ), min_size=1, max_size=4)), draw(st.booleans())


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=damaged())
def test_generated_artifact_folders_load_or_fail_cleanly(case, fresh_cnn_artifact, tmp_path_factory):
    changes, remanifest = case
    root = tmp_path_factory.mktemp("generated")
    folder = root / "artifact"
    shutil.copytree(fresh_cnn_artifact[1], folder)
    for kind, name, content in changes:
        path = folder / name
        if kind == "remove":
            path.unlink(missing_ok=True)
        elif kind == "manifest":
            (folder / "MANIFEST.sha256").write_bytes(content)
        elif kind == "card":
            (folder / "model_card.json").write_bytes(content)
        elif kind == "card_json" and (folder / "model_card.json").is_file():
            try:
                card = json.loads((folder / "model_card.json").read_bytes())
            except ValueError:  # an earlier change already replaced it by garbage
                continue
            if isinstance(card, dict):
                (folder / "model_card.json").write_text(json.dumps({**card, **json.loads(content)}))
        elif not path.exists() and not path.is_symlink():
            if kind == "file":
                path.write_bytes(content)
            elif kind == "fifo":
                os.mkfifo(path)
            else:
                path.symlink_to(content.decode())
    if remanifest and not any(kind in ("fifo", "link", "manifest") for kind, _, _ in changes):
        artifact.write_manifest(folder)
    before = sorted((str(p), p.lstat().st_mtime_ns) for p in root.rglob("*"))
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail(f"hung on {changes}"))
    signal.alarm(60)
    try:
        for check in (lambda: zoo.load(folder), lambda: artifact.verify_manifest(folder)):
            try:
                check()
            except ArtifactError:
                pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert sorted((str(p), p.lstat().st_mtime_ns) for p in root.rglob("*")) == before  # nothing written
