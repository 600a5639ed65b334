"""Test setup. A test run is hermetic: tfds's data directory, the zoo's cache and every library
cache under $HOME point into one temporary folder made for this run (before tfds, Keras or
matplotlib are imported), so nothing an earlier run left on the machine is read. Tests marked
`data` prepare what they need there from $ZOO_DATA_DIR, the official raw files."""
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_RUN_DIR = tempfile.mkdtemp(prefix="zoo-tests-")
for _variable, _folder in {"TFDS_DATA_DIR": "tensorflow_datasets", "ZOO_CACHE_DIR": "zoo-cache",
                           "KERAS_HOME": "keras", "MPLCONFIGDIR": "matplotlib", "XDG_CACHE_HOME": "cache"}.items():
    os.environ[_variable] = os.path.join(_RUN_DIR, _folder)
# Models resolve from this checkout or the run's cache; nothing reaches a real models server.
for _variable in ("ZOO_MODELS_DIR", "ZOO_OFFLINE"):
    os.environ.pop(_variable, None)
os.environ["ZOO_MODELS_URL"] = "http://127.0.0.1:9/no-models-server-in-tests"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from zoo import artifact, registry  # noqa: E402

settings.register_profile("hermetic", database=None)  # no examples replayed from earlier runs
settings.load_profile("hermetic")

IMAGE_MODELS = [name for name in registry.list_models() if registry.get(name).task == "image"]
# The CIFAR-10 models' graph building and training steps take most of a per-model test's time
# (5-40 s each); their per-model checks of exporting and training run in the slow lane, the MNIST
# models' cover the same code in the fast one.
SLOW_MODELS = {"airbench_cifar10", "cnn_cifar10", "resnet20_cifar10", "resnet56_cifar10"}


def registry_params(names):
    """pytest params over registry names, the SLOW_MODELS marked slow."""
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_MODELS else name for name in names]
TRAINED_MODELS = [name for name in registry.list_models() if artifact.is_trained(name)]


def pytest_addoption(parser):
    parser.addoption("--screenshots", default=None, metavar="DIR",
                     help="keep the real-browser test's screenshots in DIR (default: a temporary folder)")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_RUN_DIR, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    for item in items:  # a test that asks for the real data is a `data` test
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


@pytest.fixture(scope="session")
def data_dir():
    """The real raw-data directory, or skip: these tests re-measure committed artifacts."""
    value = os.environ.get("ZOO_DATA_DIR")
    if not value:
        pytest.skip("ZOO_DATA_DIR is not set: real-data checks need the official raw files")
    return value


def export_fresh(name: str, destination, model=None, **card_extra):
    """Export an untrained (freshly initialised) registry model, or `model` built from its
    spec, with a minimal card (language models get a made-up vocabulary: <unk>, <eos>, w2, w3, ...)."""
    from training.cards import make_card
    from training.recipes import resolve
    from zoo.export import export
    from zoo.serving.language import set_vocabulary

    spec = registry.get(name)
    model = model if model is not None else spec.build()
    if spec.task == "language":
        set_vocabulary(model, ["<unk>", "<eos>"] + [f"w{index}" for index in range(2, spec.config.vocab_size)])
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
