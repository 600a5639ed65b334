"""zoo: classic neural networks, trained on real data, exported as self-contained SavedModels.

    import zoo
    model = zoo.load("cnn_mnist")
    model.predict(images)
"""
from zoo.registry import ModelSpec, get as get_spec, list_models

__version__ = "0.1.0"
__all__ = ["ModelSpec", "get_spec", "list_models", "get_model", "load", "evaluate"]


def get_model(name: str, pretrained: bool = False):
    """The trainable Keras model; with pretrained=True, the committed artifact's weights."""
    spec = get_spec(name)
    model = spec.build()
    if pretrained:
        from zoo.manifest import ArtifactError, verify_manifest
        weights = spec.export_dir / "model.weights.h5"
        if not weights.is_file():
            raise ArtifactError(f"{name} has no trained weights ({weights} is missing); "
                                f"train it with `make train-{name}`")
        verify_manifest(spec.export_dir)
        model.load_weights(weights)
        if spec.task == "language":  # the word list that goes with the ids: the artifact's vocab.txt
            from zoo.models.language import artifact_vocabulary, set_vocabulary
            set_vocabulary(model, artifact_vocabulary(spec.export_dir))
    return model


def load(name_or_path, runtime: str = "tensorflow"):
    """Load an exported artifact by registry name or folder path (manifest verified).
    runtime="onnxruntime": image models predict through an ONNX conversion (made once, cached)."""
    from zoo.inference import load as _load
    return _load(name_or_path, runtime)


def evaluate(name_or_path, data_dir=None):
    """Re-measure an artifact's test metrics on the real test split."""
    from zoo.evaluation import evaluate as _evaluate
    return _evaluate(name_or_path, data_dir)
