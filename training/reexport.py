"""python -m training.reexport NAME: rewrite a committed artifact from its own weights and card
(after a change to the export format); the model function, and so its metrics, are unchanged."""
from __future__ import annotations

import argparse
import json

from training.loop import utc_now
from zoo import get_model, registry
from zoo.export import export


def reexport(name: str, from_saved_model: bool = False):
    spec = registry.get(name)
    card = json.loads((spec.export_dir / "model_card.json").read_text())
    if from_saved_model:
        model = weights_from_saved_model(spec)
    else:
        model = get_model(name, pretrained=True)  # language models get their vocabulary back too
    card["reexported"] = utc_now()
    return export(model, spec, card)


def weights_from_saved_model(spec):
    """The registered model with the weights the artifact's SavedModel holds (matched by
    variable path), for when its model.weights.h5 is unusable."""
    import tensorflow as tf
    from zoo.manifest import verify_manifest

    verify_manifest(spec.export_dir)
    loaded = tf.saved_model.load(str(spec.export_dir))
    saved = {variable.name: variable for function in loaded.signatures.values() for variable in function.variables}
    model = spec.build()
    for weight in model.weights:
        weight.assign(saved[f"{weight.path}:0"])
    if spec.task == "language":
        from zoo.models.language import VOCABULARY_ASSET, read_vocabulary, set_vocabulary
        set_vocabulary(model, read_vocabulary(spec.export_dir / "assets" / VOCABULARY_ASSET))
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="+")
    parser.add_argument("--from-saved-model", action="store_true",
                        help="take the weights from the SavedModel's variables, not model.weights.h5")
    args = parser.parse_args()
    for name in args.names:
        print(f"re-exported {name} to {reexport(name, args.from_saved_model)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
