"""make demo: every published model (this checkout's, cached or downloaded)
on inputs the zoo draws itself (and real test data if set)."""
from __future__ import annotations

from zoo import api, hub, registry
from zoo.data.common import raw_data_dir
from zoo.serving.image import draw_digits

__all__ = ["draw_digits", "run_demo"]


def run_demo(data_dir=None) -> int:
    data_dir = raw_data_dir(data_dir)
    shown = 0
    for name in registry.list_models():
        if not hub.pinned_versions(name):
            print(f"{name}: not trained (make train-{name})")
            continue
        model = api.load(name)
        metrics = model.card["metrics"]
        key = next(iter(metrics))
        print(f"{name}: card {key} {metrics[key]['value']:.4f}")
        for line in model.demo(data_dir):
            print(line)
        shown += 1
    if data_dir is None:
        print("(set DATA_DIR=/path/to/raw/data to also run on real test images)")
    return 0 if shown else 1
