"""python -m training.bench.profile NAME [--steps N] [--output DIR] (make profile-NAME): where a
train step's time goes.

The bench's train step of NAME (training.bench.measure: a fixed synthetic batch at the recipe's
batch size, float32) runs under TensorFlow's profiler; the wall time its ops take is summed per
step by op type and by kind (convolution forward and backward, batch norm, ...). Where PyTorch is
installed (the optional `peers` extra) and NAME has a peer in training.bench.peers, its eager step
runs under torch.profiler in the same process, grouped into the same kinds. Writes
DIR/profile-NAME.{json,md}.
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # the profiler's output (no public reader)

from training import cards
from training.bench.measure import image_train_step, language_twin_step, timed
from training.bench.render import REPORTS
from training.readme import read_report
from zoo import files, registry

# (kind, pattern over a TensorFlow op type or an aten op name); the first match names the kind.
KINDS: tuple[tuple[str, str], ...] = (
    ("convolution backward", r"Conv2[dD]\w*Backprop|convolution_backward"),
    ("convolution forward", r"Conv2[dD]|convolution|conv2d"),  # Conv2d: DepthwiseConv2dNative
    ("recurrent", r"lstm|gru|rnn"),
    ("matmul", r"MatMul|^aten::(addmm|mm|bmm|linear|matmul)$"),
    ("batch norm", r"BatchNorm|batch_norm"),
    ("pooling", r"MaxPool|AvgPool|max_pool|avg_pool"),
    ("dropout", r"bernoulli|dropout"),
    ("activation", r"Relu|Sigmoid|Tanh|relu|threshold_backward|sigmoid|tanh"),
    ("loss", r"SoftmaxCrossEntropy|LogSoftmax|cross_entropy|log_softmax|nll_loss"),
)
# TensorFlow name scopes that name a kind whatever the op's type (gradients included, under
# gradient_tape/...): Keras' loss, a dropout's, the zoo's recurrent layers (lstm_1, gru_2, ...), a
# pooling layer's (ResNet's global average pool, "pool", is a Mean op; PyTorch's adaptive_avg_pool2d
# is pooling by name).
SCOPES: tuple[tuple[str, str], ...] = (
    ("loss", r"(?:^|/)compile_loss/"),
    ("pooling", r"(?:^|/)[^/]*pool(?:ing\dd)?(?:_\d+)*/"),
    ("dropout", r"(?:^|/)[^/]*dropout[^/]*/"),
    ("recurrent", r"(?:^|/)(?:lstm|gru|rnn)(?:_\d+)+/"),  # Keras numbers each call too: lstm_1_1/
)
# TensorFlow's op events are "op/name:OpType"; the runtime's own ("Class::method", "EagerLocalExecute: op")
# do not match, and function calls and control flow, which wrap other ops' events, are left out.
_OP_EVENT = re.compile(r"([^\s:]+):([A-Za-z_]\w*)$")
_WRAPPERS = frozenset({"StatefulPartitionedCall", "PartitionedCall", "While", "StatelessWhile", "If",
                       "StatelessIf", "Case", "StatelessCase"})


def kind_of(op: str, name: str = "", optimizer_scope: str = "") -> str:
    """The kind of an op (its TensorFlow type, or an aten name). A TensorFlow op under the optimizer's
    name scope (one matching the pattern `optimizer_scope`) or one of SCOPES is of that kind whatever
    its type."""
    if optimizer_scope and re.match(rf"(?:{optimizer_scope})/", name):
        return "optimizer"
    kind = next((kind for kind, pattern in SCOPES if name and re.search(pattern, name)), None)
    return kind or next((kind for kind, pattern in KINDS if re.search(pattern, op)), "other")


def op_times(space: xplane_pb2.XSpace, steps: int, optimizer_scope: str = "") -> dict:
    """Per step, ms of the host's wall time by op type and by kind, and the time any op ran. Where
    ops overlap (TensorFlow runs independent ops side by side on its inter-op threads) each instant
    is split evenly among those running, so the kinds add up to the time covered."""
    spans = []  # (start ps, end ps, op type, kind)
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for event in line.events:
                match = _OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
                if not match or match[2] in _WRAPPERS or match[1].startswith("__inference") or event.duration_ps <= 0:
                    continue  # (an empty span would start after its own end in the sweep and never close)
                start = line.timestamp_ns * 1000 + event.offset_ps
                spans.append((start, start + event.duration_ps, match[2], kind_of(match[2], match[1], optimizer_scope)))
    if not spans:
        raise RuntimeError("TensorFlow's profiler recorded no op events on /host:CPU")
    # Sweep the starts and ends in time order, sharing each stretch among the spans open in it.
    edges = sorted([(start, 1, index) for index, (start, _, _, _) in enumerate(spans)]
                   + [(end, -1, index) for index, (_, end, _, _) in enumerate(spans)])
    by_type: collections.Counter = collections.Counter()
    by_kind: collections.Counter = collections.Counter()
    running: set[int] = set()
    covered, previous = 0, edges[0][0]
    for time_ps, change, index in edges:
        if running and time_ps > previous:
            share = (time_ps - previous) / len(running)
            covered += time_ps - previous
            for open_index in running:
                by_type[spans[open_index][2]] += share
                by_kind[spans[open_index][3]] += share
        previous = time_ps
        (running.add if change > 0 else running.discard)(index)
    per_step = 1e9 * steps  # ps -> ms per step
    return {"ops": {op: ps / per_step for op, ps in by_type.most_common()},
            "kinds": {kind: ps / per_step for kind, ps in by_kind.most_common()},
            "op_ms_per_step": covered / per_step}


def tensorflow_profile(step: Callable[[], Any], steps: int, optimizer_scope: str = "") -> dict:
    """`steps` calls of `step` (traced already) under TensorFlow's profiler: op_times, and the wall time."""
    step()  # one more, so that nothing first-time lands in the profile
    # Level 3: the executor leaves ops it rates cheap out of level 2's trace.
    options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=3, python_tracer_level=0,
                                                       device_tracer_level=0)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir, options=options)
        try:
            wall = sum(timed(step, steps))
        finally:
            tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        for path in Path(logdir).rglob("*.xplane.pb"):
            space.MergeFromString(path.read_bytes())
    return {**op_times(space, steps, optimizer_scope), "wall_ms_per_step": wall * 1e3 / steps}


def torch_profile(step: Callable[[], Any], steps: int) -> dict:
    """`steps` calls of `step` under torch.profiler: each aten op's self time per step (ms), grouped
    by the kind of its nearest aten ancestor that has one (aten::relu's clamp_min is activation), the
    ops inside the optimizer's step being the optimizer's; and the wall time."""
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        wall = sum(timed(step, steps))
    by_type: collections.Counter = collections.Counter()
    by_kind: collections.Counter = collections.Counter()
    for event in profiler.events():
        if not event.name.startswith("aten::") or event.self_cpu_time_total <= 0:
            continue  # the profiler's own and Python-level regions
        milliseconds = event.self_cpu_time_total / 1e3 / steps
        by_type[event.name] += milliseconds
        by_kind[_torch_kind(event)] += milliseconds
    return {"ops": dict(by_type.most_common()), "kinds": dict(by_kind.most_common()),
            "op_ms_per_step": sum(by_type.values()), "wall_ms_per_step": wall * 1e3 / steps}


def _torch_kind(event) -> str:
    """The nearest kind on the way up from `event`; any op inside a recurrent op (aten::lstm's matmuls and
    gates) is recurrent, as TensorFlow's ops are inside a recurrent layer's scope."""
    nearest, node = "other", event
    while node is not None:
        if node.name.startswith("Optimizer.step"):  # torch.optim's region around each step
            return "optimizer"
        kind = kind_of(node.name) if node.name.startswith("aten::") else "other"
        if kind == "recurrent":
            return kind
        nearest = kind if nearest == "other" else nearest
        node = node.cpu_parent
    return nearest


def _language_step(spec) -> tuple[Callable[[], Any], str, int, str]:
    twin, step, tokens = language_twin_step(spec)
    return step, re.escape(twin.optimizer.name), tokens, "tokens"


def _image_step(spec) -> tuple[Callable[[], Any], str, int, str]:
    model = spec.build()
    step, batch_size = image_train_step(spec, model)
    return step, re.escape(model.optimizer.name), batch_size, "examples"


# task -> (the bench's train step of a spec, a pattern of its optimizer's name scope, examples per step, their unit)
ZOO_STEPS = {"image": _image_step, "language": _language_step}


def _peer_step(name: str) -> tuple[Callable[[], Any] | None, str]:
    """(PyTorch's plain eager step of `name`, or None; why there is none)."""
    if importlib.util.find_spec("torch") is None:
        return None, "PyTorch is not installed (the `peers` extra)"
    from training.bench import peers

    if name not in peers.PEERS:
        return None, f"training.bench.peers has no PyTorch model of {name}"
    peers.pin_threads()
    factory = next(iter(peers.PEERS[name][1].values()))  # the first variant: plain eager
    return factory(registry.get(name)), ""


def profile_model(name: str, steps: int) -> dict:
    spec = registry.get(name)
    result: dict[str, Any] = {"model": name, "created": cards.utc_now(), "hardware": cards.hardware_summary(),
                              "load_average": os.getloadavg()[0], "versions": cards.library_versions(), "steps": steps}
    step, scope, result["examples_per_step"], result["unit"] = ZOO_STEPS[spec.task](spec)
    result["tensorflow"] = tensorflow_profile(step, steps, scope)
    peer, result["no_peer"] = _peer_step(name)
    if peer is not None:
        import torch

        result["pytorch"] = torch_profile(peer, steps)
        result["versions"]["torch"] = torch.__version__
    return result


def markdown(result: dict, top: int = 12) -> str:
    name, tensorflow, pytorch = result["model"], result["tensorflow"], result.get("pytorch")
    frameworks = {"TensorFlow": tensorflow, **({"PyTorch": pytorch} if pytorch else {})}
    peer = ("and PyTorch's plain eager step of the same model (training.bench.peers; NCHW, so its convolutions "
            "include oneDNN's layout reorders) under torch.profiler, each aten op's self time given the kind of "
            "its nearest aten ancestor that has one" if pytorch else f"(no peer column: {result['no_peer']})")
    lines = [f"# Where `{name}`'s train step goes\n",
             f"Measured {result['created']} on {result['hardware']['summary']} (1-minute load average "
             f"{result['load_average']:.1f} when it started) by `python -m training.bench.profile {name}`: "
             f"{result['steps']} train steps of the bench's (a fixed synthetic batch of {result['examples_per_step']} "
             f"{result['unit']}, float32) under TensorFlow's profiler, {peer}. Times are ms of the step's wall "
             "time: where TensorFlow runs ops side by side on its inter-op threads each instant is split among "
             "them; 'outside ops' is the rest (Python, the runtime, waits). TensorFlow's forward ReLU after a "
             "batch norm runs inside the batch-norm kernel (FusedBatchNormEx) and counts there.\n"]
    header = "| kind |" + "".join(f" {label} ms | share |" for label in frameworks) + \
        (" TensorFlow / PyTorch |" if pytorch else "")
    lines += [header, "|" + "---|" * (header.count("|") - 1)]

    def row(label: str, times: list[float]) -> str:
        text = f"| {label} |" + "".join(f" {ms:.2f} | {ms / figures['wall_ms_per_step']:.0%} |"
                                        for ms, figures in zip(times, frameworks.values()))
        if pytorch:
            text += f" {times[0] / times[1]:.2f}x |" if min(times) >= 0.005 else " - |"
        return text

    for kind in dict.fromkeys(kind for figures in frameworks.values() for kind in figures["kinds"]):
        times = [figures["kinds"].get(kind, 0.0) for figures in frameworks.values()]
        if max(times) >= 0.005:  # else 0.00 in every column
            lines.append(row(kind, times))
    lines += [row("outside ops", [max(0.0, f["wall_ms_per_step"] - f["op_ms_per_step"]) for f in frameworks.values()]),
              row("step wall time", [figures["wall_ms_per_step"] for figures in frameworks.values()]), ""]
    for label, figures in frameworks.items():
        lines += [f"{label}'s {top} costliest op types (ms per step): " + "; ".join(
            f"{op} {ms:.2f}" for op, ms in list(figures["ops"].items())[:top]) + ".", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=registry.list_models())
    parser.add_argument("--steps", type=int, default=20, help="profiled train steps (default 20)")
    parser.add_argument("--output", default=str(REPORTS), help="folder of profile-NAME.{json,md}")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite profile-NAME.md from its JSON")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    output = Path(args.output)
    if args.markdown_only:
        result = read_report(output / f"profile-{args.name}.json", hint=f"make profile-{args.name} writes it")
    else:
        result = profile_model(args.name, args.steps)
        files.write_atomically(output / f"profile-{args.name}.json", (json.dumps(result, indent=2) + "\n").encode())
    text = markdown(result)
    files.write_atomically(output / f"profile-{args.name}.md", text.encode())
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
