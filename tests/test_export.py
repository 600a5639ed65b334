import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import zoo
from tests.conftest import IMAGE_MODELS, export_fresh, random_images, registry_params
from zoo import registry
from zoo.artifact import ArtifactError, verify_manifest


@pytest.mark.parametrize("name", registry_params(IMAGE_MODELS))
def test_export_reload_parity_and_named_signature(name, tmp_path):
    model = export_fresh(name, tmp_path / name)
    spec = registry.get(name)
    loaded = tf.saved_model.load(str(tmp_path / name))  # plain TF, no zoo
    signature = loaded.signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["image"]
    assert signature.structured_input_signature[1]["image"].dtype == tf.uint8
    images = random_images(model.input_shape[1:], count=8, seed=1)
    outputs = {key: value.numpy() for key, value in signature(image=tf.constant(images)).items()}
    expected_keys = {"scores", "class_id"} | ({"probabilities"} if spec.probabilistic else set()) \
        | ({"distance"} if spec.hyperplane_distance else set())
    assert set(outputs) == expected_keys
    keras_scores = np.asarray(model(images, training=False))
    assert np.max(np.abs(outputs["scores"] - keras_scores)) < 1e-5
    assert outputs["class_id"].dtype == np.int64
    np.testing.assert_array_equal(outputs["class_id"], keras_scores.argmax(-1))
    if spec.probabilistic:
        np.testing.assert_allclose(outputs["probabilities"].sum(-1), 1.0, atol=1e-5)
    files = {path.name for path in (tmp_path / name).iterdir()}
    assert {"saved_model.pb", "variables", "model.weights.h5", "model_card.json", "MANIFEST.sha256",
            "README.md"} <= files
    verify_manifest(tmp_path / name)


@pytest.mark.parametrize("name", registry_params(IMAGE_MODELS))
def test_one_epoch_training_on_mock_data_exports(name, tmp_path):
    from training import tasks
    with tfds.testing.mock_data(num_examples=64):
        path = tasks.train(name, {"epochs": 1, "batch_size": 32}, destination=tmp_path / name,
                           work_dir=tmp_path / "work", verbose=0)
    card = json.loads((path / "model_card.json").read_text())
    assert card["name"] == name and card["training"]["epochs_run"] == 1
    assert card["metrics"]["test_accuracy"]["examples"] == 64
    assert card["parameter_count"] == registry.get(name).parameter_count
    assert not (tmp_path / "work").exists(), "checkpoints are removed once the artifact lands"
    predictions = zoo.load(path).predict(random_images(zoo.get_model(name).input_shape[1:], count=2))
    assert len(predictions) == 2


def test_tampered_truncated_and_extra_files_are_refused(fresh_cnn_artifact, tmp_path):
    import shutil
    _, original = fresh_cnn_artifact
    for damage in ("flip", "truncate", "extra", "missing", "symlink"):
        folder = tmp_path / damage
        shutil.copytree(original, folder)
        weights = folder / "variables" / "variables.data-00000-of-00001"
        data = bytearray(weights.read_bytes())
        if damage == "flip":
            data[len(data) // 2] ^= 0xFF
            weights.write_bytes(bytes(data))
        elif damage == "truncate":
            weights.write_bytes(bytes(data[:-10]))
        elif damage == "extra":
            (folder / "notes.txt").write_text("hello")
        elif damage == "missing":
            (folder / "README.md").unlink()
        else:
            (folder / "escape").symlink_to("/etc/hostname")
        expected = {"extra": "notes.txt", "missing": "README.md", "symlink": "escape"}.get(damage, "variables.data")
        with pytest.raises(ArtifactError, match=expected):
            zoo.load(folder)


def test_not_an_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(ArtifactError, match="not a zoo artifact"):
        zoo.load(tmp_path)
    with pytest.raises(ArtifactError, match="neither a registered model"):
        zoo.load(tmp_path / "missing")


def test_failed_export_leaves_previous_artifact(fresh_cnn_artifact, tmp_path, monkeypatch):
    import shutil

    from zoo import export as export_module
    model, original = fresh_cnn_artifact
    destination = tmp_path / "cnn_mnist"
    shutil.copytree(original, destination)
    before = (destination / "MANIFEST.sha256").read_text()

    def explode(folder):
        raise RuntimeError("disk full (injected)")
    monkeypatch.setattr(export_module, "write_manifest", explode)
    with pytest.raises(RuntimeError, match="injected"):
        export_fresh("cnn_mnist", destination)
    assert (destination / "MANIFEST.sha256").read_text() == before
    verify_manifest(destination)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")], "staging folder removed"


@pytest.mark.parametrize("from_saved_model", [False, True])
def test_reexport_keeps_the_model_function(from_saved_model, tmp_path):
    from training.reexport import reexport
    folder = tmp_path / "perceptron_mnist"  # its training state is not in the SavedModel
    export_fresh("perceptron_mnist", folder)
    images = random_images((28, 28, 1), count=8, seed=5)
    before = zoo.load(folder).predict(images)
    reexport("perceptron_mnist", from_saved_model, folder)
    after = zoo.load(folder)  # the manifest verifies
    np.testing.assert_array_equal(after.predict(images).scores, before.scores)
    assert "reexported" in after.card and after.card["signatures"]
    assert after.card["version"] == 2  # new bytes: the next published version
