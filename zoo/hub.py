"""Pretrained artifacts by name, pinned by digest: name -> folder, from wherever it is.

A name resolves, in this order, to: $ZOO_MODELS_DIR/<name> (if set), this checkout's
exported_models/<name> (when running from the repository), the cache
(<cache>/models/<name>/<version>, zoo.artifact.cache_dir) and last a download from
$ZOO_MODELS_URL (default DEFAULT_MODELS_URL) into the cache. Whatever the source, the artifact's
MANIFEST.sha256 must hash to the digest this package pins for that model and version
(zoo/pins.json): a replaced artifact with a regenerated manifest is refused. A folder path given
explicitly is the caller's own and is not pinned.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from tqdm import tqdm

from zoo import artifact, registry
from zoo.artifact import ArtifactError

PINS_PATH = Path(__file__).resolve().parent / "pins.json"
# Where the project publishes `make package`'s dist/models (index.json and the archives, as
# release assets); $ZOO_MODELS_URL points elsewhere (a mirror, file:///path/to/models).
DEFAULT_MODELS_URL = "https://github.com/zoo-models/zoo/releases/download/models"
INDEX_NAME = "index.json"
TIMEOUT_S = 30.0  # per network operation (connect, each read)
MAX_ARCHIVE_BYTES = 2 << 30  # a published archive larger than this is refused before download
MAX_ARTIFACT_BYTES = 4 << 30  # and so is one whose files add up to more than this
MAX_MEMBERS = 10_000
VERSIONED_NAME = re.compile(r"^([a-z0-9_]+)@([0-9]+)$")


class DownloadError(ArtifactError):
    """A published artifact could not be fetched or failed its checks; nothing was cached."""


def read_pins(path: Path = PINS_PATH) -> dict[str, dict[str, str]]:
    """name -> {version: sha256 of that version's MANIFEST.sha256}, as this package pins them."""
    try:
        pins = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{path}: expected the package's pin file (JSON), got {error}") from None
    if not isinstance(pins, dict) or not all(isinstance(versions, dict) for versions in pins.values()):
        raise ArtifactError(f"{path}: expected {{name: {{version: sha256}}}}")
    return pins


def pinned_versions(name: str) -> dict[int, str]:
    return {int(version): digest for version, digest in read_pins().get(name, {}).items()}


def split_name(text: str) -> tuple[str, int | None]:
    """'cnn_mnist@2' -> ('cnn_mnist', 2); 'cnn_mnist' -> ('cnn_mnist', None)."""
    match = VERSIONED_NAME.match(text)
    return (match.group(1), int(match.group(2))) if match else (text, None)


def is_model_name(name_or_path: str | os.PathLike) -> bool:
    """Whether zoo.load takes this as a registry name (optionally name@version), not a folder path."""
    return isinstance(name_or_path, (str, os.PathLike)) and \
        split_name(os.fspath(name_or_path))[0] in registry.list_models()


def models_url() -> str:
    return (os.environ.get("ZOO_MODELS_URL") or DEFAULT_MODELS_URL).rstrip("/")


def offline() -> bool:
    return os.environ.get("ZOO_OFFLINE", "") not in ("", "0")


def cache_root() -> Path:
    """Downloaded artifacts: <cache>/models/<name>/<version>/."""
    return artifact.cache_dir() / "models"


def resolve(name_or_path: str | os.PathLike, version: int | None = None) -> Path:
    """A registry name (or 'name@version') -> its pinned, verified artifact folder (see the module
    doc for where it is looked for); anything else is a folder path, returned as given."""
    if is_model_name(name_or_path):
        name, named_version = split_name(os.fspath(name_or_path))
        if named_version is not None and version is not None and named_version != version:
            raise ValueError(f"{name_or_path!r} names version {named_version} but version={version} was given")
        return locate(name, named_version if named_version is not None else version)
    if version is not None:
        raise ValueError(f"version= selects a published version of a registered model; "
                         f"{os.fspath(name_or_path)!r} is a folder path")
    return artifact.resolve(name_or_path)


def locate(name: str, version: int | None = None) -> Path:
    """The artifact of registered model `name` (the newest pinned version unless `version`)."""
    spec = registry.get(name)
    pins = pinned_versions(spec.name)
    if not pins:
        raise ArtifactError(f"model {name!r} is registered but not trained: this zoo package pins no published "
                            f"artifact (no trained weights) for it; run `make train-{name}` in the repository")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise TypeError(f"version must be a whole number, got {version!r}")
    if version is not None and version not in pins:
        raise ArtifactError(f"model {name!r}: this zoo package pins versions {sorted(pins)}, got version {version}")
    wanted = version if version is not None else max(pins)
    local = []
    if os.environ.get("ZOO_MODELS_DIR"):
        local.append(("$ZOO_MODELS_DIR", Path(os.environ["ZOO_MODELS_DIR"]).expanduser() / name))
    if artifact.EXPORT_ROOT.is_dir():
        local.append(("this checkout", artifact.committed_dir(name)))
    for source, folder in local:
        if folder.is_dir() and (version is None or artifact.card_version(artifact.read_card(folder)) == version):
            return check_pinned(folder, name, source)
    cached = cache_root() / name / str(wanted)
    if cached.is_dir():
        try:
            return check_pinned(cached, name, "the cache")
        except ArtifactError:
            if offline():
                raise
            # a damaged cache entry is the cache's own: download() replaces it under the lock
    return download(name, wanted)


def check_pinned(folder: Path, name: str, source: str) -> Path:
    """Verify the artifact at `folder` (manifest, card, name) and that its manifest hashes to the
    pin for its version; ArtifactError naming the model, the source and both digests otherwise."""
    artifact.verify_manifest(folder)
    card = artifact.read_card(folder)
    if card["name"] != name:
        raise ArtifactError(f"{folder}: its card names model {card['name']!r}, but it is loaded as {name!r}")
    version = artifact.card_version(card)
    pins = pinned_versions(name)
    hint = "; if you retrained it here, run `make pins`" if source == "this checkout" else ""
    if version not in pins:
        raise ArtifactError(f"{name} version {version} from {source} ({folder}) is not pinned by this zoo package "
                            f"(it pins versions {sorted(pins)}){hint}")
    digest = artifact.manifest_digest(folder)
    if digest != pins[version]:
        raise ArtifactError(f"{name} version {version} from {source} ({folder}): {artifact.MANIFEST_NAME} has "
                            f"sha256 {digest}, but this zoo package pins {pins[version]}; refused{hint}")
    return folder


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive fcntl lock on `path` (made if absent): one process fetches, the others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def download(name: str, version: int) -> Path:
    """Fetch `name` version `version` from $ZOO_MODELS_URL into the cache and return its folder.
    The archive goes to a temporary folder, is checked (size and sha256 from the index, safe
    members), extracted, checked against the pin, and only then renamed into place, all under a
    lock: an interrupted or refused download leaves nothing a later load would trust."""
    root = cache_root()
    final = root / name / str(version)
    base = models_url()
    if offline():
        raise DownloadError(f"model {name!r} version {version} is not available locally (not in $ZOO_MODELS_DIR, "
                            f"this checkout or the cache {final}) and ZOO_OFFLINE=1 forbids downloading it: run "
                            f"zoo.load({name!r}) once online (from {base}), or copy its artifact folder to "
                            f"$ZOO_MODELS_DIR/{name}")
    with file_lock(root / f".lock-{name}-{version}"):
        for stale in root.glob(f".tmp-{name}-{version}-*"):  # left by an interrupted fetch; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        if final.is_dir():  # another process fetched it while this one waited
            try:
                return check_pinned(final, name, "the cache")
            except ArtifactError:
                shutil.rmtree(final)  # the cache's own copy, damaged: fetch it again
        entry = index_entry(base, name, version)
        pinned = pinned_versions(name)[version]
        if entry["manifest_sha256"] != pinned:
            raise DownloadError(f"{name} version {version}: the index at {base}/{INDEX_NAME} gives manifest sha256 "
                                f"{entry['manifest_sha256']}, but this zoo package pins {pinned}; refused")
        work = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-{version}-", dir=root))
        try:
            archive = work / "archive.tar.gz"
            url = f"{base}/{entry['archive']}"
            fetch(url, archive, entry["size"], name)
            digest = artifact.sha256_file(archive)
            if digest != entry["sha256"]:
                raise DownloadError(f"{name} version {version}: {url} has sha256 {digest}, but the index gives "
                                    f"{entry['sha256']}; refused, nothing cached")
            folder = work / "artifact"
            extract(archive, folder, name, url)
            check_pinned(folder, name, url)
            folder.chmod(0o755)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(folder, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def open_url(url: str, name: str) -> Any:
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT_S)  # noqa: S310 (http, https and file by design)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"could not fetch {url} for model {name!r}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"could not fetch {url} for model {name!r}: {reason} (set ZOO_MODELS_URL to a "
                            "reachable mirror, or ZOO_MODELS_DIR to a folder of artifacts)") from None


def index_entry(base: str, name: str, version: int) -> dict[str, Any]:
    """The index's entry for `name` `version`, its fields checked."""
    url = f"{base}/{INDEX_NAME}"
    with open_url(url, name) as response:
        try:
            index = json.loads(response.read(16 << 20))
        except (OSError, ValueError) as error:
            raise DownloadError(f"{url}: expected the model index (JSON), got {error}") from None
    entries = index.get("models") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise DownloadError(f"{url}: expected {{'models': [...]}}, got {str(index)[:80]!r}")
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name and entry.get("version") == version:
            archive = entry.get("archive")
            if not (isinstance(archive, str) and re.fullmatch(r"[A-Za-z0-9_@-][A-Za-z0-9_.@-]*", archive)
                    and isinstance(entry.get("size"), int) and 0 < entry["size"] <= MAX_ARCHIVE_BYTES
                    and all(isinstance(entry.get(key), str) and re.fullmatch(r"[0-9a-f]{64}", entry[key])
                            for key in ("sha256", "manifest_sha256"))):
                raise DownloadError(f"{url}: the entry for {name} version {version} lacks a plain archive name, "
                                    f"a size <= {MAX_ARCHIVE_BYTES} or sha256 digests: {str(entry)[:200]}")
            return entry
    raise DownloadError(f"{url} lists no {name} version {version}; is ZOO_MODELS_URL the right mirror?")


def fetch(url: str, destination: Path, size: int, name: str) -> None:
    """Download exactly `size` bytes of `url` to `destination`, with a progress bar."""
    received = 0
    with open_url(url, name) as response, open(destination, "wb") as out, \
            tqdm(total=size, unit="B", unit_scale=True, desc=f"{name}", leave=False, disable=None) as bar:
        try:
            while block := response.read(min(1 << 20, size + 1 - received)):
                received += len(block)
                if received > size:
                    break
                out.write(block)
                bar.update(len(block))
        except (OSError, TimeoutError) as error:
            raise DownloadError(f"download of {url} for model {name!r} failed after {received} bytes: {error}; "
                                "nothing cached") from None
    if received != size:
        raise DownloadError(f"download of {url} for model {name!r}: got {received} bytes, the index gives {size} "
                            "(truncated or replaced); nothing cached")


def extract(archive: Path, destination: Path, name: str, url: str) -> None:
    """Extract an artifact archive whose members are all plain relative files and folders (no
    absolute paths, `..`, links or devices), within the size limits; tarfile's "data" filter too."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = []
            total = 0
            for member in tar:
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts or member.name.startswith("/"):
                    raise DownloadError(f"{url} ({name}): archive member {member.name!r} is not a relative path "
                                        "inside the artifact; refused, nothing cached")
                if not (member.isfile() or member.isdir()):
                    raise DownloadError(f"{url} ({name}): archive member {member.name!r} is a link or device; an "
                                        "artifact holds only files and folders; refused, nothing cached")
                total += member.size
                members.append(member)
                if total > MAX_ARTIFACT_BYTES or len(members) > MAX_MEMBERS:
                    raise DownloadError(f"{url} ({name}): archive holds more than {MAX_ARTIFACT_BYTES} bytes or "
                                        f"{MAX_MEMBERS} files; refused")
            destination.mkdir()
            tar.extractall(destination, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DownloadError(f"{url} ({name}): not a readable artifact archive ({error}); refused, nothing cached") \
            from None
