"""What every experiment shares: seeds, real-data subsets, figures, JSON + PNG output."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import keras
import matplotlib
import numpy as np

from training import REPO_ROOT
from zoo.data.images import load_images

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

REPORTS_DIR = REPO_ROOT / "reports"


def seed(value: int) -> None:
    """Python, numpy and TensorFlow seeds at once (same seed -> same initial weights)."""
    keras.utils.set_random_seed(value)


def load_subset(dataset: str, split: str, count: int, data_dir: str | os.PathLike | None = None):
    """The first `count` examples of a tfds split as numpy: (uint8 [N, H, W, C], int64 [N])."""
    images, labels = next(iter(load_images(dataset, split, data_dir).take(count).batch(count)))
    return images.numpy(), labels.numpy()


def subplots(columns: int = 1, rows: int = 1, width: float = 6.0, height: float = 4.5):
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    return figure, axes.ravel()


def save_figure(figure, path: str | os.PathLike, title: str) -> None:
    figure.suptitle(title, fontsize=12)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def to_json(value):
    """numpy scalars and arrays -> plain Python, floats rounded to 6 significant digits."""
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.6g}")
    return value


def write_report(name: str, results: dict, plot, reports_dir: Path = REPORTS_DIR) -> tuple[Path, Path]:
    """reports/<name>/<name>.json (the numbers) and .png (plot(results, path))."""
    folder = Path(reports_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    json_path, png_path = folder / f"{name}.json", folder / f"{name}.png"
    text = json.dumps(to_json(results), indent=1)
    # Lists of numbers on one line each: "[\n  1,\n  2\n ]" -> "[1, 2]".
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]",
                  lambda match: "[" + re.sub(r"\s+", " ", match.group(1)) + "]", text)
    json_path.write_text(text + "\n")
    plot(results, png_path)
    return json_path, png_path
