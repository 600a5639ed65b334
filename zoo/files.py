"""Files replaced whole: written under a temporary name beside the target (unique to the call,
so concurrent writers each end with a whole file), synced, made 0644 and renamed into place.
A kill at any moment leaves the old file or the new one, never a half-written one."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

FILE_MODE = 0o644  # mkstemp makes 0600; what the zoo writes is readable by others, as a plain open makes it


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that wants a file name (tf2onnx, onnxruntime's
    quantizer): renamed onto `path` when the block ends, removed if it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".partial-{path.name}-", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        with open(partial, "rb+") as written:  # the writer's bytes on disk before the rename
            os.fsync(written.fileno())
        os.chmod(partial, FILE_MODE)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    sync_folder(path.parent)


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` with `data` whole."""
    with replacing(path) as partial:
        partial.write_bytes(data)


def sync_folder(folder: Path) -> None:
    """Makes the rename in `folder` survive a power cut."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
