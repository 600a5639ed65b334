"""python -m training.reexport NAME: rewrite a committed artifact from its own weights and card
(after a change to the export format); the model function, and so its metrics, are unchanged."""
from __future__ import annotations

import argparse
import json

from training.loop import utc_now
from zoo import get_model, registry
from zoo.export import export


def reexport(name: str):
    spec = registry.get(name)
    card = json.loads((spec.export_dir / "model_card.json").read_text())
    model = get_model(name, pretrained=True)  # language models get their vocabulary back too
    card["reexported"] = utc_now()
    return export(model, spec, card)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="+")
    for name in parser.parse_args().names:
        print(f"re-exported {name} to {reexport(name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
