"""python -m training.repeat NAME --seeds 1 2 [--data-dir DIR]: the registered recipe again with
other seeds, each on all the training data with the test split read once, after training (nothing
exported): the spread of the committed artifact's figure. Each seed is a timed run (one at a time);
its result goes to reports/repeats/NAME/seedK.json, and reports/repeats/NAME.md gives every seed's
figure with the committed artifact's (its card's seed), their mean and standard deviation.
`python -m training.repeat NAME --to-card` writes that summary into the committed artifact's card
(a re-export from its own weights: new bytes, a new version; commit it with zoo/pins.json).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from training import REPO_ROOT, ablation, loop, reexport
from training.train import report_written
from zoo import artifact, files, publish, registry

REPORT_DIR = REPO_ROOT / "reports" / "repeats"


def run(name: str, seeds: list[int], data_dir=None, report_dir: Path = REPORT_DIR, work_root: Path | None = None,
        verbose="auto") -> Path:
    """Train `name` once per seed; returns report_dir/NAME.md."""
    committed = artifact.committed_card(name)
    committed_seed = committed["recipe"]["seed"] if committed else None
    if committed_seed in seeds:
        raise ValueError(f"seed {committed_seed} is the committed artifact's; repeat other seeds, got {seeds}")
    for seed in seeds:
        ablation.run(name, f"seed{seed}", {}, {"seed": seed}, data_dir, report_dir,
                     (work_root or loop.CHECKPOINT_ROOT) / f"{name}_repeat_seed{seed}", verbose, split="test",
                     command_line=f"python -m training.repeat {name} --seeds {seed}")
        files.write_atomically(report_dir / f"{name}.md", markdown(name, report_dir).encode())
    return report_dir / f"{name}.md"


def figures(name: str, report_dir: Path = REPORT_DIR) -> dict[int, dict[str, float]]:
    """seed -> the test metrics (the bar's first) and minutes of the committed artifact and of every repeat."""
    spec = registry.get(name)
    card = artifact.committed_card(name)
    found = {}
    if card:
        found[card["recipe"]["seed"]] = {**_test_metrics(card["metrics"]),
                                         "minutes": card["training"]["wall_time_seconds"] / 60}
    for path in sorted((report_dir / name).glob("seed*.json")):
        result = json.loads(path.read_text())
        found[int(result["recipe_overrides"]["seed"])] = {**_test_metrics(result["metrics"]),
                                                          "minutes": result["minutes"]}
    return {seed: {spec.metric_key: row.pop(spec.metric_key), **row} for seed, row in found.items()}


def _test_metrics(metrics: dict) -> dict[str, float]:
    return {key: float(entry["value"]) for key, entry in metrics.items() if key.startswith("test_")}


def markdown(name: str, report_dir: Path = REPORT_DIR) -> str:
    spec = registry.get(name)
    found = figures(name, report_dir)
    columns = list(dict.fromkeys(key for row in found.values() for key in row))
    lines = [f"# Repeats: {name}\n", "The registered recipe with other seeds (`python -m training.repeat`), each "
             "trained on all the training data with the test split read once, after training; the committed "
             "artifact's figures are its card's. Minutes are wall time of the whole run.\n",
             "| seed | " + " | ".join(column.replace("_", " ") for column in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for seed, row in sorted(found.items()):
        cells = [f"{row[column]:.1f}" if column == "minutes" else f"{row[column]:.4f}" if column in row else "-"
                 for column in columns]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    values = [row[spec.metric_key] for row in found.values()]
    if len(values) > 1:
        lines.append(f"\n{spec.metric_key.replace('_', ' ')}: mean {statistics.mean(values):.4f}, standard deviation "
                     f"{statistics.stdev(values):.4f} (sample, n = {len(values)}).")
    return "\n".join(lines) + "\n"


def summary(name: str, report_dir: Path = REPORT_DIR) -> dict:
    """The card's `repeats` entry: every seed's figures (the committed artifact's among them), the
    bar metric's mean and sample standard deviation, and where they come from."""
    spec = registry.get(name)
    found = figures(name, report_dir)
    if len(found) < 2:
        raise ValueError(f"{name} has {len(found)} figure(s) in {report_dir / name}; a summary needs the committed "
                         f"artifact and at least one repeat (python -m training.repeat {name} --seeds 1 2)")
    values = [row[spec.metric_key] for row in found.values()]
    card = artifact.committed_card(name)
    repeated = [str(seed) for seed in sorted(found) if not card or seed != card["recipe"]["seed"]]
    return {"metric": spec.metric_key, "seeds": {str(seed): row for seed, row in sorted(found.items())},
            "mean": statistics.mean(values), "standard_deviation": statistics.stdev(values), "n": len(values),
            "split": "test, read once per seed after training on all the training data",
            "command": f"python -m training.repeat {name} --seeds {' '.join(repeated)}",
            "report": f"reports/repeats/{name}.md"}


def to_card(name: str, report_dir: Path = REPORT_DIR, folder: Path | None = None) -> Path:
    """Re-export the committed artifact with summary(name) as its card's `repeats`."""
    return reexport.reexport(name, folder=folder, card_update={"repeats": summary(name, report_dir)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=registry.list_models())
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--seeds", nargs="+", type=int, help="seeds other than the card's")
    what.add_argument("--to-card", action="store_true",
                      help="write the repeats' summary into the committed artifact's card (re-exports it)")
    parser.add_argument("--data-dir", help="raw-data directory (default: $ZOO_DATA_DIR, else download)")
    args = parser.parse_args(argv)
    if args.to_card:
        def carded() -> Path:
            folder = to_card(args.name)
            publish.write_pins()
            return folder
        return report_written(carded)
    return report_written(lambda: run(args.name, args.seeds, args.data_dir, verbose=1 if sys.stdout.isatty() else 2))


if __name__ == "__main__":
    sys.exit(main())
