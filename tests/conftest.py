import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from zoo import registry  # noqa: E402

IMAGE_MODELS = [name for name in registry.list_models() if registry.get(name).task == "image"]
TRAINED_MODELS = [name for name in registry.list_models() if registry.get(name).export_dir.is_dir()]


@pytest.fixture(scope="session")
def data_dir():
    """The real raw-data directory, or skip: these tests re-measure committed artifacts."""
    value = os.environ.get("ZOO_DATA_DIR")
    if not value:
        pytest.skip("ZOO_DATA_DIR is not set: real-data checks need the official raw files")
    return value


def export_fresh(name: str, destination, **card_extra):
    """Export an untrained (freshly initialised) registry model with a minimal card."""
    from training.recipes import resolve
    from training.tasks import make_card
    from zoo.export import export

    spec = registry.get(name)
    model = spec.build()
    metrics = {f"test_{spec.metric}": {"value": 0.0, "split": "test", "examples": 0}}
    card = make_card(spec, resolve(spec), model, metrics, {}, 0.0, extra=card_extra)
    export(model, spec, card, destination)
    return model


@pytest.fixture(scope="session")
def fresh_cnn_artifact(tmp_path_factory):
    """(keras model, artifact folder) of an untrained cnn_mnist, exported once per session."""
    folder = tmp_path_factory.mktemp("artifacts") / "cnn_mnist"
    model = export_fresh("cnn_mnist", folder)
    return model, folder


def random_images(shape, count=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)
