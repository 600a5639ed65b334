"""python -m training.ablation NAME VARIANT [--config key=value ...] [--set key=value ...]: one
variant of a registered model's recipe, trained without exporting and measured on the validation
split (never the test split), for choosing recipes and for the README's "what each part bought".

Each variant is a timed run (run them one at a time); its result (the final figure and the
per-epoch history) goes to reports/ablation/NAME/VARIANT.json and the table of every variant so
far to reports/ablation/NAME.md.
`--config` overrides the model's architecture settings (e.g. weight_drop=0), `--set` the recipe's.
Resumes after an interruption like `make train-NAME`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import keras

from training import REPO_ROOT, cards, loop, tasks
from training.recipes import parse_override, resolve
from training.train import EXPECTED_ERRORS, report_error
from zoo import files, registry

REPORT_DIR = REPO_ROOT / "reports" / "ablation"
VARIANT_NAME = re.compile(r"^[a-z0-9_]+$")
# The metric each task's fit_and_measure reports on the validation split, and the recipe settings
# that make it hold one out (image models: the last 5,000 training images; PTB has its own split).
VALIDATION_METRICS = {"language": "validation_perplexity", "image": "validation_accuracy"}
VALIDATION_SETTINGS: dict[str, dict[str, Any]] = {"image": {"validation": "holdout"}}
# split="test" (training.repeat: the final recipe again with another seed): all the training data,
# the test split read once, after training.
TEST_METRICS = {"image": "test_accuracy"}
TEST_SETTINGS: dict[str, dict[str, Any]] = {"image": {"validation": "none"}}


def run(name: str, variant: str, config: dict[str, Any], overrides: dict[str, Any], data_dir=None,
        report_dir: Path = REPORT_DIR, work_dir: Path | None = None, verbose="auto", split: str = "validation",
        command_line: str | None = None) -> Path:
    """Train variant `variant` of `name`; returns the variant's JSON in report_dir/name/. Measured on
    the validation split (the table of variants goes to report_dir/name.md), or with split="test"
    on the test split, once, after training on all the training data (training.repeat)."""
    if not VARIANT_NAME.match(variant):
        raise ValueError(f"a variant name is lower-case letters, digits and _, got {variant!r}")
    metrics_of, settings_of = {"validation": (VALIDATION_METRICS, VALIDATION_SETTINGS),
                               "test": (TEST_METRICS, TEST_SETTINGS)}[split]
    spec = registry.get(name)
    if spec.task not in metrics_of:
        raise ValueError(f"{name} is a {spec.task} model; these runs measure on the {split} split, which the "
                         f"{spec.task} trainer does not report without exporting (known: {sorted(metrics_of)})")
    spec = dataclasses.replace(spec, config=dataclasses.replace(spec.config, **config))
    spec.build()  # a bad architecture setting fails here, before any data
    recipe = resolve(spec, {**overrides, **settings_of.get(spec.task, {})})
    keras.utils.set_random_seed(recipe.seed)
    work_dir = Path(work_dir or loop.CHECKPOINT_ROOT / f"{name}_ablation_{variant}")
    started = time.perf_counter()
    with loop.work_dir_lock(work_dir):
        metrics = tasks.FIT_AND_MEASURE[spec.task](spec, recipe, data_dir, work_dir, verbose)
        history = loop.read_history(work_dir / loop.LOG_FILE)
        result = {"name": name, "variant": variant, "config_overrides": config, "recipe_overrides": overrides,
                  "metric": metrics_of[spec.task], "value": metrics[metrics_of[spec.task]]["value"], "metrics": metrics,
                  "epochs": len(history.get("epoch", [])), "minutes": (time.perf_counter() - started) / 60,
                  "history": history, "hardware": cards.hardware_summary()["summary"], "created": cards.utc_now(),
                  "command": command_line or command(name, variant, config, overrides)}
        path = report_dir / name / f"{variant}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomically(path, (json.dumps(result, indent=2, default=list) + "\n").encode())
        if split == "validation":
            files.write_atomically(report_dir / f"{name}.md", markdown(name, report_dir).encode())
        loop.clear_checkpoints(work_dir)
    return path


def command(name: str, variant: str, config: dict[str, Any], overrides: dict[str, Any]) -> str:
    def shown(value):
        return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value).lower() \
            if isinstance(value, bool) or value is None else str(value)
    options = [f"--config {key}={shown(value)}" for key, value in config.items()]
    options += [f"--set {key}={shown(value)}" for key, value in overrides.items()]
    return " ".join(["python -m training.ablation", name, variant, *options])


def markdown(name: str, report_dir: Path = REPORT_DIR) -> str:
    """The table of every variant of `name` measured so far, best first."""
    results = [json.loads(path.read_text()) for path in sorted((report_dir / name).glob("*.json"))]
    lower_is_better = registry.get(name).metric == "perplexity"
    results.sort(key=lambda result: result["value"] if lower_is_better else -result["value"])
    lines = [f"# Ablation: {name}\n", "Each row one run of `python -m training.ablation` (command and date in "
             "the JSON beside this file), measured on the validation split; the test split is not used. "
             "Changes are from the registry's entry on the run's date (an adopted variant becomes the "
             "registry's; `git log -p zoo/catalog.py` shows when).\n",
             "| variant | changes from the registry's recipe then | validation | epochs | minutes | machine |",
             "|---|---|---|---|---|---|"]
    for result in results:
        changes = ", ".join(f"{key}={value}" for key, value in
                            {**result["config_overrides"], **result["recipe_overrides"]}.items()) or "none"
        lines.append(f"| {result['variant']} | {changes} | {result['value']:.5g} {result['metric']} | "
                     f"{result['epochs']} | {result['minutes']:.1f} | {result['hardware']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=registry.list_models())
    parser.add_argument("variant", help="a name for this variant (lower-case, digits, _)")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="override an architecture setting (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe setting (repeatable)")
    parser.add_argument("--data-dir", help="raw-data directory (default: $ZOO_DATA_DIR, else download)")
    args = parser.parse_args(argv)
    try:
        spec = registry.get(args.name)
        config = dict(parse_override(item, type(spec.config), "--config") for item in args.config)
        overrides = dict(parse_override(item) for item in args.set)
        path = run(args.name, args.variant, config, overrides, args.data_dir,
                   verbose=1 if sys.stdout.isatty() else 2)
    except EXPECTED_ERRORS as error:
        return report_error(error)
    print(f"wrote {path} and {path.parent.parent / (args.name + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
