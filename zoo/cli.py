"""python -m zoo list | info NAME | predict NAME INPUT... | evaluate NAME | verify
| convert FORMAT NAME [--precision P] | demo | pins | package DIR | export-serving DIR | serve"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from zoo import api, artifact, convert, demo, hub, publish, registry
from zoo.serving import http

EVALUATE_TOLERANCE = {"accuracy": 0.001, "perplexity": 0.005}  # absolute / relative


def metric_text(spec: registry.ModelSpec, metrics: dict | None) -> str:
    """The test metric as the CLI and README show it: accuracy to 4 places, perplexity to 1."""
    if metrics is None:
        return "not trained"
    value = metrics[spec.metric_key]["value"]
    return f"{value:.4f}" if spec.metric == "accuracy" else f"{value:.1f}"


def command_list(args) -> int:
    rows = [("name", "task", "dataset", "params", "test metric", "bar", "reference")]
    for name in registry.list_models():
        spec = registry.get(name)
        card = artifact.committed_card(name)
        pins = hub.pinned_versions(name)
        metric = f"{spec.metric} {metric_text(spec, card and card['metrics'])}"
        if card is None and pins:  # an installed package: the artifacts are fetched on first use
            metric = f"{spec.metric}: published v{max(pins)}, fetched by zoo.load"
        rows.append((name, spec.task, spec.dataset, f"{spec.parameter_count:,}", metric, spec.bar_text,
                     spec.reference))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def command_info(args) -> int:
    card = artifact.read_card(hub.resolve(args.name))
    card.get("training", {}).pop("history", None)
    print(json.dumps(card, indent=2))
    return 0


def command_predict(args) -> int:
    for line in api.load(args.name).describe(args.inputs, top=args.top, normalize=args.normalize):
        print(line)
    return 0


def command_evaluate(args) -> int:
    model = api.load(args.name)
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
    problems = artifact.verify_all(args.names or None)
    for problem in problems:
        print(problem, file=sys.stderr)
    print("all artifacts verified" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def command_convert(args) -> int:
    format = convert.format_for(args.format, args.precision)
    print(f"wrote {convert.export_file(api.load(args.name), format, args.output, args.data_dir)}")
    return 0


def command_pins(args) -> int:
    print(f"wrote {publish.write_pins()}")
    return 0


def command_package(args) -> int:
    print(f"wrote {publish.package(args.output)}")
    return 0


def command_export_serving(args) -> int:
    for path in publish.export_serving(args.output, args.names or None):
        print(f"wrote {path}")
    return 0


def command_demo(args) -> int:
    return demo.run_demo(data_dir=args.data_dir)


def command_serve(args) -> int:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0-65535, got {args.port}")
    if args.max_body_bytes < 1:
        raise ValueError(f"--max-body-bytes must be positive, got {args.max_body_bytes}")
    batching = None if args.no_batching else http.BatchingOptions(
        args.max_batch_size, args.batch_timeout_ms / 1000, args.max_enqueued)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    return http.serve(args.host, args.port, args.models, batching, args.max_body_bytes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="registered models and their measured metrics")
    listing.set_defaults(run=command_list)
    info = commands.add_parser("info", help="a model's card")
    info.add_argument("name")
    info.set_defaults(run=command_info)
    predict = commands.add_parser("predict", help="classify images (PNG/JPEG/.npy) or continue text")
    predict.add_argument("name")
    predict.add_argument("inputs", nargs="+")
    predict.add_argument("--top", type=int, default=5, help="language models: words to show")
    predict.add_argument("--normalize", action="store_true",
                         help="MNIST models: prepare each image as MNIST's digits (invert a light background, "
                              "fit the digit in 20x20, centre by mass in 28x28)")
    predict.set_defaults(run=command_predict)
    evaluate = commands.add_parser("evaluate", help="re-measure an artifact on the real test split")
    evaluate.add_argument("name")
    evaluate.add_argument("--data-dir", help="raw-data directory (default: $ZOO_DATA_DIR, else download)")
    evaluate.set_defaults(run=command_evaluate)
    verify = commands.add_parser("verify", help="check every artifact's manifest and card")
    verify.add_argument("names", nargs="*")
    verify.set_defaults(run=command_verify)
    converting = commands.add_parser("convert", help="convert an artifact to ONNX or TFLite")
    converting.add_argument("format", choices=["onnx", "tflite"])
    converting.add_argument("name")
    converting.add_argument("--precision", choices=convert.PRECISIONS, default="float32",
                            help="int8: weights and activations, calibrated on training images (image models; "
                                 "reads the training split: --data-dir or $ZOO_DATA_DIR); int8-dynamic: int8 "
                                 "weights (tflite). Default: %(default)s")
    converting.add_argument("--data-dir", help="raw-data directory for int8 calibration (default: $ZOO_DATA_DIR)")
    converting.add_argument("--output", help="also copy the file here (it is made in, and used by zoo.load from, "
                                             "<cache>/converted/<name>/)")
    converting.set_defaults(run=command_convert)
    pins = commands.add_parser("pins", help="regenerate zoo/pins.json from the committed artifacts")
    pins.set_defaults(run=command_pins)
    package = commands.add_parser("package", help="write <name>-<version>.tar.gz archives and index.json")
    package.add_argument("output", help="folder to write (make package: dist/models)")
    package.set_defaults(run=command_package)
    serving = commands.add_parser("export-serving", help="write DIR/<name>/<version>/ SavedModels (TF Serving)")
    serving.add_argument("output")
    serving.add_argument("names", nargs="*", help="models (default: every published one)")
    serving.set_defaults(run=command_export_serving)
    demo = commands.add_parser("demo", help="show every committed model working")
    demo.add_argument("--data-dir")
    demo.set_defaults(run=command_demo)
    serve = commands.add_parser("serve", help="serve models over HTTP (TF Serving's REST API) with a gallery")
    serve.add_argument("--host", default=http.DEFAULT_HOST, help="address to bind (default: %(default)s, this "
                       "machine only; 0.0.0.0 exposes every model to the network)")
    serve.add_argument("--port", type=int, default=http.DEFAULT_PORT, help="default: %(default)s")
    serve.add_argument("--models", nargs="+", metavar="NAME", help="registry names (default: every trained model)")
    serve.add_argument("--no-batching", action="store_true", help="one signature call per request")
    defaults = http.BatchingOptions()
    serve.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size,
                       help="instances per batched call (default: %(default)s)")
    serve.add_argument("--batch-timeout-ms", type=float, default=defaults.batch_timeout_s * 1000,
                       help="longest wait for a batch to fill (default: %(default)s)")
    serve.add_argument("--max-enqueued", type=int, default=defaults.max_enqueued,
                       help="instances waiting per model and signature before 503 (default: %(default)s)")
    serve.add_argument("--max-body-bytes", type=int, default=http.MAX_BODY_BYTES,
                       help="largest request body (default: %(default)s)")
    serve.set_defaults(run=command_serve)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, ImportError) as error:  # includes ArtifactError: a clear message, no trace
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
