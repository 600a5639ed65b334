"""ONNX (onnxruntime) and TFLite (LiteRT) exports agree with the SavedModel."""
import stat
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import zoo
from tests.conftest import IMAGE_MODELS, export_fresh, random_images
from zoo import artifact, convert, registry


def parity_inputs(model, data_dir, count=100):
    """100 real test images when a data directory is set, generated ones otherwise."""
    if data_dir:
        from zoo.data.images import load_images
        images, _ = next(iter(load_images(model.card["dataset"]["name"], "test", data_dir).batch(count)))
        return images.numpy()
    return random_images(model.input_shape, count=count, seed=11)


def artifact_for(name, tmp_path):
    spec = registry.get(name)
    if artifact.is_trained(spec.name):
        return artifact.committed_dir(spec.name)
    export_fresh(name, tmp_path / name)
    return tmp_path / name


def assert_outputs_match(outputs, expected):
    """convert.outputs_agree: class ids equal; every float output within
    convert.PARITY_TOLERANCE of its own scale (README "Guarantees" quotes it)."""
    assert convert.outputs_agree(outputs, expected), {
        key: float(np.abs(np.asarray(outputs[key], np.float64) - expected[key]).max()) for key in expected}


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_onnx_and_tflite_match_savedmodel(name, tmp_path, monkeypatch):
    import os

    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    from zoo.convert import to_onnx, to_tflite
    path = artifact_for(name, tmp_path)
    model = zoo.load(path)
    images = parity_inputs(model, os.environ.get("ZOO_DATA_DIR") if path == artifact.committed_dir(name) else None)
    expected = convert.reference_outputs(model, images)

    session = onnxruntime.InferenceSession(str(to_onnx(path, tmp_path / "model.onnx")))
    assert [i.name for i in session.get_inputs()] == ["image"]
    names = [o.name for o in session.get_outputs()]
    onnx_outputs = dict(zip(names, session.run(None, {"image": images})))
    assert_outputs_match(onnx_outputs, expected)

    interpreter = Interpreter(model_content=to_tflite(path, tmp_path / "model.tflite").read_bytes())
    runner = interpreter.get_signature_runner("serving_default")
    results = [runner(image=images[i:i + 1]) for i in range(len(images))]
    tflite_outputs = {key: np.concatenate([r[key] for r in results]) for key in results[0]}
    assert_outputs_match(tflite_outputs, expected)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_language_model_step_converts_to_tflite(cell, tmp_path):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from tests.test_language import export_tiny, tiny_model, tiny_spec
    from zoo.convert import to_tflite

    spec = tiny_spec(cell)
    path = export_tiny(spec, tiny_model(spec), tmp_path / f"{cell}_ptb")
    runner = Interpreter(model_content=to_tflite(path, tmp_path / "step.tflite").read_bytes()
                         ).get_signature_runner("step")
    step = tf.saved_model.load(str(path)).signatures["step"]
    size = step.structured_input_signature[1]["state"].shape[-1]
    lite_state = saved_state = np.zeros((1, size), np.float32)
    for token in [1, 5, 3, 3, 0, 7]:  # carry the state through a short text
        token_id = np.array([token], np.int32)
        lite = runner(token_id=token_id, state=lite_state)
        saved = {k: v.numpy() for k, v in step(token_id=tf.constant(token_id), state=tf.constant(saved_state)).items()}
        np.testing.assert_allclose(lite["logits"], saved["logits"], atol=1e-4)
        lite_state, saved_state = lite["state"], saved["state"]
    with pytest.raises(ValueError, match="ONNX export covers image models"):
        from zoo.convert import to_onnx
        to_onnx(path, tmp_path / "lm.onnx")


def test_onnxruntime_runtime_matches_tensorflow_and_caches_its_conversion(fresh_cnn_artifact, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    _, folder = fresh_cnn_artifact
    reference = zoo.load(folder)
    fast = zoo.load(folder, runtime="onnxruntime")
    assert fast.runtime == "onnxruntime" and "onnxruntime" in repr(fast)
    images = random_images(reference.input_shape, count=5, seed=3)
    result = fast.predict(images)
    assert_outputs_match({"class_id": result.class_id, "probabilities": result.probabilities,
                          "scores": result.scores}, convert.reference_outputs(reference, images))
    assert len(fast.predict(images, batch_size=2)) == 5  # chunks concatenate as with TensorFlow
    (converted,) = (tmp_path / "converted").rglob("*.onnx")
    stamp = converted.stat().st_mtime_ns
    zoo.load(folder, runtime="onnxruntime")
    assert converted.stat().st_mtime_ns == stamp  # the second load reuses the conversion

    import tensorflow_datasets as tfds
    calls = []
    run = fast._run
    fast._run = lambda batch: calls.append(len(batch)) or run(batch)
    with tfds.testing.mock_data(num_examples=20):
        onnx_accuracy = fast.evaluate(batch_size=8)["test_accuracy"]
        assert onnx_accuracy == reference.evaluate(batch_size=8)["test_accuracy"]
    assert calls == [8, 8, 4]  # evaluate() predicts through the model's own runtime


def test_runtime_argument_is_checked():
    with pytest.raises(ValueError, match="runtime must be one of"):
        zoo.load("cnn_mnist", runtime="torch")
    with pytest.raises(ValueError, match="needs TensorFlow"):
        zoo.load("lstm_ptb", runtime="onnxruntime")


def test_a_failed_conversion_leaves_the_previous_file(fresh_cnn_artifact, tmp_path, monkeypatch):
    """tf2onnx (here a stand-in that is killed halfway) writes to a temporary name, never the output."""
    def half_written(function, input_signature, opset, output_path):
        Path(output_path).write_bytes(b"half an onnx file")
        raise RuntimeError("killed while writing")
    monkeypatch.setitem(sys.modules, "tf2onnx", types.SimpleNamespace(
        convert=types.SimpleNamespace(from_function=half_written)))
    output = tmp_path / "model.onnx"
    output.write_bytes(b"the previous conversion")
    with pytest.raises(RuntimeError, match="killed while writing"):
        convert.to_onnx(fresh_cnn_artifact[1], output)
    assert output.read_bytes() == b"the previous conversion" and list(tmp_path.iterdir()) == [output]


def test_exported_files_are_readable_by_others(fresh_cnn_artifact, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    output = tmp_path / "out" / "cnn.tflite"
    cached = convert.export_file(zoo.load(fresh_cnn_artifact[1]), convert.FORMATS["tflite"], output)
    (made,) = (tmp_path / "cache" / "converted" / "cnn_mnist").glob("*.tflite")
    assert output.read_bytes() == made.read_bytes() and cached == output
    assert stat.S_IMODE(output.stat().st_mode) == stat.S_IMODE(made.stat().st_mode) == 0o644
    assert [path.name for path in output.parent.iterdir()] == ["cnn.tflite"]


def test_conversions_are_checked_against_the_savedmodel_not_the_current_runtime(fresh_cnn_artifact, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    model = zoo.load(fresh_cnn_artifact[1])
    images = random_images(model.input_shape, count=5, seed=4)
    expected = model.predict(images).class_id
    # A model already switched to a runtime that answers wrongly: its predictions are no reference.
    model.use_runtime("litert", "float32", lambda batch: {"class_id": np.zeros(len(batch), np.int64),
                                                          "scores": np.zeros((len(batch), 10), np.float32),
                                                          "probabilities": np.zeros((len(batch), 10), np.float32)})
    convert.use_runtime(model, "litert")
    np.testing.assert_array_equal(model.predict(images).class_id, expected)
    with pytest.raises(ValueError, match=r"^runtime must be one of \('onnxruntime', 'litert'\).*got 'torch'$"):
        convert.use_runtime(model, "torch")
