"""python -m zoo list | info NAME | predict NAME INPUT... | evaluate NAME | verify | convert FORMAT NAME | demo"""
from __future__ import annotations

import argparse
import json
import sys

from zoo import registry
from zoo.manifest import ArtifactError

EVALUATE_TOLERANCE = {"accuracy": 0.001, "perplexity": 0.005}  # absolute / relative


def _metric_text(spec, metrics: dict | None) -> str:
    if metrics is None:
        return "not trained"
    key = f"test_{spec.metric}"
    return f"{metrics[key]['value']:.4f}" if spec.metric == "accuracy" else f"{metrics[key]['value']:.1f}"


def markdown_table() -> str:
    """The README's model table, from the registry and the committed cards."""
    lines = ["| model | test metric | bar | reference | parameters | training on this machine |",
             "|---|---|---|---|---|---|"]
    for name in registry.list_models():
        spec = registry.get(name)
        card = spec.card()  # read once per model
        training = measured = "not trained"
        if card is not None:
            training = f"{card['training']['epochs_run']} epochs, {card['training']['wall_time_seconds'] / 60:.0f} min"
            value = spec.committed_value(card)
            measured = _metric_text(spec, card["metrics"])
            measured = f"{spec.metric} {measured}{'' if spec.meets_bar(value) else ' (bar not met)'}"
        lines.append(f"| `{name}` | {measured} | {spec.bar_text} | {spec.reference or '-'} | "
                     f"{spec.parameter_count:,} | {training} |")
    return "\n".join(lines)


def replace_section(text: str, section: str, body: str) -> str:
    """text with what stands between <!-- section:start --> and <!-- section:end --> replaced."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"README lacks the markers {start} and {end}")
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{body}\n{end}{tail}"


def readme_with_table(text: str) -> str:
    return replace_section(text, "model-table", markdown_table())


def command_list(args) -> int:
    if args.update_readme:
        readme = registry.REPO_ROOT / "README.md"
        readme.write_text(readme_with_table(readme.read_text()))
        return 0
    if args.markdown:
        print(markdown_table())
        return 0
    rows = [("name", "task", "dataset", "params", "test metric", "bar", "reference")]
    for name in registry.list_models():
        spec = registry.get(name)
        rows.append((name, spec.task, spec.dataset, f"{spec.parameter_count:,}",
                     f"{spec.metric} {_metric_text(spec, spec.reported_metrics())}", spec.bar_text, spec.reference))
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
    for item in args.inputs:
        if item.endswith(".npy"):
            predictions = model.predict(_read_npy(item))
            names = [item] if len(predictions) == 1 else [f"{item}[{index}]" for index in range(len(predictions))]
        else:
            predictions, names = model.predict([item]), [item]
        for name, prediction in zip(names, predictions):
            confidence = f" ({prediction.probability:.3f})" if prediction.probability is not None else ""
            print(f"{name}: {prediction.label}{confidence}")
    return 0


def _read_npy(path: str):
    import numpy as np
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"could not read {path!r} as a .npy image array: {error}") from None


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


def command_convert(args) -> int:
    from zoo.convert import to_onnx, to_tflite
    path = (to_onnx if args.format == "onnx" else to_tflite)(args.name, args.output)
    print(f"wrote {path}")
    return 0


def command_demo(args) -> int:
    from zoo.demo import run_demo
    return run_demo(data_dir=args.data_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="registered models and their measured metrics")
    listing.add_argument("--markdown", action="store_true", help="the README's model table")
    listing.add_argument("--update-readme", action="store_true", help="rewrite README.md's model table")
    listing.set_defaults(run=command_list)
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
    convert = commands.add_parser("convert", help="convert an artifact to ONNX or TFLite")
    convert.add_argument("format", choices=["onnx", "tflite"])
    convert.add_argument("name")
    convert.add_argument("--output", help="file to write (default: converted/<name>/model.<format>)")
    convert.set_defaults(run=command_convert)
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
