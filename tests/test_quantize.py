"""Float and int8 conversions (zoo.convert.FORMATS) against the SavedModel, the cache of converted
files, and zoo.load(..., runtime=..., precision=...)."""
import dataclasses
import os

import numpy as np
import pytest

import zoo
from tests.conftest import export_fresh
from tests.test_checkpoints import make_dry_run
from zoo import artifact, cli, convert, registry, tasks
from zoo.artifact import ArtifactError
from zoo.serving import image

# Stated tolerances of int8 files against the SavedModel (class ids: convert.INT8_AGREEMENT).
INT8_PROBABILITY_TOLERANCE = 0.05  # absolute; TFLite's int8 softmax alone has a resolution of 1/256
INT8_LOGIT_TOLERANCE = 0.05  # `step` logits, as a fraction of the largest |logit|
TEST_IMAGES = 300


def generated_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Font-drawn digits (zoo.serving.image.draw_digits), each shifted up to 3 pixels, dimmed
    and noised: uint8 [count, 28, 28, 1] and their digits, a stand-in for MNIST."""
    rng = np.random.default_rng(seed)
    digits = image.draw_digits().astype(np.float32)
    labels = rng.integers(0, 10, count)
    shifted = np.stack([np.roll(digits[label], tuple(rng.integers(-3, 4, 2)), axis=(0, 1)) for label in labels])
    pixels = shifted * rng.uniform(0.5, 1.0, (count, 1, 1, 1)) + rng.normal(0, 25, shifted.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8), labels


def digit_sample(dataset, count, data_dir=None):
    """Stands in for image.training_sample (the real training split)."""
    return generated_digits(count, seed=1)[0]


@pytest.fixture(scope="session")
def digit_cnn(tmp_path_factory):
    """An exported cnn_mnist trained for a few seconds on generated digits (>= 0.99 of them
    right): classes decided with margins, as a trained model's are; random weights give near
    ties, which any rounding flips."""
    import keras
    keras.utils.set_random_seed(0)
    model = registry.get("cnn_mnist").build()
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, labels = generated_digits(2048, seed=0)
    model.fit(images, labels, batch_size=64, epochs=3, verbose=0)
    # 96 steps leave batch norm's moving statistics far from the data's: set them from one pass.
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(images[:1024], training=True)
    for layer in norms:
        layer.momentum = 0.99
    test_images, test_labels = generated_digits(TEST_IMAGES, seed=2)
    assert np.mean(np.argmax(model(test_images, training=False), axis=-1) == test_labels) >= 0.99
    folder = tmp_path_factory.mktemp("artifacts") / "cnn_mnist"
    export_fresh("cnn_mnist", folder, model=model)
    return folder


@pytest.fixture(scope="session")
def digit_cnn_files(digit_cnn, tmp_path_factory):
    """format name -> the digit CNN converted to it (each made once per session)."""
    folder, made = tmp_path_factory.mktemp("converted"), {}

    def get(name: str):
        if name not in made:
            format = convert.FORMATS[name]
            calibration = convert.batches(digit_sample("mnist", 500)) if format.calibrated else None
            made[name] = convert.convert(digit_cnn, format, folder / f"{name}.{format.file_type}", calibration)
        return made[name]
    return get


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name.startswith("onnx") else name
                                  for name in tasks.get("image").formats])  # tf2onnx takes ~10 s a file
def test_each_image_conversion_agrees_with_the_savedmodel(name, digit_cnn, digit_cnn_files):
    """float32: class ids equal on every image, every output within PARITY_TOLERANCE of its
    scale; int8: class ids equal on >= INT8_AGREEMENT, probabilities within
    INT8_PROBABILITY_TOLERANCE, and the file under half the float32 one (its weights are int8)."""
    format = convert.FORMATS[name]
    images, _ = generated_digits(TEST_IMAGES, seed=2)  # other digits than the calibration's
    expected = convert.reference_outputs(zoo.load(digit_cnn), images)
    outputs = convert.open_runner(digit_cnn_files(name).read_bytes(), format.file_type, "serving_default")(image=images)
    assert convert.same_outputs(outputs, expected)
    if format.precision == "float32":
        assert convert.outputs_agree(outputs, expected)
        return
    assert np.mean(outputs["class_id"] == expected["class_id"]) >= convert.INT8_AGREEMENT
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=0,
                               atol=INT8_PROBABILITY_TOLERANCE)
    float_file = digit_cnn_files(convert.format_for(format.file_type, "float32").name)
    assert digit_cnn_files(name).stat().st_size < 0.5 * float_file.stat().st_size


@pytest.fixture(scope="module")
def small_lm(tmp_path_factory):
    """A 2x64 tied LSTM over 256 words with random weights (N(0, 0.3): distributions far from
    uniform): large enough that dynamic-range quantization converts its tensors (TFLite keeps
    tensors under 1,024 elements in float)."""
    from tests.test_language import export_tiny
    from zoo.models.language import LanguageModelConfig
    from zoo.serving.language import set_vocabulary

    base = registry.get("lstm_ptb")
    config = LanguageModelConfig(cell="lstm", vocab_size=256, embedding_dim=64, hidden_units=64, num_layers=2,
                                 dropout=0.1, tie_embeddings=True)
    spec = dataclasses.replace(base, config=config, parameter_count=base.build(config).count_params())
    model = spec.build()
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0.0, 0.3, weight.shape).astype(np.float32) for weight in model.get_weights()])
    set_vocabulary(model, ["<unk>", "<eos>"] + [f"w{index}" for index in range(2, 256)])
    return export_tiny(spec, model, tmp_path_factory.mktemp("artifacts") / "lstm_ptb")


def test_language_step_converts_to_float32_and_int8_tflite(small_lm, tmp_path):
    """Each step from the SavedModel's state (so errors do not compound): float32 logits within
    PARITY_TOLERANCE of their scale; int8-dynamic within INT8_LOGIT_TOLERANCE, the same most
    likely next word on >= INT8_AGREEMENT of the steps, and the file under half the float32 one."""
    import tensorflow as tf

    step = tf.saved_model.load(str(small_lm)).signatures["step"]
    files = {name: convert.convert(small_lm, name, tmp_path / f"{name}.tflite")
             for name in tasks.get("language").formats}
    runners = {name: convert.open_runner(path.read_bytes(), "tflite", "step") for name, path in files.items()}
    assert files["tflite_int8_dynamic"].stat().st_size < 0.5 * files["tflite"].stat().st_size
    state = np.zeros((1, step.structured_input_signature[1]["state"].shape[-1]), np.float32)
    tolerance = {"tflite": convert.PARITY_TOLERANCE, "tflite_int8_dynamic": INT8_LOGIT_TOLERANCE}
    same_top = dict.fromkeys(runners, 0)
    tokens = np.random.default_rng(1).integers(0, 256, 200).astype(np.int32)
    for token in tokens:
        saved = {key: value.numpy()
                 for key, value in step(token_id=tf.constant([token]), state=tf.constant(state)).items()}
        scale = float(np.abs(saved["logits"]).max())
        for name, run in runners.items():
            outputs = run(token_id=np.array([token], np.int32), state=state)
            np.testing.assert_allclose(outputs["logits"], saved["logits"], rtol=0, atol=tolerance[name] * scale)
            same_top[name] += int(outputs["logits"].argmax() == saved["logits"].argmax())
        state = saved["state"]
    assert same_top["tflite"] == len(tokens)
    assert same_top["tflite_int8_dynamic"] >= convert.INT8_AGREEMENT * len(tokens)


def cached_files(cache, pattern="tflite_int8-*"):
    return sorted((cache / "converted" / "cnn_mnist").glob(pattern))


def test_load_with_precision_int8_predicts_through_a_cached_checked_file(digit_cnn, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    draws = []
    monkeypatch.setattr(image, "training_sample", lambda *args, **kwargs: draws.append(args[1]) or digit_sample(*args))
    reference = zoo.load(digit_cnn)
    model = zoo.load(digit_cnn, runtime="litert", precision="int8")
    assert (model.runtime, model.precision) == ("litert", "int8") and "precision='int8'" in repr(model)
    images, _ = generated_digits(TEST_IMAGES, seed=2)
    result, expected = model.predict(images, batch_size=128), reference.predict(images)
    assert type(result) is type(expected) and result.probabilities.shape == expected.probabilities.shape
    assert np.mean(result.class_id == expected.class_id) >= convert.INT8_AGREEMENT
    assert result.label == [reference.label_names[index] for index in result.class_id]
    assert draws == [convert.CALIBRATION_IMAGES + convert.CHECK_IMAGES]  # one draw: calibration and check
    (made,) = cached_files(tmp_path)
    key = artifact.manifest_digest(digit_cnn)[:16]
    assert made.name == f"tflite_int8-{key}-{artifact.sha256_file(made)}.tflite"
    zoo.load(digit_cnn, runtime="litert", precision="int8")
    assert len(draws) == 1 and cached_files(tmp_path) == [made]  # the second load uses the cached file
    dynamic = zoo.load(digit_cnn, runtime="litert", precision="int8-dynamic")  # int8 weights: no data needed
    assert len(draws) == 1 and np.mean(dynamic.predict(images).class_id == expected.class_id) >= convert.INT8_AGREEMENT
    float32 = zoo.load(digit_cnn, runtime="litert")
    np.testing.assert_array_equal(float32.predict(images).class_id, expected.class_id)


def test_quantized_files_are_refused_when_their_recorded_digest_does_not_match(digit_cnn, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(image, "training_sample", digit_sample)
    zoo.load(digit_cnn, runtime="litert", precision="int8")
    (made,) = cached_files(tmp_path)
    # A flipped byte: the file no longer hashes to the digest its name records. It is deleted,
    # not run; without the training data no new one can be made, and the load fails.
    content = bytearray(made.read_bytes())
    content[len(content) // 2] ^= 0xFF
    made.write_bytes(bytes(content))

    def no_data(*args, **kwargs):
        raise ImportError("calibrating an int8 conversion reads the real data")
    monkeypatch.setattr(image, "training_sample", no_data)
    with pytest.raises(ImportError, match="reads the real data"):
        zoo.load(digit_cnn, runtime="litert", precision="int8")
    assert cached_files(tmp_path) == []
    # With the data it is made again, whole.
    monkeypatch.setattr(image, "training_sample", digit_sample)
    zoo.load(digit_cnn, runtime="litert", precision="int8")
    (remade,) = cached_files(tmp_path)
    assert remade.name.endswith(f"-{artifact.sha256_file(remade)}.tflite")
    # A file recorded as made from other artifact content (another manifest digest) is not picked.
    key = artifact.manifest_digest(digit_cnn)[:16]
    other = remade.with_name(remade.name.replace(key, "0" * 16))
    os.replace(remade, other)
    monkeypatch.setattr(image, "training_sample", no_data)
    with pytest.raises(ImportError, match="reads the real data"):
        zoo.load(digit_cnn, runtime="litert", precision="int8")
    # A new conversion whose classes differ on too many check images is refused, and not cached.
    monkeypatch.setattr(image, "training_sample", digit_sample)
    monkeypatch.setattr(convert, "INT8_AGREEMENT", 1.01)
    with pytest.raises(ArtifactError, match=r"gives the SavedModel's class on 100.0% of 500 training images"):
        zoo.load(digit_cnn, runtime="litert", precision="int8")
    assert cached_files(tmp_path) == [other]


def test_runtime_and_precision_are_checked(fresh_cnn_artifact):
    folder = fresh_cnn_artifact[1]
    with pytest.raises(ValueError, match="precision must be one of"):
        zoo.load(folder, runtime="litert", precision="int4")
    with pytest.raises(ValueError, match="runs on a converted file"):
        zoo.load(folder, precision="int8")
    with pytest.raises(ValueError, match="no onnx conversion in precision 'int8-dynamic'"):
        zoo.load(folder, runtime="onnxruntime", precision="int8-dynamic")
    with pytest.raises(ValueError, match="needs TensorFlow"):
        zoo.load("lstm_ptb", runtime="litert")


def test_convert_command_writes_checked_files_and_refuses_what_a_model_does_not_convert_to(
        digit_cnn, small_lm, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    output = tmp_path / "out" / "cnn.tflite"
    assert cli.main(["convert", "tflite", str(digit_cnn), "--precision", "int8-dynamic", "--output", str(output)]) == 0
    (made,) = cached_files(tmp_path / "cache", "tflite_int8_dynamic-*")
    assert output.read_bytes() == made.read_bytes() and f"wrote {output}" in capsys.readouterr().out
    assert cli.main(["convert", "tflite", str(small_lm), "--precision", "int8-dynamic"]) == 0
    assert "tflite_int8_dynamic-" in capsys.readouterr().out
    for arguments in (["onnx", str(small_lm)], ["tflite", str(small_lm), "--precision", "int8"]):
        assert cli.main(["convert", *arguments]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: lstm_ptb is a language model: it converts to") and error.count("\n") == 1


def test_make_passes_quantize_as_a_checked_precision(tmp_path):
    result = make_dry_run(tmp_path, "export-tflite-cnn_mnist", "export-onnx-mlp_mnist", "QUANTIZE=int8")
    assert result.returncode == 0, result.stderr
    assert "-m zoo convert tflite cnn_mnist --precision int8" in result.stdout
    assert "-m zoo convert onnx mlp_mnist --precision int8" in result.stdout
    result = make_dry_run(tmp_path, "export-tflite-cnn_mnist", "formats")
    assert "-m zoo convert tflite cnn_mnist\n" in result.stdout  # no QUANTIZE: float32
    assert "-m training.formats --update-readme" in result.stdout
    for value in ("int4", "int8 --output /etc/passwd", "$(shell touch INJECTED)"):
        result = make_dry_run(tmp_path, "export-onnx-cnn_mnist", f"QUANTIZE={value}")
        assert result.returncode != 0 and "must be int8 or int8-dynamic" in result.stderr
    assert not (tmp_path / "INJECTED").exists()
