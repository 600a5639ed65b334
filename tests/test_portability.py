"""Artifacts load and run with TensorFlow alone; saved_model_cli documents their signatures."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zoo
from tests.conftest import TRAINED_MODELS
from zoo import artifact

pytestmark = pytest.mark.slow  # a TensorFlow subprocess per artifact

PLAIN_TF_SCRIPT = r"""
import sys, json
import numpy as np
import tensorflow as tf
assert "zoo" not in sys.modules
path, output = sys.argv[1], sys.argv[2]
model = tf.saved_model.load(path)
signature = model.signatures["serving_default"]
name, spec = next(iter(signature.structured_input_signature[1].items()))
if spec.dtype == tf.string:
    inputs = tf.constant(["the company said it", "in new york"])
else:
    shape = [3] + [int(d) for d in spec.shape[1:]]
    inputs = tf.constant(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))
outputs = signature(**{name: inputs})
np.savez(output, inputs=inputs.numpy(), **{key: value.numpy() for key, value in outputs.items()})
assert "zoo" not in sys.modules
"""


def artifact_paths(fresh_cnn_artifact):
    return [fresh_cnn_artifact[1]] + [artifact.committed_dir(name) for name in TRAINED_MODELS]


def run_plain_tf(path: Path, output: Path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run([sys.executable, "-c", PLAIN_TF_SCRIPT, str(path), str(output)],
                            cwd=output.parent, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return dict(np.load(output, allow_pickle=True))  # string outputs; our own subprocess's file


def test_every_artifact_runs_with_plain_tensorflow(fresh_cnn_artifact, tmp_path):
    for path in artifact_paths(fresh_cnn_artifact):
        outputs = run_plain_tf(path, tmp_path / f"{path.name}.npz")
        model = zoo.load(path)
        if model.card["task"] == "image":
            # The SavedModel's graph against the Keras model rebuilt from model.weights.h5 (what
            # get_model(pretrained=True) gives): the two files of an artifact hold one model.
            keras_model = (fresh_cnn_artifact[0] if path == fresh_cnn_artifact[1]
                           else zoo.get_model(model.name, pretrained=True))
            scores = np.asarray(keras_model(outputs["inputs"], training=False))
            np.testing.assert_allclose(outputs["scores"], scores, rtol=1e-5, atol=1e-4)
            np.testing.assert_array_equal(outputs["class_id"], scores.argmax(-1))
        else:
            texts = [t.decode() for t in outputs["inputs"]]
            for index, text in enumerate(texts):
                words = [w for w, _ in model.next_words(text, k=10)]
                assert words == [w.decode() for w in outputs["top_words"][index]]


def test_no_absolute_paths_inside_artifacts(fresh_cnn_artifact):
    for path in artifact_paths(fresh_cnn_artifact):
        graph = (path / "saved_model.pb").read_bytes()
        assert str(path.resolve()).encode() not in graph
        assert b"/work/" not in graph and b"/tmp/" not in graph


def test_saved_model_cli_lists_named_inputs_and_outputs(fresh_cnn_artifact):
    cli = Path(sys.executable).with_name("saved_model_cli")
    for path in artifact_paths(fresh_cnn_artifact):
        result = subprocess.run([str(cli), "show", "--dir", str(path), "--all"], capture_output=True,
                                text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert result.returncode == 0, result.stderr[-2000:]
        card = json.loads((path / "model_card.json").read_text())
        section = result.stdout.split("signature_def['serving_default']")[1].split("signature_def[")[0]
        signature = card["signatures"].get("serving_default") or card["signatures"].get("next_word")
        for name in list(signature["inputs"]) + list(signature["outputs"]):
            assert f"['{name}'] tensor_info" in section, name
        assert "dtype: DT_" in section and "shape: (-1" in section
