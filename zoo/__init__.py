"""zoo: classic neural networks, trained on real data, exported as self-contained SavedModels.

    import zoo
    model = zoo.load("cnn_mnist")
    model.predict(images)
"""
from zoo import catalog  # noqa: F401  (fills the registry)
from zoo.api import evaluate, get_model, load
from zoo.artifact import ArtifactError
from zoo.registry import ModelSpec, list_models
from zoo.registry import get as get_spec

__version__ = "0.1.0"
__all__ = ["ArtifactError", "ModelSpec", "evaluate", "get_model", "get_spec", "list_models", "load"]
