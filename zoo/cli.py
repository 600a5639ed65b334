"""python -m zoo list | info NAME | predict NAME INPUT... | evaluate NAME | verify | demo"""
from __future__ import annotations

import argparse
import json
import sys

from zoo import registry
from zoo.manifest import ArtifactError

EVALUATE_TOLERANCE = {"accuracy": 0.001, "perplexity": 0.005}  # absolute / relative


def _metric_text(spec) -> str:
    metrics = spec.reported_metrics()
    if metrics is None:
        return "not trained"
    key = f"test_{spec.metric}"
    return f"{metrics[key]['value']:.4f}" if spec.metric == "accuracy" else f"{metrics[key]['value']:.1f}"


def command_list(args) -> int:
    rows = [("name", "task", "dataset", "params", f"test metric", "bar", "reference")]
    for name in registry.list_models():
        spec = registry.get(name)
        bar = f"{'>=' if spec.metric == 'accuracy' else '<='} {spec.bar:g}"
        rows.append((name, spec.task, spec.dataset, f"{spec.parameter_count:,}",
                     f"{spec.metric} {_metric_text(spec)}", bar, spec.reference))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def command_info(args) -> int:
    from zoo.inference import read_card, resolve_artifact
    card = read_card(resolve_artifact(args.name))
    card.get("training", {}).pop("history", None)
    print(json.dumps(card, indent=2))
    return 0


def command_predict(args) -> int:
    import zoo
    model = zoo.load(args.name)
    if model.card["task"] == "language":
        for text in args.inputs:
            words = ", ".join(f"{word} {probability:.3f}" for word, probability in model.next_words(text, k=args.top))
            print(f"{text!r} -> {words}")
            unknown = model.unknown_words(text)
            if unknown:
                print(f"  (not in the vocabulary, read as <unk>: {' '.join(unknown)})")
        return 0
    inputs = []
    for item in args.inputs:
        if item.endswith(".npy"):
            import numpy as np
            inputs.extend(model.predict(np.load(item)))
        else:
            inputs.extend(model.predict([item]))
    for item, prediction in zip(args.inputs if len(inputs) == len(args.inputs) else range(len(inputs)), inputs):
        confidence = f" ({prediction.probability:.3f})" if prediction.probability is not None else ""
        print(f"{item}: {prediction.label}{confidence}")
    return 0


def command_evaluate(args) -> int:
    import zoo
    model = zoo.load(args.name)
    measured = model.evaluate(data_dir=args.data_dir)
    status = 0
    for key, entry in measured.items():
        reported = model.card["metrics"].get(key, {}).get("value")
        line = f"{model.name} {key}: measured {entry['value']:.4f} on {entry['examples']:,} examples"
        if reported is not None:
            metric = "perplexity" if "perplexity" in key else "accuracy"
            difference = abs(entry["value"] - reported)
            if metric == "perplexity":
                difference /= reported
            ok = difference <= EVALUATE_TOLERANCE[metric]
            status |= 0 if ok else 1
            line += f"; card {reported:.4f} -> {'matches' if ok else 'DOES NOT MATCH'}"
        print(line)
    return status


def command_verify(args) -> int:
    from zoo.verify import verify_all
    problems = verify_all(args.names or None)
    for problem in problems:
        print(problem, file=sys.stderr)
    print("all artifacts verified" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def command_demo(args) -> int:
    from zoo.demo import run_demo
    return run_demo(data_dir=args.data_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="registered models and their measured metrics").set_defaults(run=command_list)
    info = commands.add_parser("info", help="a model's card")
    info.add_argument("name")
    info.set_defaults(run=command_info)
    predict = commands.add_parser("predict", help="classify images (PNG/JPEG/.npy) or continue text")
    predict.add_argument("name")
    predict.add_argument("inputs", nargs="+")
    predict.add_argument("--top", type=int, default=5, help="language models: words to show")
    predict.set_defaults(run=command_predict)
    evaluate = commands.add_parser("evaluate", help="re-measure an artifact on the real test split")
    evaluate.add_argument("name")
    evaluate.add_argument("--data-dir", help="raw-data directory (default: $ZOO_DATA_DIR, else download)")
    evaluate.set_defaults(run=command_evaluate)
    verify = commands.add_parser("verify", help="check every artifact's manifest and card")
    verify.add_argument("names", nargs="*")
    verify.set_defaults(run=command_verify)
    demo = commands.add_parser("demo", help="show every committed model working")
    demo.add_argument("--data-dir")
    demo.set_defaults(run=command_demo)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError) as error:  # includes ArtifactError: a clear message, no trace
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
