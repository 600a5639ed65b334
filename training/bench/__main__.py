"""python -m training.bench [--quick] [--serving-only]: writes reports/bench.json and reports/bench.md
(PyTorch beside the zoo: python -m training.bench.peers, `make bench-peers`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from training.bench.measure import language_figures, precision_speedups, run, time_to_accuracy, training_figures
from training.bench.render import REPORTS, markdown, write_reports
from training.bench.serving import serving_figures
from training.readme import read_report
from zoo import registry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repeats (for tests)")
    parser.add_argument("--output", default=str(REPORTS), help="folder for bench.json and bench.md")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite bench.md from bench.json")
    parser.add_argument("--language-only", action="store_true",
                        help="rerun only the generation figures into bench.json")
    parser.add_argument("--precision-only", action="store_true",
                        help="rerun only the mixed-precision (bfloat16) training speed-ups into bench.json")
    parser.add_argument("--time-to-accuracy-only", action="store_true",
                        help="recompute only the time-to-accuracy table (from the cards; no timing)")
    parser.add_argument("--serving-only", action="store_true",
                        help="rerun only the HTTP serving figures (python -m zoo serve) into bench.json")
    parser.add_argument("--training-only", action="store_true",
                        help="only the machine, matmul rate and training table, in a new bench.json "
                             "(`make bench ISA=avx2`)")
    parser.add_argument("--models", nargs="+", choices=registry.list_models(), default=None,
                        help="with --training-only: these models' rows (default: every model)")
    parser.add_argument("--update-readme", action="store_true",
                        help="also quote the tables in README.md (between the bench markers)")
    args = parser.parse_args()
    partial = (args.markdown_only, args.language_only, args.serving_only, args.time_to_accuracy_only,
               args.precision_only)
    if args.models and not args.training_only:
        parser.error("--models goes with --training-only")
    if args.training_only and any(partial):
        parser.error("--training-only is a run of its own; it does not combine with the other --*-only options")
    if args.training_only and args.update_readme:
        parser.error("--training-only writes a partial bench.json; the README quotes whole runs of `make bench`")
    if any(partial):
        results = read_report(Path(args.output) / "bench.json", hint="run `make bench` first")
        if args.language_only:
            results.update(language_figures())
        if args.precision_only:
            results["precision"] = precision_speedups(*((3, 1) if args.quick else (20, 3)))
        if args.time_to_accuracy_only:
            results["time_to_accuracy"] = time_to_accuracy()
        if args.serving_only:
            results.update(serving_figures(args.quick))
    elif args.training_only:
        results = training_figures(args.quick, args.models)
    else:
        results = run(args.quick)
        results.update(serving_figures(args.quick))
    write_reports(results, Path(args.output), args.update_readme)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
