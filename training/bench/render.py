"""bench.md from the measured figures (see measure.py), each goal of issue 7 beside its figure."""
from __future__ import annotations

import json
import re
from pathlib import Path

from training import REPO_ROOT
from training.readme import update_section
from zoo import files

REPORTS = REPO_ROOT / "reports"
# The serving goal: at the most clients, batched throughput at least this many times unbatched.
SERVING_BATCHING_GOAL = 3.0


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _training(results: dict) -> list[str]:
    rounds = max((entry.get("rounds", 1) for entry in results["training"].values()), default=1)
    how = (f" Each fraction is the median of {rounds} rounds that alternate a matmul measurement with the "
           "model's train steps (range in brackets), so a load change on the machine moves both sides of a "
           "round together." if rounds > 1 else "")
    lines = ["## Training throughput and input pipeline\n",
             f"Examples are images, or tokens for the language models.{how} The pipeline alone is drawn "
             "inside a tf.function, as Keras' fit draws it.\n",
             "| model | batch | train examples/s | training MFLOP/example | fraction of matmul rate | "
             "goal >= 60% (ResNet-20) | pipeline examples/s | pipeline / training | goal >= 5x |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in results["training"].items():
        fraction = entry["fraction_of_matmul_rate"]
        goal = _met(fraction >= 0.6) if name == "resnet20_cifar10" else "-"
        low, high = entry.get("fraction_of_matmul_rate_range", (fraction, fraction))
        spread = f" ({low:.0%}-{high:.0%})" if high > low else ""
        lines.append(f"| `{name}` | {entry['batch_size']} | {entry['examples_per_second']:.0f} | "
                     f"{entry['training_flops_per_example'] / 1e6:.2f} | {fraction:.0%}{spread} | {goal} | "
                     f"{entry['pipeline_examples_per_second']:.0f} | {entry['pipeline_ratio']:.1f}x | "
                     f"{_met(entry['pipeline_ratio'] >= 5)} |")
    for name, entry in results["training"].items():
        if "xla_fraction_of_matmul_rate" in entry:
            lines.append(f"\nThrough XLA (Keras' default; the recipes turn it off), `{name}` trains at "
                         f"{entry['xla_fraction_of_matmul_rate']:.0%} of the matmul rate "
                         f"({entry['fraction_of_matmul_rate']:.0%} without).")
        if "convolutions_alone_fraction_of_matmul_rate" in entry:
            lines.append(f"\nWhat limits `{name}`: its convolutions alone (the same Conv2D layers in a chain, without "
                         "batch norm, ReLU or shortcuts) train at "
                         f"{entry['convolutions_alone_fraction_of_matmul_rate']:.0%} of the matmul rate, the ceiling "
                         "of the convolution kernels for these shapes here; the rest is batch norm, ReLU and the "
                         "additions, memory-bound passes over the activations. zoo's BatchNormalization runs "
                         "TensorFlow's fused kernel: with Keras' own (separate moments and normalise ops) the "
                         f"model trains at {entry['keras_batch_norm_fraction_of_matmul_rate']:.0%}.")
    return lines


# Issue 23's goals: the zoo's train step against plain eager PyTorch, and against its fastest variant.
PEER_GOALS = {"eager": 1.0, "fastest": 0.8}
SHARED_LOAD = 0.5  # a 1-minute load average at or above this per thread: the cores were not idle


def _peers(results: dict) -> list[str]:
    peers = results.get("peers")
    if not peers:
        return []
    measured = peers["measured"]
    same_limits = measured["hardware"].get("isa_limits") == results["hardware"].get("isa_limits")  # said above
    quick = " A quick run (few rounds): a smoke test of the bench, not a measurement." if measured["quick"] else ""
    if measured["load_average"] >= SHARED_LOAD * measured["threads"]:
        quick += (" The cores were shared when it started: PyTorch's OpenMP threads wait for each other at every "
                  "parallel region when another process holds a core, so these ratios flatter the zoo; rerun on "
                  "idle cores.")
    lines = ["\n## Training beside PyTorch\n",
             f"Measured {measured['created']} on {measured['hardware']['summary']} (1-minute load average "
             f"{measured['load_average']:.1f} when it started) by `make bench-peers`: the same models in PyTorch "
             f"{measured['torch']} (CPU build), built from the same configs (same layer shapes and parameter "
             "counts), same batch, loss, optimizer and peak learning rate, float32, both on "
             f"{measured['threads']} threads. One process alternates {measured['rounds']} rounds of "
             f"{measured['steps_per_round']} train steps (the zoo's, then each PyTorch variant's); each ratio "
             f"is the median of the rounds' ratios (range in brackets).{quick}"
             f"{'' if same_limits else _isa_note(measured['hardware'])}\n",
             "| model | batch | zoo examples/s | PyTorch | PyTorch examples/s | zoo / PyTorch | goal |",
             "|---|---|---|---|---|---|---|"]
    for name, entry in peers["models"].items():
        variants = entry["peers"]
        eager = next(iter(variants))
        fastest = max(variants, key=lambda label: variants[label]["examples_per_second"])
        for label, peer in variants.items():
            goals = [f">= {goal:.1f}x ({'eager' if kind == 'eager' else 'fastest'}) "
                     f"{_met(peer['zoo_ratio'] >= goal)}"
                     for kind, goal in PEER_GOALS.items() if label == (eager if kind == "eager" else fastest)]
            low, high = peer["zoo_ratio_range"]
            lines.append(f"| `{name}` ({entry['unit']}) | {entry['batch']} | {entry['zoo_examples_per_second']:.0f} | "
                         f"{label} | {peer['examples_per_second']:.0f} | {peer['zoo_ratio']:.2f}x "
                         f"({low:.2f}-{high:.2f}) | {'; '.join(goals) or '-'} |")
    for name, entry in peers["models"].items():
        eager = next(iter(entry["peers"].values()), None)  # PyTorch eager, the first variant
        for label, variant in entry.get("zoo_variants", {}).items():
            low, high = variant["zoo_ratio_range"]
            versus = (f", {variant['examples_per_second'] / eager['examples_per_second']:.2f}x PyTorch eager's "
                      "(medians)") if eager else ""
            lines.append(f"\n`{name}` with {label}: {variant['examples_per_second']:.0f} {entry['unit']}/s in the same "
                         f"rounds{versus}; the zoo's step trains {variant['zoo_ratio']:.2f}x ({low:.2f}-{high:.2f}) "
                         "as fast.")
        alone = entry.get("recurrent_layers_alone")
        if alone and eager:
            pytorch = alone["pytorch"]
            low, high = pytorch["zoo_ratio_range"]
            lines.append(f"\nWhere `{name}`'s step goes: its recurrent layers alone (random embeddings in, a "
                         f"mean-square loss on their outputs) train at {alone['zoo_examples_per_second']:.0f} "
                         f"{entry['unit']}/s in the zoo and {pytorch['examples_per_second']:.0f} in PyTorch, "
                         f"{pytorch['zoo_ratio']:.2f}x ({low:.2f}-{high:.2f}); they take "
                         f"{entry['zoo_examples_per_second'] / alone['zoo_examples_per_second']:.0%} of the zoo's "
                         f"step and {eager['examples_per_second'] / pytorch['examples_per_second']:.0%} of PyTorch "
                         "eager's, the rest being the embedding, dropout, output layer and loss.")
    return lines


def _inference(results: dict) -> list[str]:
    lines = ["\n## Inference (one example: p50 / p99 ms; batch of 256: examples/s)\n",
             "Goals are judged on `zoo.load(name, runtime=\"onnxruntime\")`; the default TensorFlow runtime "
             "is shown beside it, with its signature called alone (no zoo code).\n",
             "| model | zoo, onnxruntime | zoo, tensorflow | signature alone | keras model.predict | onnxruntime | "
             "model.predict / zoo (goal >= 10x) | zoo / onnxruntime (goal <= 1.5x) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, entry in results["inference"].items():
        cells = [f"{entry[k]['p50_ms']:.2f} / {entry[k]['p99_ms']:.2f} ms; "
                 f"{entry[k]['batch256_examples_per_second']:.0f}/s" if k in entry else "-"
                 for k in ("zoo_onnxruntime", "zoo", "signature", "keras_predict", "onnxruntime")]
        zoo_ms = entry.get("zoo_onnxruntime", entry["zoo"])["p50_ms"]
        speedup = entry["keras_predict"]["p50_ms"] / zoo_ms
        versus = zoo_ms / entry["onnxruntime"]["p50_ms"]
        lines.append(f"| `{name}` | {' | '.join(cells)} | {speedup:.1f}x {_met(speedup >= 10)} | "
                     f"{versus:.2f}x {_met(versus <= 1.5)} |")
    floor = results.get("function_call_floor_ms")
    if floor is not None:
        lines.append(f"\nWhy the TensorFlow runtime cannot meet the onnxruntime goal: calling a `tf.function` that "
                     f"only returns its input costs {floor:.3f} ms (p50) here, the floor of any SavedModel call.")
    return lines


def _generation(results: dict) -> list[str]:
    lines = ["\n## Language-model generation through `step`\n"]
    measured = results.get("generation_measured")
    if measured:
        lines.append(f"Measured {measured['created']}, 1-minute load average {measured['load_average']:.1f} "
                     "when it started (near 0 on an idle machine; higher, other processes shared the cores).\n")
    lines += ["| model | tokens/s | cost at position 1,000 / position 10 (goal <= 1.2) |", "|---|---|---|"]
    for name, entry in results["generation"].items():
        ratio = entry["cost_ratio_position_1000_vs_10"]
        lines.append(f"| `{name}` | {entry['tokens_per_second']:.0f} | {ratio:.2f} {_met(ratio <= 1.2)} |")
    if not results["generation"]:
        lines.append("| (no language model trained yet) | | |")
    return lines


def _time_to_accuracy(results: dict) -> list[str]:
    lines = ["\n## Time to accuracy\n",
             "The committed recipe's minutes come from its card's per-epoch history; the paper schedule's "
             "from `make paper-<name>` (training/paper.py), run for as long as the committed recipe took, "
             "its log kept in reports/time_to_accuracy/ (a log of an earlier architecture is not timed). Newer models "
             "are timed to their bar and to the figure of the artifact they improve on, retrained ones to their bar "
             "and to the figure of the version they replace: from the per-epoch history where the recipe read the "
             "test split (or, PTB, the validation split) each epoch, else (test read once, after training) the whole "
             "run is the time to its final figure.\n",
             "| target | status | epochs | minutes | value then (reached), or best (not reached) |",
             "|---|---|---|---|---|"]
    for target, entry in results["time_to_accuracy"].items():
        if "minutes" in entry:
            epochs = entry.get("epoch", entry.get("epochs", "-"))
            value = entry.get("value", entry.get("best"))
            value = "-" if value is None else f"{value:.4g}"
            lines.append(f"| {target} | {entry['status']} | {epochs} | {entry['minutes']:.1f} | {value} |")
        else:
            lines.append(f"| {target} | {entry['status']} | - | - | - |")
    return lines


def _serving(results: dict) -> list[str]:
    serving = results.get("serving")
    if not serving:
        return []
    measured = serving["measured"]
    lines = ["\n## Serving over HTTP (`python -m zoo serve`, one image per request)\n",
             f"Measured {measured['created']} on {measured.get('hardware', 'an unrecorded machine')} "
             f"(1-minute load average {measured['load_average']:.1f}) by "
             f"`python -m training.bench --serving-only`: {serving['requests_per_level']} requests per row from "
             "client coroutines on 127.0.0.1, each on a kept-alive connection; p50 / p99 latency, and requests/s. "
             "Dynamic batching: at most 32 instances a call, no added wait (requests queued during a call "
             "form the next). The bench shares the machine's cores with whatever else runs: see the load "
             "average.\n",
             "| model | batching | clients | p50 ms | p99 ms | requests/s |", "|---|---|---|---|---|---|"]
    for name, entry in serving["models"].items():
        for mode in ("batching", "no_batching"):
            for key, row in entry.get(mode, {}).items():
                if key.startswith("clients_"):
                    lines.append(f"| `{name}` | {'on' if mode == 'batching' else 'off'} | {key[8:]} | "
                                 f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['requests_per_second']:.0f} |")
    lines += ["\nAt 1 client, the server's p50 over a direct `zoo.load(name).predict` of the same image, and over "
              "the same server's empty route (`GET /v1/ping`):\n",
              "| model | batching | direct predict p50 ms | empty route p50 ms | server / direct | "
              "server / empty route |",
              "|---|---|---|---|---|---|"]
    for name, entry in serving["models"].items():
        for mode in ("batching", "no_batching"):
            if mode in entry:
                row = entry[mode]
                lines.append(f"| `{name}` | {'on' if mode == 'batching' else 'off'} | "
                             f"{entry['direct_predict_p50_ms']:.2f} | {row['ping_p50_ms']:.2f} | "
                             f"{row['overhead_vs_direct_predict']:.2f}x | {row['overhead_vs_empty_route']:.2f}x |")
    lines += ["\nBatching at the most clients: the batched server's throughput over the unbatched one's "
              f"(goal: >= {SERVING_BATCHING_GOAL:g}x), beside the most batching can give on this machine: one "
              "image's direct predict over one image's share of a direct call on a full batch (the server's "
              "per-request work, HTTP and JSON, comes on top of both and is not batched).\n",
              "| model | batched / unbatched requests/s | goal | ceiling: 1-image call / per image of a batch |",
              "|---|---|---|---|"]
    for name, entry in serving["models"].items():
        if "batching_gain" in entry:
            gain = entry["batching_gain"]
            ceiling = f"{entry['batching_ceiling']:.2f}x" if "batching_ceiling" in entry else "-"
            lines.append(f"| `{name}` | {gain:.2f}x | {_met(gain >= SERVING_BATCHING_GOAL)} | "
                         f"{ceiling} |")
    return lines


def _precision(results: dict) -> list[str]:
    measured = results.get("precision")
    if not measured:
        return []
    lines = ["\n## Mixed precision (bfloat16) training\n",
             f"Measured on {measured['hardware']} ({measured['created']}, 1-minute load average "
             f"{measured['load_average']:.1f} when it started) by `python -m training.bench --precision-only`: "
             "train steps of each model built in float32 and under Keras' mixed_bfloat16 policy "
             "(`precision=\"mixed_bfloat16\"` in a recipe: bfloat16 compute, float32 weights, a float32 "
             "export), alternating rounds in one process; medians.\n",
             "| model | float32 /s | mixed_bfloat16 /s | speed-up |", "|---|---|---|---|"]
    for name, entry in measured["models"].items():
        lines.append(f"| `{name}` | {entry['float32']:.0f} {entry['unit']} | {entry['mixed_bfloat16']:.0f} "
                     f"{entry['unit']} | {entry['speedup']:.2f}x |")
    return lines


def _isa_note(hardware: dict) -> str:
    """What a run with the kernels kept to an older instruction set (`make bench ISA=avx2`) does not cover."""
    if not hardware.get("isa_limits"):
        return ""
    return (" The limits keep oneDNN, MKL and PyTorch's kernels to the named instruction set; XLA compiles for "
            "the host CPU whatever they say, so the XLA figures here are not figures of that set.")


_SECTIONS = (("training", _training), ("precision", _precision), ("peers", _peers), ("inference", _inference),
             ("generation", _generation), ("time_to_accuracy", _time_to_accuracy))


def _body(results: dict) -> str:
    rate = results["matmul_flops_per_second"] / 1e9
    size = f" ({results['matmul_size']} x {results['matmul_size']})" if "matmul_size" in results else ""
    intro = (f"Measured by `make bench` on {results['hardware']['summary']} ({results['created']}). "
             f"Dense float32 matmul rate{size} measured in the same run: {rate:.1f} GFLOP/s. "
             "Figures are ratios within this run; absolute times drift on a shared machine."
             f"{_isa_note(results['hardware'])}\n")
    # A partial run (--training-only) lacks some keys: their sections are left out.
    sections = [line for key, section in _SECTIONS if key in results for line in section(results)]
    return "\n".join([intro, *sections])


def markdown(results: dict) -> str:
    """bench.md: the tables under a title, then the serving figures (which the README quotes in
    its own serving section, not among the speed tables)."""
    return "# Benchmarks\n\n" + "\n".join([_body(results), *_serving(results)]) + "\n"


def tables(results: dict) -> str:
    """The same tables one heading level down, as the README quotes them."""
    return re.sub(r"(?m)^## ", "### ", _body(results))


def write_reports(results: dict, output: Path, update_readme: bool) -> None:
    """bench.json and bench.md into `output`; with update_readme, the tables into README.md;
    each file written whole."""
    files.write_atomically(output / "bench.json", (json.dumps(results, indent=2) + "\n").encode())
    files.write_atomically(output / "bench.md", markdown(results).encode())
    if update_readme:
        update_section("bench", tables(results))
