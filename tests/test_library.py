"""The zoo as a library: a wheel installable anywhere, artifacts fetched by name from a models
URL into a cache that cannot be corrupted, every artifact pinned by its manifest's digest."""
import hashlib
import http.server
import io
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.conftest import export_fresh
from zoo import artifact, export, hub, publish, registry
from zoo.artifact import ArtifactError

ROOT = Path(__file__).resolve().parent.parent


# 1. Pins: the package carries the digest of every committed artifact.

def test_pins_match_the_committed_artifacts():
    """After a retrain the artifact's manifest changes: this fails until `make pins` is run."""
    pins = hub.read_pins()
    for name in registry.list_models():
        if not artifact.is_trained(name):
            continue
        folder = artifact.committed_dir(name)
        version = artifact.card_version(artifact.read_card(folder))
        digest = artifact.manifest_digest(folder)
        assert pins.get(name, {}).get(str(version)) == digest, \
            f"zoo/pins.json does not pin {name} version {version} ({digest}): run `make pins` and commit zoo/pins.json"
    assert set(pins) <= set(registry.list_models())


def test_committed_artifacts_without_a_version_are_version_1():
    for name in registry.list_models():
        card = artifact.committed_card(name)
        if card is not None:
            assert artifact.card_version(card) == card.get("version", 1) >= 1
    for bad in (0, -1, "2", 1.5, True):
        with pytest.raises(ArtifactError, match="version must be a whole number"):
            artifact.card_version({"name": "x", "version": bad})


def test_an_export_over_an_artifact_bumps_its_version(tmp_path):
    folder = tmp_path / "cnn_mnist"
    assert export.next_version(folder) == 1
    folder.mkdir()
    (folder / artifact.MANIFEST_NAME).write_text("")
    card = {"name": "cnn_mnist", "task": "image", "label_names": [], "metrics": {}}
    (folder / artifact.CARD_NAME).write_text(json.dumps({**card, "version": 3}))
    assert export.next_version(folder) == 4
    (folder / artifact.CARD_NAME).write_text(json.dumps(card))  # committed before versions
    assert export.next_version(folder) == 2


def test_each_export_over_an_artifact_writes_the_next_version(tmp_path):
    folder = tmp_path / "linear_mnist"
    for version in (1, 2):
        export_fresh("linear_mnist", folder)
        assert artifact.card_version(artifact.read_card(folder)) == version
        artifact.verify_manifest(folder)


# 2. Fetching by name: tiny fake artifacts, pinned by a patched pin file, served over file:// and http.

def make_artifact(folder: Path, name: str = "cnn_mnist", version: int = 1, payload: bytes = b"weights") -> Path:
    """A small folder with the artifact's required files (never loaded by TensorFlow here)."""
    (folder / "variables").mkdir(parents=True)
    for relative, content in {"saved_model.pb": b"graph", "variables/variables.index": b"index",
                              "model.weights.h5": payload, "README.md": b"# readme\n"}.items():
        (folder / relative).write_bytes(content)
    card = {"name": name, "task": "image", "label_names": [], "metrics": {}, "version": version}
    (folder / artifact.CARD_NAME).write_text(json.dumps(card))
    artifact.write_manifest(folder)
    return folder


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for info, content in members:
            if content is not None:
                info.size = len(content)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return raw.getvalue()


class Server:
    """A models folder (index.json and archives), reachable as file:// and, on demand, http://127.0.0.1."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.entries: list[dict] = []

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def publish(self, data: bytes, name: str = "cnn_mnist", version: int = 1, manifest_sha256: str = "",
                size: int | None = None, sha256: str | None = None, archive: str | None = None) -> None:
        archive = archive or f"{name}-{version}.tar.gz"
        (self.root / archive).write_bytes(data)
        self.entries.append({"name": name, "version": version, "archive": archive,
                             "sha256": sha256 or hashlib.sha256(data).hexdigest(),
                             "manifest_sha256": manifest_sha256, "size": len(data) if size is None else size})
        (self.root / "index.json").write_text(json.dumps({"format": 1, "models": self.entries}))


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """An empty checkout and cache, a models folder as ZOO_MODELS_URL, and a real-looking
    cnn_mnist version 1 artifact pinned by a patched pin file; returns (server, folder, pins)."""
    monkeypatch.setattr(artifact, "EXPORT_ROOT", tmp_path / "no-checkout")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    server = Server(tmp_path / "models")
    monkeypatch.setenv("ZOO_MODELS_URL", server.url)
    folder = make_artifact(tmp_path / "source" / "cnn_mnist")
    pins = {"cnn_mnist": {"1": artifact.manifest_digest(folder)}}
    monkeypatch.setattr(hub, "read_pins", lambda path=None: pins)
    return server, folder, pins


def assert_clean_cache():
    """Nothing a later load would trust: no cache entry and no temporary folder left."""
    root = hub.cache_root()
    leftovers = [path.name for path in root.iterdir() if not path.name.startswith(".lock-")] if root.is_dir() else []
    assert leftovers == [], leftovers


def test_a_published_artifact_is_fetched_verified_cached_and_then_used_offline(hub_env, monkeypatch):
    server, folder, pins = hub_env
    server.publish(publish.archive_bytes(folder), manifest_sha256=pins["cnn_mnist"]["1"])
    path = hub.resolve("cnn_mnist")
    assert path == hub.cache_root() / "cnn_mnist" / "1"
    assert artifact.manifest_digest(path) == pins["cnn_mnist"]["1"]
    shutil.rmtree(server.root)  # the cache serves from now on, also with the network forbidden
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert hub.resolve("cnn_mnist@1") == hub.resolve("cnn_mnist", version=1) == path


def test_offline_without_the_model_says_which_model_and_how_to_get_it(hub_env, monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("ZOO_MODELS_URL", "http://127.0.0.1:9/never-contacted")
    with pytest.raises(ArtifactError, match=r"'cnn_mnist' version 1 is not available locally .* ZOO_OFFLINE=1 "
                                            r"forbids downloading it.*ZOO_MODELS_DIR"):
        hub.resolve("cnn_mnist")
    assert_clean_cache()


def test_a_tampered_archive_is_refused(hub_env):
    server, folder, pins = hub_env
    data = bytearray(publish.archive_bytes(folder))
    honest = hashlib.sha256(data).hexdigest()
    data[len(data) // 2] ^= 0xFF
    server.publish(bytes(data), manifest_sha256=pins["cnn_mnist"]["1"], sha256=honest)
    with pytest.raises(ArtifactError, match=f"has sha256 [0-9a-f]{{64}}, but the index gives {honest}"):
        hub.resolve("cnn_mnist")
    assert_clean_cache()


def test_a_replaced_artifact_with_a_regenerated_manifest_is_refused(hub_env, tmp_path):
    server, _, pins = hub_env
    replaced = make_artifact(tmp_path / "replaced" / "cnn_mnist", payload=b"other weights")
    digest = artifact.manifest_digest(replaced)
    # An index that tells the truth about the replacement: refused before anything is downloaded.
    server.publish(publish.archive_bytes(replaced), manifest_sha256=digest)
    with pytest.raises(ArtifactError, match=f"gives manifest sha256 {digest}, but this zoo package pins "
                                            f"{pins['cnn_mnist']['1']}"):
        hub.resolve("cnn_mnist")
    assert_clean_cache()
    # An index that lies (the pinned digest beside the replacement): refused once extracted.
    server.entries.clear()
    server.publish(publish.archive_bytes(replaced), manifest_sha256=pins["cnn_mnist"]["1"])
    with pytest.raises(ArtifactError, match=f"cnn_mnist version 1 from {server.url}.*sha256 {digest}, but this "
                                            f"zoo package pins {pins['cnn_mnist']['1']}; refused"):
        hub.resolve("cnn_mnist")
    assert_clean_cache()


def test_the_same_pin_refuses_a_replaced_artifact_in_every_local_source(hub_env, tmp_path, monkeypatch):
    _, folder, pins = hub_env
    replaced = make_artifact(tmp_path / "models_dir" / "cnn_mnist", payload=b"other weights")
    monkeypatch.setenv("ZOO_MODELS_DIR", str(replaced.parent))
    with pytest.raises(ArtifactError, match=rf"cnn_mnist version 1 from \$ZOO_MODELS_DIR .*sha256 "
                                            f"{artifact.manifest_digest(replaced)}, but this zoo package pins "
                                            f"{pins['cnn_mnist']['1']}"):
        hub.resolve("cnn_mnist")
    monkeypatch.delenv("ZOO_MODELS_DIR")
    monkeypatch.setattr(artifact, "EXPORT_ROOT", replaced.parent)
    with pytest.raises(ArtifactError, match=r"from this checkout .* run `make pins`"):
        hub.resolve("cnn_mnist")
    shutil.copytree(replaced, hub.cache_root() / "cnn_mnist" / "1")
    monkeypatch.setattr(artifact, "EXPORT_ROOT", tmp_path / "no-checkout")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(ArtifactError, match="from the cache"):
        hub.resolve("cnn_mnist")
    monkeypatch.delenv("ZOO_OFFLINE")
    assert hub.resolve(replaced) == replaced  # a folder path is the caller's own: not pinned
    monkeypatch.setenv("ZOO_MODELS_DIR", str(folder.parent))
    assert hub.resolve("cnn_mnist") == folder


def test_a_damaged_cache_entry_is_fetched_again(hub_env):
    server, folder, pins = hub_env
    server.publish(publish.archive_bytes(folder), manifest_sha256=pins["cnn_mnist"]["1"])
    cached = hub.resolve("cnn_mnist")
    (cached / "model.weights.h5").write_bytes(b"flipped")
    assert hub.resolve("cnn_mnist") == cached
    hub.check_pinned(cached, "cnn_mnist", "the cache")


def evil_members(kind: str) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    info = tarfile.TarInfo({"parent": "../escaped", "absolute": "/tmp/zoo-escaped", "dotdot": "variables/../../x",
                            "symlink": "link", "hardlink": "hard", "device": "dev"}.get(kind, kind))
    content: bytes | None = b"x"
    if kind == "symlink":
        info.type, info.linkname, content = tarfile.SYMTYPE, "/etc/passwd", None
    elif kind == "hardlink":
        info.type, info.linkname, content = tarfile.LNKTYPE, "/etc/passwd", None
    elif kind == "device":
        info.type, content = tarfile.CHRTYPE, None
    return [(tarfile.TarInfo("README.md"), b"# readme\n"), (info, content)]


@pytest.mark.parametrize("kind", ["parent", "absolute", "dotdot", "symlink", "hardlink", "device"])
def test_archives_with_escaping_paths_links_or_devices_are_refused(hub_env, kind, tmp_path):
    server, _, pins = hub_env
    server.publish(tar_gz(evil_members(kind)), manifest_sha256=pins["cnn_mnist"]["1"])
    with pytest.raises(ArtifactError, match="is not a relative path inside the artifact|is a link or device"):
        hub.resolve("cnn_mnist")
    assert_clean_cache()
    assert not Path("/tmp/zoo-escaped").exists() and not (tmp_path / "escaped").exists()


def test_a_truncated_download_is_refused(hub_env):
    server, folder, pins = hub_env
    data = publish.archive_bytes(folder)
    server.publish(data[: len(data) // 2], manifest_sha256=pins["cnn_mnist"]["1"], size=len(data),
                   sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(ArtifactError, match=f"got {len(data) // 2} bytes, the index gives {len(data)}"):
        hub.resolve("cnn_mnist")
    assert_clean_cache()


def test_an_interrupted_download_leaves_nothing_trusted(hub_env):
    server, folder, pins = hub_env
    server.publish(publish.archive_bytes(folder), manifest_sha256=pins["cnn_mnist"]["1"])
    stale = hub.cache_root() / ".tmp-cnn_mnist-1-killed"  # what a killed fetch leaves
    shutil.copytree(folder, stale / "artifact")
    assert hub.resolve("cnn_mnist") == hub.cache_root() / "cnn_mnist" / "1"
    assert not stale.exists()


def test_an_index_naming_what_the_package_does_not_pin_is_refused(hub_env):
    server, folder, pins = hub_env
    server.publish(publish.archive_bytes(folder), version=7, manifest_sha256=pins["cnn_mnist"]["1"])
    server.publish(publish.archive_bytes(folder), name="mlp_mnist", manifest_sha256=pins["cnn_mnist"]["1"])
    with pytest.raises(ArtifactError, match=r"'cnn_mnist': this zoo package pins versions \[1\], got version 7"):
        hub.resolve("cnn_mnist@7")
    with pytest.raises(ArtifactError, match="'mlp_mnist' is registered but not trained: this zoo package pins no"):
        hub.resolve("mlp_mnist")
    with pytest.raises(ArtifactError, match=f"{server.url}/index.json lists no cnn_mnist version 1"):
        hub.resolve("cnn_mnist")
    assert_clean_cache()


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server (127.0.0.1 only) for a folder; yields (folder, base URL)."""
    root = tmp_path / "http"
    root.mkdir()
    handler = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *args: None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *args: handler(*args, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/models"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("field, value", [("archive", "../cnn_mnist-1.tar.gz"), ("archive", "a/b.tar.gz"),
                                          ("size", 0), ("size", hub.MAX_ARCHIVE_BYTES + 1), ("sha256", "beef")])
def test_an_index_entry_with_bad_fields_is_refused(hub_env, field, value):
    server, folder, pins = hub_env
    server.publish(publish.archive_bytes(folder), manifest_sha256=pins["cnn_mnist"]["1"])
    server.entries[0][field] = value
    (server.root / "index.json").write_text(json.dumps({"format": 1, "models": server.entries}))
    with pytest.raises(ArtifactError, match="the entry for cnn_mnist version 1 lacks a plain archive name"):
        hub.resolve("cnn_mnist")
    assert_clean_cache()


def test_http_errors_name_the_url_and_the_model(hub_env, http_server, monkeypatch):
    _, base = http_server
    monkeypatch.setenv("ZOO_MODELS_URL", base)
    with pytest.raises(ArtifactError, match=f"could not fetch {base}/index.json for model 'cnn_mnist': HTTP 404"):
        hub.resolve("cnn_mnist")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("ZOO_MODELS_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(ArtifactError, match=f"could not fetch http://127.0.0.1:{port}/index.json for model "
                                            "'cnn_mnist': .*refused"):
        hub.resolve("cnn_mnist")
    assert_clean_cache()


def test_a_server_that_never_answers_times_out_naming_the_url(hub_env, monkeypatch):
    with socket.socket() as silent:  # accepts connections (the backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("ZOO_MODELS_URL", base)
        monkeypatch.setattr(hub, "TIMEOUT_S", 0.5)
        with pytest.raises(ArtifactError, match=f"{base}/index.json.*'cnn_mnist'.*timed out"):
            hub.resolve("cnn_mnist")
    assert_clean_cache()


def test_a_published_archive_downloads_over_http(hub_env, http_server, monkeypatch):
    _, folder, pins = hub_env
    root, base = http_server
    server = Server(root / "models")
    server.publish(publish.archive_bytes(folder), manifest_sha256=pins["cnn_mnist"]["1"])
    monkeypatch.setenv("ZOO_MODELS_URL", base)
    assert hub.resolve("cnn_mnist") == hub.cache_root() / "cnn_mnist" / "1"


def fetch_in_child(queue, pins):
    hub.read_pins = lambda path=None: pins  # the fork keeps the test's patches; restated for spawn safety
    try:
        queue.put(str(hub.resolve("cnn_mnist")))
    except Exception as error:  # reported to the parent
        queue.put(f"error: {error}")


def test_two_processes_fetching_the_same_model_leave_one_good_entry(hub_env):
    server, folder, pins = hub_env
    server.publish(publish.archive_bytes(folder), manifest_sha256=pins["cnn_mnist"]["1"])
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=fetch_in_child, args=(queue, pins)) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=60) for _ in children]
    for child in children:
        child.join(60)
    expected = str(hub.cache_root() / "cnn_mnist" / "1")
    assert results == [expected, expected]
    assert sorted(path.name for path in (hub.cache_root() / "cnn_mnist").iterdir()) == ["1"]
    assert_clean_cache_but(["cnn_mnist"])
    hub.check_pinned(Path(expected), "cnn_mnist", "the cache")


def assert_clean_cache_but(names):
    root = hub.cache_root()
    assert sorted(path.name for path in root.iterdir() if not path.name.startswith(".lock-")) == names


# 3. The real artifacts: packaged, fetched by name, served.

@pytest.fixture(scope="module")
def packaged_cnn(tmp_path_factory):
    """dist/models with cnn_mnist alone, packaged from this checkout into a temporary folder."""
    output = tmp_path_factory.mktemp("dist") / "models"
    original = publish.trained_models
    publish.trained_models = lambda: ["cnn_mnist"]
    try:
        publish.package(output)
    finally:
        publish.trained_models = original
    return output


def test_package_writes_reproducible_archives_and_an_index(packaged_cnn, tmp_path, monkeypatch):
    index = json.loads((packaged_cnn / "index.json").read_text())
    [entry] = index["models"]
    archive = packaged_cnn / "cnn_mnist-1.tar.gz"
    assert entry == {"name": "cnn_mnist", "version": 1, "archive": "cnn_mnist-1.tar.gz",
                     "sha256": artifact.sha256_file(archive), "size": archive.stat().st_size,
                     "manifest_sha256": hub.read_pins()["cnn_mnist"]["1"], "metric": entry["metric"]}
    assert entry["metric"]["name"] == "test_accuracy" and entry["metric"]["value"] > 0.99
    assert publish.archive_bytes(artifact.committed_dir("cnn_mnist")) == archive.read_bytes()
    # fetched by name from there, with the checkout out of the way, and loaded
    monkeypatch.setattr(artifact, "EXPORT_ROOT", tmp_path / "no-checkout")
    monkeypatch.setenv("ZOO_MODELS_URL", packaged_cnn.as_uri())
    model = zoo.load("cnn_mnist")
    assert model.predict(np.zeros([2, 28, 28, 1], np.uint8)).class_id.shape == (2,)
    assert zoo.get_model("cnn_mnist", pretrained=True).count_params() == registry.get("cnn_mnist").parameter_count


def test_export_serving_writes_tf_servings_layout(tmp_path):
    [written] = publish.export_serving(tmp_path / "serving", ["cnn_mnist"])
    assert written == tmp_path / "serving" / "cnn_mnist" / "1"
    assert {path.name for path in written.iterdir()} >= {"saved_model.pb", "variables"}
    loaded = tf.saved_model.load(str(written))
    out = loaded.signatures["serving_default"](image=tf.zeros([1, 28, 28, 1], tf.uint8))
    assert out["class_id"].shape == (1,)
    publish.export_serving(tmp_path / "serving", ["cnn_mnist"])  # again: replaced whole
    assert not [path for path in written.parent.iterdir() if path.name.startswith(".tmp-")]


@pytest.mark.parametrize("name", [name for name in registry.list_models() if hub.pinned_versions(name)])
def test_pretrained_models_save_and_load_as_keras_files(name, tmp_path):
    """Custom layers (ReversibleEmbedding, BatchNormalization, PadShortcut, Perceptron) are registered
    Keras serializables: a .keras file loads with keras.saving alone once zoo is imported."""
    model = zoo.get_model(name, pretrained=True)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")  # safe_mode: no Python lambdas inside
    assert type(loaded) is type(model)
    assert [weight.path for weight in loaded.weights] == [weight.path for weight in model.weights]
    for mine, theirs in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    shape = [2] + [size or 7 for size in model.inputs[0].shape[1:]]
    inputs = np.ones(shape, "int32" if "int" in str(model.inputs[0].dtype) else model.inputs[0].dtype)
    np.testing.assert_array_equal(model.predict(inputs, verbose=0), loaded.predict(inputs, verbose=0))


# 4. The wheel, installed in a fresh virtual environment, run from elsewhere.

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Inference with the core dependencies only: importing the extras' tfds or matplotlib fails.
CORE_ONLY = textwrap.dedent("""
    import sys
    class Absent:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow_datasets", "matplotlib"):
                raise ModuleNotFoundError(f"No module named {name!r}")
    sys.meta_path.insert(0, Absent())
""")
USE_FROM_ANYWHERE = CORE_ONLY + textwrap.dedent("""
    import sys, numpy as np, zoo
    assert zoo.__file__.startswith(sys.prefix), zoo.__file__
    result = zoo.load("cnn_mnist").predict(np.zeros([2, 28, 28, 1], np.uint8))
    words = zoo.load("lstm_ptb").next_words("the stock market", k=3)
    print("OK", list(result.class_id), [word for word, _ in words])
""")


def test_inference_needs_neither_tfds_nor_matplotlib(tmp_path):
    """The core install (no `data` or `train` extra) loads and predicts; evaluating, which reads
    the real data, says which extra it needs."""
    script = tmp_path / "core.py"
    script.write_text(CORE_ONLY + textwrap.dedent("""
        import numpy as np, zoo
        print("OK", list(zoo.load("cnn_mnist").predict(np.zeros([2, 28, 28, 1], np.uint8)).class_id),
              len(zoo.load("lstm_ptb").next_words("the stock market", k=3)))
        try:
            zoo.evaluate("lstm_ptb")
        except ImportError as error:
            print("ERROR", error)
    """))
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ok, error = result.stdout.splitlines()[-2:]
    assert ok.startswith("OK [") and ok.endswith(" 3")
    assert error.startswith("ERROR evaluate('lstm_ptb') reads the real data") and "pip install 'zoo[data]'" in error


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_venv_and_fetches_models_by_name(tmp_path):
    source = tmp_path / "source"  # the build writes build/ and *.egg-info beside the sources, so a copy
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, source / name)
    shutil.copytree(ROOT / "zoo", source / "zoo", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)], check=True)
    [wheel] = (tmp_path / "dist").glob("zoo-*-py3-none-any.whl")
    # nothing of this checkout on the path: the venv sees the wheel and the pinned dependencies only
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PYTHONPATH", "ZOO_MODELS_DIR", "ZOO_OFFLINE", "VIRTUAL_ENV")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=environment)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True, env=environment).stdout.strip())
    # the pinned dependencies: this interpreter's, after the venv's own packages (the wheel's zoo first)
    (site / "pinned_dependencies.pth").write_text(sysconfig.get_paths(vars={"base": sys.prefix})["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-index", str(wheel)], check=True, cwd=tmp_path, env=environment)
    assert (site / "zoo" / "pins.json").is_file() and not (site / "training").exists()

    models = tmp_path / "models"
    original = publish.trained_models
    publish.trained_models = lambda: ["cnn_mnist", "lstm_ptb"]
    try:
        publish.package(models)
    finally:
        publish.trained_models = original
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                               str(models), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "use.py").write_text(USE_FROM_ANYWHERE)
    environment.update(ZOO_CACHE_DIR=str(tmp_path / "cache"), ZOO_MODELS_URL=f"http://127.0.0.1:{port}",
                       HOME=str(tmp_path / "home"))
    try:
        deadline = time.monotonic() + 30
        while True:  # until the server answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.2)
        online = subprocess.run([str(python), "use.py"], cwd=elsewhere, env=environment, capture_output=True,
                                text=True, timeout=600)
        assert online.returncode == 0, online.stderr[-3000:]
    finally:
        server.terminate()
        server.wait(10)
    offline = subprocess.run([str(python), "use.py"], cwd=elsewhere, env={**environment, "ZOO_OFFLINE": "1"},
                             capture_output=True, text=True, timeout=600)
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert offline.stdout.splitlines()[-1] == online.stdout.splitlines()[-1]
    assert online.stdout.splitlines()[-1].startswith("OK")
    assert sorted(path.name for path in (tmp_path / "cache" / "models").iterdir()
                  if not path.name.startswith(".")) == ["cnn_mnist", "lstm_ptb"]
