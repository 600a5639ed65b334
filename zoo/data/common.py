"""Where the raw official files are (the raw-data directory, read-only), and what the data needs.

Nothing here imports tfds: serving reads this module, and tfds is the `data` extra."""
from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_VARIABLE = "ZOO_DATA_DIR"


def raw_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The raw-data directory: the argument, else $ZOO_DATA_DIR, else None (download)."""
    value = data_dir if data_dir is not None else os.environ.get(DATA_DIR_VARIABLE) or None
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"data directory {str(path)!r} (from {'argument' if data_dir else DATA_DIR_VARIABLE})"
                         " does not exist or is not a directory")
    return path


def missing_data_extra(error: ImportError, what: str) -> ImportError:
    """The one-line error for using the data pipeline (tfds) where only inference is installed."""
    return ImportError(f"{what} reads the real data, which needs the data extra (tensorflow-datasets): "
                       f"pip install 'zoo[data]' ({error})")
