"""python -m training.reexport NAME: rewrite a committed artifact from its own weights and card
(after a change to the export format); the model function, and so its metrics, are unchanged."""
from __future__ import annotations

import argparse
from pathlib import Path

from training.cards import utc_now
from zoo import artifact, publish, registry, tasks
from zoo.export import export, signature_doc


def reexport(name: str, from_saved_model: bool = False, folder: str | Path | None = None,
             card_update: dict | None = None) -> Path:
    """Rewrite the artifact in `folder` (default: the committed exported_models/NAME/) in place,
    its card updated with `card_update` (facts measured since, such as training.repeat's seeds)."""
    spec = registry.get(name)
    folder = Path(folder or artifact.committed_dir(spec.name))
    artifact.verify_manifest(folder)
    card = artifact.read_card(folder)
    model = spec.build()
    if from_saved_model:
        restore_from_saved_model(model, folder)
    else:
        model.load_weights(folder / "model.weights.h5")
    tasks.get(spec.task).attach_assets(model, folder)
    card["signatures"] = signature_doc(spec, model)  # the export format may document them differently now
    card.update(card_update or {})
    card["reexported"] = utc_now()
    card.pop("version", None)  # new bytes, a new published version: export() numbers it (the old + 1)
    return export(model, spec, card, folder)


def restore_from_saved_model(model, folder: Path) -> None:
    """Assign `model` the weights the SavedModel in `folder` holds (matched by variable path),
    for when its model.weights.h5 is unusable. Variables no signature reads (training state,
    such as the perceptron's running sums) keep their initial values."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(folder))
    saved = {variable.name: variable for function in loaded.signatures.values() for variable in function.variables}
    for weight in model.weights:
        if f"{weight.path}:0" in saved:
            weight.assign(saved[f"{weight.path}:0"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="+")
    parser.add_argument("--from-saved-model", action="store_true",
                        help="take the weights from the SavedModel's variables, not model.weights.h5")
    args = parser.parse_args()
    for name in args.names:
        print(f"re-exported {name} to {reexport(name, args.from_saved_model)}")
    print(f"pinned the new manifests in {publish.write_pins()} (commit it with the artifacts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
