"""python -m training.experiments NAME|all [--quick] [--data-dir DIR] [--output DIR]"""
from __future__ import annotations

import argparse
import importlib
import sys
import time

from training.experiments import EXPERIMENTS
from training.experiments.common import REPORTS_DIR, write_report


def run_one(name: str, quick: bool, data_dir, output) -> float:
    """Run, write JSON + PNG; returns the wall time in seconds (also stored in the JSON)."""
    module = importlib.import_module(f"training.experiments.{name}")
    started = time.perf_counter()
    results = module.run(quick=quick, data_dir=data_dir)
    results["wall_seconds"] = time.perf_counter() - started
    json_path, png_path = write_report(name, results, module.plot, output)
    print(f"{name}: {results['wall_seconds']:.0f} s -> {json_path}, {png_path}", flush=True)
    return results["wall_seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the course's claims as experiments.")
    parser.add_argument("name", choices=(*EXPERIMENTS, "all"))
    parser.add_argument("--quick", action="store_true", help="the small test-sized settings")
    parser.add_argument("--data-dir", help="raw-data directory (default: $ZOO_DATA_DIR, else download)")
    parser.add_argument("--output", default=REPORTS_DIR, help="reports folder (default: reports/)")
    args = parser.parse_args(argv)
    names = EXPERIMENTS if args.name == "all" else (args.name,)
    started = time.perf_counter()
    for name in names:
        run_one(name, args.quick, args.data_dir, args.output)
    print(f"total: {time.perf_counter() - started:.0f} s for {len(names)} experiment(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
