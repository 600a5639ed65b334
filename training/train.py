"""python -m training.train --model NAME [--epochs N] [--set key=value ...] [--data-dir DIR]"""
from __future__ import annotations

import argparse
import sys

from training.recipes import parse_override, resolve
from zoo import registry


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
        resolve(registry.get(args.model), overrides)  # unknown names and bad settings fail here, before any data
    except ValueError as error:
        parser.error(str(error))

    from training import distribute, tasks
    path = tasks.train(args.model, overrides, data_dir=args.data_dir, destination=args.output,
                       strategy=distribute.make_strategy(args.distribute),
                       verbose=1 if sys.stdout.isatty() else 2)  # a progress bar only on a terminal
    print(f"exported {args.model} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
