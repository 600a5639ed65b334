"""python -m training.paper NAME [--minutes M]: the original paper's training schedule for NAME,
run through the same code for as many minutes as the committed recipe took (its card's wall
time), so that the bench can compare time to accuracy. Nothing is exported: the per-epoch log
goes to reports/time_to_accuracy/NAME_paper_schedule.csv (validation = the test split for the
image models, PTB's validation split for the language models), with a JSON summary beside it.
Resumes after an interruption like `make train-NAME`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import keras

from training import REPO_ROOT, cards, loop, tasks
from training.recipes import resolve
from training.train import report_written
from zoo import artifact, files, registry

REPORT_DIR = REPO_ROOT / "reports" / "time_to_accuracy"

# Recipe overrides that reproduce each paper's schedule on the registered architecture.
PAPER_SCHEDULES = {
    # He et al. 2016, CIFAR-10: SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, rate /10
    # at 32k and 48k iterations (epochs 82 and 123 of 391 steps), 64k iterations = 164 epochs.
    "resnet20_cifar10": {"epochs": 164, "optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9,
                         "weight_decay": 1e-4, "batch_size": 128, "schedule": "steps",
                         "step_epochs": (82, 123), "warmup_epochs": 0.0, "label_smoothing": 0.0,
                         "augment": "flip_crop"},
    # Zaremba et al. 2014, small: SGD rate 1 on the loss summed over 35 steps (= 35 on our
    # per-token mean), gradient norm clipped at 5 (= 5/35), rate halved after each epoch from
    # the 5th, 13 epochs, batch 20.
    "lstm_ptb": {"epochs": 13, "optimizer": "sgd", "learning_rate": 35.0, "momentum": 0.0,
                 "weight_decay": 0.0, "gradient_clip_norm": 5.0 / 35, "batch_size": 20,
                 "sequence_length": 35, "schedule": "steps", "step_epochs": tuple(range(4, 13)),
                 "step_factor": 0.5},
}


def committed_minutes(name: str) -> float:
    card = artifact.committed_card(name)
    if card is None:
        raise ValueError(f"{name} has no committed artifact: pass --minutes")
    return card["training"]["wall_time_seconds"] / 60


def run(name: str, minutes: float | None = None, data_dir=None, report_dir: Path = REPORT_DIR,
        work_dir: Path | None = None, verbose="auto") -> Path:
    """Train `name` on its paper schedule for `minutes`; returns the log's path in report_dir."""
    if name not in PAPER_SCHEDULES:
        raise ValueError(f"no paper schedule for {name!r}; known: {sorted(PAPER_SCHEDULES)}")
    spec = registry.get(name)
    minutes = minutes if minutes is not None else committed_minutes(name)
    recipe = resolve(spec, {**PAPER_SCHEDULES[name], "time_limit_minutes": minutes})
    keras.utils.set_random_seed(recipe.seed)
    work_dir = Path(work_dir or loop.CHECKPOINT_ROOT / f"{name}_paper_schedule")
    with loop.work_dir_lock(work_dir):  # one run per folder, from the first check to the cleanup
        metrics = tasks.FIT_AND_MEASURE[spec.task](spec, recipe, data_dir, work_dir, verbose)
        report_dir.mkdir(parents=True, exist_ok=True)
        log_path = report_dir / f"{name}_paper_schedule.csv"
        files.write_atomically(log_path, (work_dir / loop.LOG_FILE).read_bytes())
        summary = {"name": name, "model_config": dataclasses.asdict(spec.config),  # what the bench times
                   "minutes_budget": minutes, "recipe": PAPER_SCHEDULES[name],
                   "final_metrics": metrics, "hardware": cards.hardware_summary(), "created": cards.utc_now(),
                   "command": f"make paper-{name}"}
        files.write_atomically(log_path.with_suffix(".json"),
                               (json.dumps(summary, indent=2, default=list) + "\n").encode())
        loop.clear_checkpoints(work_dir)
    return log_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(PAPER_SCHEDULES))
    parser.add_argument("--minutes", type=float, help="training-time budget (default: the committed card's)")
    parser.add_argument("--data-dir", help="raw-data directory (default: $ZOO_DATA_DIR, else download)")
    args = parser.parse_args(argv)
    return report_written(lambda: run(args.name, args.minutes, args.data_dir, verbose=1 if sys.stdout.isatty() else 2))


if __name__ == "__main__":
    sys.exit(main())
