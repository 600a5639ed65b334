"""Mirrored training over 2 logical CPUs matches one device; two local workers agree."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

MIRRORED_SCRIPT = r"""
import sys, json, numpy as np, tensorflow as tf, keras
from training import distribute
from zoo.models.mlp import MLPConfig, build_mlp
replicas = int(sys.argv[1])
if replicas > 1:
    distribute.split_cpu(replicas)
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32"); y = (x[:, 0] + x[:, 1] > 0).astype("int64")
strategy = tf.distribute.MirroredStrategy() if replicas > 1 else tf.distribute.get_strategy()
with strategy.scope():
    model = build_mlp(MLPConfig(input_shape=(8,), num_classes=2, hidden_units=16, dropout=0.0, pixel_input=False))
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
history = model.fit(dataset, epochs=3, verbose=0)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": history.history["loss"],
                  "weights": [w.tolist() for w in model.get_weights()]}))
"""

WORKER_SCRIPT = r"""
import sys, json, numpy as np, tensorflow as tf, keras
from training import distribute
strategy = distribute.make_strategy("multi_worker")
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32"); y = np.eye(2)[(x[:, 0] > 0).astype(int)].astype("float32")
from zoo.models.mlp import MLPConfig, build_mlp
with strategy.scope():
    model = build_mlp(MLPConfig(input_shape=(8,), num_classes=2, hidden_units=16, dropout=0.0, pixel_input=False))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
dataset = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(32).with_options(options)
loss = keras.losses.CategoricalCrossentropy(from_logits=True, reduction=None)
history = distribute.custom_fit(model, loss, dataset, epochs=2, steps_per_epoch=4, strategy=strategy,
                                global_batch_size=32)
print("RESULT " + json.dumps({"chief": distribute.is_chief(), "loss": history["loss"],
                              "weights": [w.tolist() for w in model.get_weights()]}))
"""


def run(script, *args, env_extra=None, background=False):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **(env_extra or {})}
    command = [sys.executable, "-c", script, *args]
    if background:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_mirrored_two_logical_cpus_matches_single_device():
    single = run(MIRRORED_SCRIPT, "1")
    mirrored = run(MIRRORED_SCRIPT, "2")
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=1e-4)
    for a, b in zip(mirrored["weights"], single["weights"]):
        np.testing.assert_allclose(a, b, atol=1e-5)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow
def test_two_local_workers_end_with_identical_weights():
    workers = [f"localhost:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(run(WORKER_SCRIPT, env_extra={"TF_CONFIG": json.dumps(config)}, background=True))
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.split("RESULT ", 1)[1]))
    assert [r["chief"] for r in results] == [True, False]
    for a, b in zip(results[0]["weights"], results[1]["weights"]):
        np.testing.assert_array_equal(a, b)
    assert results[0]["loss"][-1] < results[0]["loss"][0]


def test_multi_worker_without_tf_config_is_a_clear_error(monkeypatch):
    from training import distribute
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.make_strategy("multi_worker")
    with pytest.raises(ValueError, match="distribute must be"):
        distribute.make_strategy("ring")


MIRRORED_EXPORT_SCRIPT = r"""
import sys, tensorflow as tf, tensorflow_datasets as tfds
from training import distribute, tasks
distribute.split_cpu(2)
strategy = distribute.make_strategy("mirrored")
with tfds.testing.mock_data(num_examples=128):
    path = tasks.train("cnn_mnist", {"epochs": 1, "batch_size": 32}, destination=sys.argv[1],
                       work_dir=sys.argv[2], strategy=strategy, verbose=0)
print('{"replicas": %d}' % strategy.num_replicas_in_sync)
"""


@pytest.mark.slow
def test_artifact_from_mirrored_run_loads_like_any_other(tmp_path):
    import zoo
    result = run(MIRRORED_EXPORT_SCRIPT, str(tmp_path / "cnn_mnist"), str(tmp_path / "work"))
    assert result["replicas"] == 2
    model = zoo.load(tmp_path / "cnn_mnist")
    assert model.card["distribute"] == "MirroredStrategy"
    assert len(model.predict(np.zeros((3, 28, 28, 1), np.uint8))) == 3
