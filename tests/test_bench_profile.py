"""python -m training.bench.profile (make profile-NAME): ops are grouped into the intended kinds, the
profiler's events become per-step wall time with overlapping ops sharing it, and the report says
what it measured."""
import json
import sys

import keras
import numpy as np
import pytest
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from training.bench import profile
from training.recipes import resolve
from zoo import registry


@pytest.mark.parametrize("op, name, scope, kind", [
    ("Conv2DBackpropFilter", "functional/conv/Conv2D", "", "convolution backward"),
    ("aten::convolution_backward", "", "", "convolution backward"),
    ("_MklNativeConv2D", "functional/conv/Conv2D", "", "convolution forward"),
    ("aten::mkldnn_convolution", "", "", "convolution forward"),
    ("FusedBatchNormGradV3", "functional/bn/FusedBatchNormV3", "", "batch norm"),
    ("aten::native_batch_norm_backward", "", "", "batch norm"),
    ("ReluGrad", "x", "", "activation"),
    ("aten::threshold_backward", "", "", "activation"),
    ("MatMul", "functional/dense/MatMul", "", "matmul"),
    ("aten::addmm", "", "", "matmul"),
    ("aten::mkldnn_rnn_layer_backward", "", "", "recurrent"),
    ("MatMul", "gradient_tape/functional/lstm_1/MatMul", "", "recurrent"),  # the layer's scope wins
    ("MatMul", "lstm_ptb_1/lstm_2_1/MatMul_3", "", "recurrent"),
    ("Mul", "lstm_ptb_1/lstm_2_1/stateless_dropout/Mul", "", "dropout"),  # weight drop's mask
    ("AddV2", "sgd/AddV2", "sgd", "optimizer"),  # under the optimizer's scope, whatever its type
    ("AssignSubVariableOp", "functional/bn/AssignSubVariableOp", "sgd", "other"),  # not the optimizer's
    ("AddV2", "sgd_1/AddV2", r"sgd(?:_\d+)?", "optimizer"),
    ("AddV2", "sgd_10x/AddV2", r"sgd(?:_\d+)?", "other"),  # another scope that starts alike
    ("Mul", "gradient_tape/compile_loss/mul", "sgd", "loss"),
    ("aten::add_", "", "", "other"),
    ("DepthwiseConv2dNativeBackpropFilter", "x", "", "convolution backward"),
    ("DepthwiseConv2dNative", "x", "", "convolution forward"),
    ("_MklNativeMaxPool", "functional/pool/MaxPool", "", "pooling"),
    ("aten::max_pool2d_with_indices", "", "", "pooling"),
    ("Mean", "resnet20_cifar10_1/pool_1/Mean", "", "pooling"),  # ResNet's global average pool ("pool")
    ("Tile", "gradient_tape/resnet20_cifar10_1/pool_1/Mean/Tile", "", "pooling"),  # and its gradient
    ("Mean", "functional_1/global_average_pooling2d_1/Mean", "", "pooling"),  # Keras' default name
    ("aten::adaptive_avg_pool2d", "", "", "pooling"),
    ("Mean", "functional_1/head/Mean", "", "other"),
    ("Conv2D", "functional_1/spool_conv/Conv2D", "", "convolution forward"),  # "pool" inside a name
    ("StatelessRandomUniformV2", "functional/stage0_dropout/stateless_random_uniform/StatelessRandomUniformV2",
     "sgd", "dropout"),
    ("aten::bernoulli_", "", "", "dropout"),
])
def test_ops_are_grouped_into_kinds(op, name, scope, kind):
    assert profile.kind_of(op, name, scope) == kind


def _space(lines: dict[int, list[tuple[str, float, float]]]) -> xplane_pb2.XSpace:
    """An XSpace whose host plane has one line per entry: {timestamp ns: [(event name, start ms, ms)]},
    plus a device plane whose events must be ignored."""
    space = xplane_pb2.XSpace()
    host, device = space.planes.add(name="/host:CPU"), space.planes.add(name="/device:GPU:0")
    names: dict[str, int] = {}
    for timestamp_ns, events in lines.items():
        for plane in (host, device):
            line = plane.lines.add(timestamp_ns=timestamp_ns)
            for name, start_ms, duration_ms in events:
                index = names.setdefault(name, len(names) + 1)
                plane.event_metadata[index].name = name
                line.events.add(metadata_id=index, offset_ps=int(start_ms * 1e9), duration_ps=int(duration_ms * 1e9))
    return space


def test_overlapping_ops_share_the_wall_time_and_runtime_events_are_left_out():
    space = _space({
        0: [("a/Conv2D:Conv2D", 0, 10), ("ExecutorState::Process", 0, 20), ("EagerLocalExecute: Conv2D", 0, 20),
            ("__inference_step_12:StatefulPartitionedCall", 0, 30)],
        2_000_000: [("b/Relu:Relu", 3, 10)],  # starts at 5 ms: the line's timestamp is 2 ms
    })
    figures = profile.op_times(space, steps=5)
    # 0-5 ms the convolution alone, 5-10 ms both (half each), 10-15 ms the ReLU alone: over 5 steps.
    assert figures["ops"] == pytest.approx({"Conv2D": 7.5 / 5, "Relu": 7.5 / 5})
    assert figures["kinds"] == pytest.approx({"convolution forward": 1.5, "activation": 1.5})
    assert figures["op_ms_per_step"] == pytest.approx(15 / 5)


def test_an_empty_span_takes_no_share_of_the_time_after_it():
    space = _space({0: [("a/Relu:Relu", 0, 0), ("b/Conv2D:Conv2D", 0, 10), ("c/AddV2:AddV2", 20, 5)]})
    figures = profile.op_times(space, steps=1)
    assert figures["ops"] == pytest.approx({"Conv2D": 10.0, "AddV2": 5.0})
    assert figures["op_ms_per_step"] == pytest.approx(15.0)  # the 10 ms gap is no op's


def test_a_profile_without_op_events_is_refused():
    with pytest.raises(RuntimeError, match="no op events"):
        profile.op_times(_space({0: [("ExecutorState::Process", 0, 1)]}), steps=1)


def _dense_model():
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    return model


def test_tensorflow_profile_of_a_train_step():
    model = _dense_model()
    x, y = np.ones((128, 64), np.float32), np.zeros((128, 10), np.float32)
    model.train_on_batch(x, y)
    figures = profile.tensorflow_profile(lambda: model.train_on_batch(x, y), steps=3,
                                         optimizer_scope=model.optimizer.name)
    kinds = figures["kinds"]
    # The optimizer's ops are found by its name scope (no op type marks them), the loss's by Keras'.
    assert kinds["matmul"] > 0 and kinds["activation"] > 0 and kinds["optimizer"] > 0 and kinds["loss"] > 0
    assert "ReluGrad" in figures["ops"] and any("MatMul" in op for op in figures["ops"])
    assert 0 < figures["op_ms_per_step"] <= 1.1 * figures["wall_ms_per_step"]


def test_torch_profile_of_a_train_step():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.ones(128, 64)

    def step():
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
    figures = profile.torch_profile(step, steps=3)
    kinds, ops = figures["kinds"], figures["ops"]
    # aten::relu's work is its child clamp_min's (a name of no kind), counted as activation through the ancestor.
    assert "aten::clamp_min" in ops
    assert kinds["activation"] >= ops["aten::clamp_min"] + ops["aten::threshold_backward"]
    assert kinds["matmul"] > 0 and kinds["optimizer"] > 0
    assert 0 < figures["op_ms_per_step"] <= 1.1 * figures["wall_ms_per_step"]


def _result(pytorch):
    tensorflow = {"wall_ms_per_step": 10.0, "op_ms_per_step": 8.0, "kinds": {"convolution forward": 6.0, "other": 2.0},
                  "ops": {"Conv2D": 6.0, "AddV2": 2.0}}
    return {"model": "cnn_mnist", "created": "now", "hardware": {"summary": "2 CPU cores (a CPU)"},
            "load_average": 0.25, "steps": 3, "unit": "examples", "examples_per_step": 128,
            "tensorflow": tensorflow, "pytorch": pytorch, "no_peer": "" if pytorch else "PyTorch is not installed"}


def test_the_report_names_its_machine_and_compares_kinds():
    peer = {"wall_ms_per_step": 5.0, "op_ms_per_step": 5.0, "kinds": {"convolution forward": 3.0, "other": 2.0},
            "ops": {"aten::mkldnn_convolution": 3.0, "aten::add_": 2.0}}
    text = profile.markdown(_result(peer))
    assert "2 CPU cores (a CPU) (1-minute load average 0.2" in text
    assert "python -m training.bench.profile cnn_mnist" in text
    assert "| convolution forward | 6.00 | 60% | 3.00 | 60% | 2.00x |" in text
    assert "| outside ops | 2.00 | 20% | 0.00 | 0% | - |" in text
    assert "| step wall time | 10.00 | 100% | 5.00 | 100% | 2.00x |" in text
    alone = profile.markdown(_result(None))
    assert "no peer column: PyTorch is not installed" in alone and "| other | 2.00 | 20% |" in alone
    assert "PyTorch ms" not in alone


def test_main_refuses_bad_arguments_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "argv", ["profile", "cnn_mnist", "--steps", "0"])
    with pytest.raises(SystemExit):
        profile.main()
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["profile", "cnn_mnist", "--markdown-only", "--output", str(tmp_path)])
    with pytest.raises(SystemExit, match="profile-cnn_mnist.json does not exist"):
        profile.main()


def test_markdown_only_rewrites_the_report_from_its_json(monkeypatch, tmp_path):
    (tmp_path / "profile-cnn_mnist.json").write_text(json.dumps(_result(None)))
    monkeypatch.setattr(sys, "argv", ["profile", "cnn_mnist", "--markdown-only", "--output", str(tmp_path)])
    assert profile.main() == 0
    assert (tmp_path / "profile-cnn_mnist.md").read_text() == profile.markdown(_result(None))


@pytest.mark.slow  # real train steps of the registered models under TensorFlow's profiler
@pytest.mark.parametrize("name, unit, kinds", [
    ("resnet20_cifar10", "examples", ("convolution forward", "convolution backward", "batch norm", "activation",
                                      "pooling")),  # its global average pool, a Mean op, by its layer's scope
    ("lstm_ptb", "tokens", ("recurrent", "matmul", "dropout")),
])
def test_profile_model_splits_the_bench_step(name, unit, kinds, monkeypatch):
    monkeypatch.setattr(profile, "_peer_step", lambda name: (None, "left out here"))
    result = profile.profile_model(name, steps=2)
    figures = result["tensorflow"]
    # The optimizer's and the loss's ops are found by their name scopes (the language twin's read from the twin).
    assert all(figures["kinds"].get(kind, 0) > 0 for kind in (*kinds, "optimizer", "loss"))
    assert result["unit"] == unit
    recipe = resolve(registry.get(name))
    per_example = {"examples": 1, "tokens": recipe.sequence_length}[result["unit"]]
    assert result["examples_per_step"] == recipe.batch_size * per_example


@pytest.mark.slow  # real PyTorch train steps
@pytest.mark.parametrize("name, kinds", [
    ("resnet20_cifar10", ("convolution forward", "convolution backward", "batch norm", "activation", "optimizer")),
    ("lstm_ptb", ("recurrent", "optimizer", "loss")),
])
def test_the_pytorch_peer_is_profiled_into_the_same_kinds(name, kinds):
    pytest.importorskip("torch")
    step, reason = profile._peer_step(name)
    assert step is not None, reason
    figures = profile.torch_profile(step, steps=1)
    assert all(figures["kinds"].get(kind, 0) > 0 for kind in kinds)
