"""python -m training.train --model NAME [--epochs N] [--set key=value ...] [--data-dir DIR]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

from training import distribute, loop, tasks
from training.recipes import parse_override, resolve
from zoo import artifact, publish, registry
from zoo.export import ExportError

# Failures with a message written for the person at the command line: printed as one line.
# ValueError is the zoo's (and check_resumable's) way to refuse an input, e.g. a CIFAR-10 file
# whose sha256 is not the official one.
EXPECTED_ERRORS = (ValueError, NonMatchingChecksumError, loop.CheckpointError, loop.TrainingDiverged, ExportError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train, evaluate and export one zoo model.")
    parser.add_argument("--model", required=True, help="registry name, e.g. cnn_mnist")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe setting (repeatable)")
    parser.add_argument("--data-dir", help="raw-data directory (default: $ZOO_DATA_DIR, else download)")
    parser.add_argument("--output", help="artifact folder (default: exported_models/<model>)")
    parser.add_argument("--distribute", choices=["none", "mirrored", "multi_worker"], default="none")
    args = parser.parse_args(argv)
    try:
        overrides = dict(parse_override(item) for item in args.set)
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        spec = registry.get(args.model)
        resolve(spec, overrides)  # unknown names and bad settings fail here, before any data
    except ValueError as error:
        parser.error(str(error))

    previous = artifact.committed_value(spec) if args.output is None else None
    try:
        path = tasks.train(args.model, overrides, data_dir=args.data_dir, destination=args.output,
                           strategy=distribute.make_strategy(args.distribute),
                           verbose=1 if sys.stdout.isatty() else 2)  # a progress bar only on a terminal
    except EXPECTED_ERRORS as error:
        return report_error(error)
    print(f"exported {args.model} to {path}")
    if args.output is None and path is not None:  # the committed artifact changed: so does its pin
        print(f"pinned its manifest in {publish.write_pins()} (commit it with exported_models/{spec.name})")
    new = artifact.committed_value(spec)
    if previous is not None and path is not None and new is not None:
        print(replacement_note(spec, previous, new))
    return 0


def report_error(error: BaseException) -> int:
    """`error: MESSAGE` on one line on stderr; the exit status 2."""
    print("error: " + " ".join(str(error).split()), file=sys.stderr)
    return 2


def report_written(work: Callable[[], Path]) -> int:
    """An entry point's exit status: `wrote PATH` and 0, or its one-line error and 2."""
    try:
        path = work()
    except EXPECTED_ERRORS as error:
        return report_error(error)
    print(f"wrote {path}")
    return 0


def replacement_note(spec, previous: float, new: float) -> str:
    """What the run did to the artifact it replaced (committed artifacts stay in git)."""
    change = f"test {spec.metric} {previous:.4g} -> {new:.4g}"
    if spec.at_least_as_good(new, previous):
        return f"replaced the artifact: {change}"
    return (f"replaced the artifact: {change} (WORSE; the committed one is restored by "
            f"`git checkout -- exported_models/{spec.name}`)")


if __name__ == "__main__":
    sys.exit(main())
