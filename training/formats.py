"""python -m training.formats [NAMES...] (make formats): each trained model in every format it
converts to (zoo.convert.FORMATS) beside its SavedModel, measured in one run per model: file size,
the full official test split's metric (accuracy; perplexity of `step` over the PTB test file), its
agreement with the SavedModel, single-example p50 latency and batch throughput. Writes
reports/formats.json (the measurements) and reports/formats.md (rendered from the JSON alone), and
with --update-readme the README's table.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from training import REPO_ROOT, cards
from training.bench.measure import timed
from training.readme import read_report, update_section
from zoo import artifact, convert, files, registry, tasks
from zoo.data import ptb, text
from zoo.data.images import load_images
from zoo.serving.language import artifact_vocabulary

REPORTS = REPO_ROOT / "reports"
SAVEDMODEL = "savedmodel"  # the reference row: the artifact's own signature through TensorFlow
BATCH = 256  # examples per call for throughput (images, or token streams through `step`)
# Goals (issue 21), judged on int8 rows against the SavedModel (metric) and against the float32
# file of the same runtime (size, latency).
ACCURACY_LOSS_POINTS = 0.3
PERPLEXITY_RISE = 0.02
SIZE_RATIO = 0.3
LATENCY_RATIO = 0.7

Runner = Callable[..., dict]


def savedmodel_runner(folder: Path, signature: str) -> Runner:
    """The artifact's signature through TensorFlow, its graph's operations checked first (as
    zoo.load checks them: loading a SavedModel runs its graph)."""
    artifact.check_operations(folder)
    function = tf.saved_model.load(str(folder)).signatures[signature]
    return lambda **inputs: {key: value.numpy() for key, value in function(**inputs).items()}


def savedmodel_bytes(folder: Path) -> int:
    """What tf.saved_model.load reads: saved_model.pb, variables/ and assets/."""
    paths = [folder / "saved_model.pb", *(folder / "variables").rglob("*"), *(folder / "assets").rglob("*")]
    return sum(path.stat().st_size for path in paths if path.is_file())


def speeds(calls: dict[str, tuple[Callable, Callable]], batch_size: int, rounds: int,
           per_round: int) -> dict[str, dict]:
    """format -> single-example p50 (ms) and examples/s of the batch call (`batch_size`
    examples). Formats take turns in each round, so a load change on a shared machine falls on
    all of them alike."""
    single: dict[str, list[float]] = {name: [] for name in calls}
    batch: dict[str, list[float]] = {name: [] for name in calls}
    for one, many in calls.values():  # warm-up: first calls allocate and plan
        timed(one, 3)
        timed(many, 1)
    for _ in range(rounds):
        for name, (one, many) in calls.items():
            single[name] += timed(one, per_round)
            batch[name] += timed(many, 1)
    return {name: {"p50_ms": float(np.percentile(single[name], 50)) * 1000,
                   "examples_per_second": batch_size / float(np.median(batch[name]))} for name in calls}


def converted(folder: Path, task: tasks.Task,
              calibration: Callable[[], list]) -> tuple[dict[str, int], dict[str, tuple[Runner, Runner]]]:
    """format -> bytes in each conversion's file (the calibrated ones calibrated as zoo.load does),
    and format -> two runners of the task's converted signature (Task.tflite_signature), the
    SavedModel's first: one for single examples, one for batches, so that neither resizes."""
    sizes = {SAVEDMODEL: savedmodel_bytes(folder)}
    runners: dict[str, tuple[Runner, Runner]] = {SAVEDMODEL: (savedmodel_runner(folder, task.tflite_signature),) * 2}
    with tempfile.TemporaryDirectory() as work:
        for name in task.formats:
            format = convert.FORMATS[name]
            content = convert.convert(folder, format, Path(work) / f"{name}.{format.file_type}",
                                      calibration() if format.calibrated else None).read_bytes()
            sizes[name] = len(content)
            runners[name] = (convert.open_runner(content, format.file_type, task.tflite_signature),
                             convert.open_runner(content, format.file_type, task.tflite_signature))
    return sizes, runners


def _row(name: str, size: int) -> dict:
    format = convert.FORMATS.get(name)
    return {"format": name, "runtime": format.runtime if format else "tensorflow",
            "precision": format.precision if format else "float32", "bytes": size}


def measure_image(folder: Path, card: dict, data_dir, rounds: int, per_round: int, limit: int | None) -> dict:
    task = tasks.get(card["task"])
    images, labels = load_images(card["dataset"]["name"], "test", data_dir).batch(2**31 - 1).get_single_element()
    images, labels = images.numpy()[:limit], labels.numpy()[:limit]
    sample = convert.calibration_images(card, data_dir)
    rows, calls = [], {}
    sizes, runners = converted(folder, task, lambda: convert.batches(sample[0]))
    one, batch = images[:1], images[:BATCH]  # the batch: fewer than BATCH when the split is limited
    predicted = {}
    for name, (single, many) in runners.items():
        predicted[name] = np.concatenate([many(image=images[start:start + BATCH])["class_id"]
                                          for start in range(0, len(images), BATCH)])
        rows.append({**_row(name, sizes[name]), "metric": float(np.mean(predicted[name] == labels)),
                     "examples": int(len(labels)),
                     "agreement": float(np.mean(predicted[name] == predicted[SAVEDMODEL]))})
        calls[name] = (lambda one_run=single: one_run(image=one), lambda many_run=many: many_run(image=batch))
    measured = speeds(calls, len(batch), rounds, per_round)
    return {"metric": "accuracy", "rows": [{**row, **measured[row["format"]]} for row in rows]}


def step_log_probabilities(run: Runner, ids: np.ndarray, state_size: int) -> tuple[float, np.ndarray]:
    """Summed natural-log probability of ids[1:] fed one token at a time through a `step`
    function from the zero state, and the most likely next token at each step (int [T - 1])."""
    state = np.zeros((1, state_size), np.float32)
    total, top = 0.0, np.empty(len(ids) - 1, np.int64)
    for position in range(len(ids) - 1):
        outputs = run(token_id=ids[position:position + 1], state=state)
        state = outputs["state"]
        logits = outputs["logits"][0].astype(np.float64)
        top[position] = int(np.argmax(logits))
        shifted = logits - logits[top[position]]
        total += shifted[ids[position + 1]] - np.log(np.exp(shifted).sum())
    return total, top


def measure_language(folder: Path, card: dict, data_dir, rounds: int, per_round: int, limit: int | None) -> dict:
    """Perplexity of `step` over the PTB test file: <eos>, then each line's words and <eos>, as
    the `score` signature reads it (82,430 predicted tokens), with the state carried throughout."""
    task = tasks.get(card["task"])
    vocabulary = artifact_vocabulary(folder)
    ids = np.concatenate([[vocabulary.index(text.EOS)], text.token_ids(ptb.load_lines("test", data_dir), vocabulary)])
    ids = ids.astype(np.int32)[:None if limit is None else limit + 1]
    state_size = int(card["state_size"])
    sizes, runners = converted(folder, task, list)
    rows, calls, top = [], {}, {}
    tokens = np.zeros(1, np.int32), np.zeros(BATCH, np.int32)
    states = np.zeros((1, state_size), np.float32), np.zeros((BATCH, state_size), np.float32)
    for name, (one, many) in runners.items():
        total, top[name] = step_log_probabilities(one, ids, state_size)
        rows.append({**_row(name, sizes[name]), "metric": float(np.exp(-total / (len(ids) - 1))),
                     "examples": int(len(ids) - 1), "agreement": float(np.mean(top[name] == top[SAVEDMODEL]))})
        calls[name] = (lambda run=one: run(token_id=tokens[0], state=states[0]),
                       lambda run=many: run(token_id=tokens[1], state=states[1]))
    measured = speeds(calls, BATCH, rounds, per_round)
    return {"metric": "perplexity", "rows": [{**row, **measured[row["format"]]} for row in rows]}


# task -> its measurement (what "the test metric" is, and what one example is)
MEASURE = {"image": measure_image, "language": measure_language}


def measure(name: str, data_dir=None, quick: bool = False, limit: int | None = None,
            folder: Path | None = None) -> dict:
    """One model's rows: the SavedModel and each conversion, all measured in this call."""
    folder = folder or artifact.committed_dir(name)
    artifact.verify_manifest(folder)
    card = artifact.read_card(folder)
    rounds, per_round = (2, 5) if quick else (5, 100)
    started, load = cards.utc_now(), os.getloadavg()[0]
    entry = MEASURE[card["task"]](folder, card, data_dir, rounds, per_round, limit)
    return {"measured": started, "load_average": load, "hardware": cards.hardware_summary()["summary"],
            "card_metric": artifact.card_value(registry.get(name), card),
            **entry}


# Rendering: reports/formats.md (and the README's table) are a function of the JSON alone.

def _float_row(entry: dict, row: dict) -> dict | None:
    """The float32 file of the same runtime as an int8 row (None for the SavedModel)."""
    return next((other for other in entry["rows"] if other["runtime"] == row["runtime"]
                 and other["precision"] == "float32" and other["format"] != SAVEDMODEL), None)


def goals(entry: dict, row: dict) -> dict[str, tuple[float, bool]] | None:
    """An int8 row's goals: name -> (measured value, met); None for float rows."""
    if not row["precision"].startswith("int8"):
        return None
    saved, reference = entry["rows"][0], _float_row(entry, row)
    if saved["format"] != SAVEDMODEL or reference is None:
        raise ValueError(f"an int8 row ({row['format']}) needs the SavedModel's row first and a float32 file's row")
    if entry["metric"] == "accuracy":
        loss = (saved["metric"] - row["metric"]) * 100
        metric = (loss, loss <= ACCURACY_LOSS_POINTS)
    else:
        rise = row["metric"] / saved["metric"] - 1
        metric = (rise, rise <= PERPLEXITY_RISE)
    size = row["bytes"] / reference["bytes"]
    latency = row["p50_ms"] / reference["p50_ms"]
    return {"metric": metric, "size": (size, size <= SIZE_RATIO), "latency": (latency, latency <= LATENCY_RATIO)}


def _met(value: str, ok: bool) -> str:
    return f"{value} {'met' if ok else '**not met**'}"


def _table(results: dict, metric: str) -> list[str]:
    accuracy = metric == "accuracy"
    heading = (f"test accuracy | change (goal: lose <= {ACCURACY_LOSS_POINTS} points)" if accuracy
               else f"test perplexity | change (goal: rise <= {PERPLEXITY_RISE:.0%})")
    lines = [f"| model | format | size | size / float32 (goal <= {SIZE_RATIO}x) | {heading} | "
             f"{'class' if accuracy else 'top-1 next word'} = SavedModel's | p50 ms | p50 / SavedModel | "
             f"p50 / float32 (goal <= {LATENCY_RATIO}x) | batch {BATCH}: examples/s / SavedModel's |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in results["models"].items():
        if entry["metric"] != metric:
            continue
        saved = entry["rows"][0]
        for row in entry["rows"]:
            judged = goals(entry, row)
            reference = _float_row(entry, row)
            size = f"{row['bytes'] / reference['bytes']:.2f}x" if reference and row is not reference else "-"
            latency = f"{row['p50_ms'] / reference['p50_ms']:.2f}x" if reference and row is not reference else "-"
            if accuracy:
                value, change = f"{row['metric']:.4f}", f"{(row['metric'] - saved['metric']) * 100:+.2f} points"
            else:
                value, change = f"{row['metric']:.2f}", f"{(row['metric'] / saved['metric'] - 1) * 100:+.2f}%"
            if row is saved:
                change = "-"
            elif judged:
                size, change, latency = (_met(size, judged["size"][1]), _met(change, judged["metric"][1]),
                                         _met(latency, judged["latency"][1]))
            lines.append(f"| `{name}` | {row['format']} | {row['bytes'] / 1e6:.2f} MB | {size} | {value} | {change} | "
                         f"{row['agreement']:.2%} | {row['p50_ms']:.3f} | {row['p50_ms'] / saved['p50_ms']:.2f}x | "
                         f"{latency} | {row['examples_per_second'] / saved['examples_per_second']:.2f}x |")
    return lines


def machines(results: dict) -> str:
    """Where the rows were measured: each model's own machine (a partial re-measurement keeps
    the other models' rows, measured elsewhere perhaps); entries without one, the report's."""
    where: dict[str, list[str]] = {}
    for name, entry in results["models"].items():
        where.setdefault(entry.get("hardware") or results["hardware"]["summary"], []).append(f"`{name}`")
    if len(where) == 1:
        return next(iter(where))
    return "several machines (" + "; ".join(f"{', '.join(names)} on {machine}"
                                            for machine, names in where.items()) + ")"


def tables(results: dict) -> str:
    """The tables the README quotes (between its formats markers)."""
    lines = [f"Measured by `make formats` on {machines(results)}; each model's rows in one run "
             f"({', '.join(sorted({entry['measured'][:10] for entry in results['models'].values()}))}). "
             "Ratios compare files run in the same run, formats taking turns; p50 is one example per call, "
             f"throughput {BATCH} per call. Every runtime uses every core. int8 goals: the metric against the "
             f"SavedModel's, size and p50 against the float32 file of the same runtime.\n"]
    for metric, title in (("accuracy", "Image models (full test split)"),
                          ("perplexity", "Language models (`step`, one token at a time over the PTB test file)")):
        if any(entry["metric"] == metric for entry in results["models"].values()):
            lines += [f"### {title}\n", *_table(results, metric), ""]
    lines.append("Formats: " + "; ".join(f"{format.name}: {format.description}" for format in convert.FORMATS.values())
                 + f". Calibration: {convert.CALIBRATION_IMAGES} training images drawn with seed 0.")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    return f"# Model formats: size, accuracy and speed\n\n{tables(results)}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="models to (re)measure (default: every trained one); the "
                                                 "others' rows are kept from the existing formats.json")
    parser.add_argument("--output", default=str(REPORTS), help="folder for formats.json and formats.md")
    parser.add_argument("--data-dir", help="raw-data directory (default: $ZOO_DATA_DIR)")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite formats.md from formats.json")
    parser.add_argument("--update-readme", action="store_true", help="also quote the tables in README.md")
    args = parser.parse_args(argv)
    output = Path(args.output)
    results = read_report(output / "formats.json", None if args.markdown_only else {"models": {}},
                          "--markdown-only renders a measured report: run `make formats DATA_DIR=...` first")
    if not isinstance(results.get("models"), dict) or (args.markdown_only and not results["models"]):
        raise SystemExit(f"error: {output / 'formats.json'} holds no measured models to render")
    if not args.markdown_only:
        names = args.names or [name for name in registry.list_models() if artifact.is_trained(name)]
        results.update(hardware=cards.hardware_summary(), versions=cards.library_versions())
        for name in names:
            results["models"][name] = measure(name, args.data_dir)
            print(name, json.dumps(results["models"][name]), flush=True)
            results["models"] = dict(sorted(results["models"].items()))
            write(results, output)  # after each model: a long run keeps what it measured
    write(results, output)
    if args.update_readme:
        update_section("formats", tables(results))
    print(markdown(results))
    return 0


def write(results: dict, output: Path) -> None:
    files.write_atomically(output / "formats.json", (json.dumps(results, indent=2) + "\n").encode())
    files.write_atomically(output / "formats.md", markdown(results).encode())


if __name__ == "__main__":
    raise SystemExit(main())
