"""The artifact format: where an artifact lives, how a name resolves to it, its model card and
its MANIFEST.sha256 (the sha256 of every other file, checked before anything is loaded).

An artifact folder holds a SavedModel (saved_model.pb, variables/, assets/), model.weights.h5,
model_card.json, README.md, training_curve.png and MANIFEST.sha256.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Iterable

from tensorflow.core.protobuf import saved_model_pb2

from zoo import registry

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPORT_ROOT = REPO_ROOT / "exported_models"
MANIFEST_NAME = "MANIFEST.sha256"
CARD_NAME = "model_card.json"
# Every artifact has these; `zoo verify` and `zoo.load` refuse a folder without one.
REQUIRED_FILES = ("saved_model.pb", "variables/variables.index", CARD_NAME, "model.weights.h5", "README.md")
NAME_PATTERN = re.compile(r"^[a-z0-9_]+$")  # model names, as read from a card (they become cache paths)
# The card's keys and their types; `zoo verify` checks committed cards against them.
CARD_KEYS = {"name": str, "task": str, "metrics": dict, "parameter_count": int, "label_names": list,
             "model_config": dict, "recipe": dict, "dataset": dict, "preprocessing": str,
             "signatures": dict, "training": dict, "versions": dict, "created": str}


def cache_dir() -> Path:
    """The zoo's cache (conversions): $ZOO_CACHE_DIR, else ~/.cache/zoo."""
    return Path(os.environ.get("ZOO_CACHE_DIR") or Path.home() / ".cache" / "zoo").expanduser()


class ArtifactError(ValueError):
    """An artifact folder is missing, not a zoo artifact, or fails its manifest."""


def export_dir(name: str) -> Path:
    """Where `make train-<name>` writes the registered model's artifact: exported_models/<name>/."""
    return EXPORT_ROOT / registry.get(name).name


def is_artifact(folder: Path) -> bool:
    """Whether `folder` looks like a zoo artifact (a manifest and a card), verified or not."""
    return all((folder / name).is_file() and not (folder / name).is_symlink() for name in (MANIFEST_NAME, CARD_NAME))


def committed_dir(name: str) -> Path:
    """Where the registered model `name`'s artifact lives in this checkout. After a crash between
    the two renames of an export (zoo.export.replace_directory), the previous artifact, still
    whole under its temporary name, is the one in place until the next export restores it."""
    folder = export_dir(name)
    previous = interrupted_export(folder)
    return previous if not folder.exists() and previous.is_dir() else folder


def interrupted_export(folder: Path) -> Path:
    """The name an export gives the artifact it replaces, until the new one is in place."""
    return folder.parent / f".old-{folder.name}"


def is_trained(name: str) -> bool:
    return committed_dir(name).is_dir()


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A registry name -> its committed artifact folder; anything else is taken as a folder path."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"expected a model name or artifact folder path, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    if text in registry.list_models():
        path = committed_dir(text)
        if not path.is_dir():
            raise ArtifactError(f"model {text!r} is registered but not trained: no artifact at {path}; "
                                f"run `make train-{text}`")
        return path
    path = Path(text)
    if not path.is_dir():
        raise ArtifactError(f"{text!r} is neither a registered model ({', '.join(registry.list_models())}) "
                            "nor an artifact folder")
    return path


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The model card of the artifact folder `path` (its manifest is not checked here): a JSON
    object whose `name` matches NAME_PATTERN and whose `task`, `label_names` and `metrics` have
    the card's types."""
    card_path = Path(path) / CARD_NAME
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{path}: not a zoo artifact ({CARD_NAME} unreadable: {error})") from None
    if not isinstance(card, dict):
        raise ArtifactError(f"{card_path}: expected a JSON object, got {type(card).__name__}")
    for key, kind in (("name", str), ("task", str), ("label_names", list), ("metrics", dict)):
        if not isinstance(card.get(key), kind):
            raise ArtifactError(f"{card_path}: expected {key!r} to be a {kind.__name__}, got {card.get(key)!r:.80}")
    if not NAME_PATTERN.match(card["name"]):
        raise ArtifactError(f"{card_path}: model name must match {NAME_PATTERN.pattern}, got {card['name']!r:.80}")
    if not all(isinstance(label, str) for label in card["label_names"]):
        raise ArtifactError(f"{card_path}: label_names must be strings")
    return card


def committed_card(name: str) -> dict[str, Any] | None:
    """The committed artifact's card for the registered model `name`; None if untrained."""
    return read_card(committed_dir(name)) if is_trained(name) else None


def card_value(spec: registry.ModelSpec, card: dict[str, Any]) -> float:
    """The test metric the bar judges, from a card of `spec`'s model."""
    return float(card["metrics"][spec.metric_key]["value"])


def committed_value(spec: registry.ModelSpec) -> float | None:
    """The committed artifact's test metric (the one the bar judges); None if untrained."""
    card = committed_card(spec.name)
    return None if card is None else card_value(spec, card)


def card_version(card: dict[str, Any]) -> int:
    """The artifact's published version: the card's `version`, a whole number >= 1; artifacts
    made before versions existed have none and are version 1 (their bytes stay as committed)."""
    version = card.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ArtifactError(f"{card.get('name')}: card version must be a whole number >= 1, got {version!r:.40}")
    return version


def manifest_digest(root: str | os.PathLike) -> str:
    """sha256 of the artifact's MANIFEST.sha256: one digest for the whole artifact (what zoo/pins.json pins)."""
    return sha256_file(Path(root) / MANIFEST_NAME)


def sha256_bytes(data: bytes) -> str:
    """sha256 of bytes already read: what is checked is what is then used."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _artifact_files(root: Path) -> list[str]:
    """Relative POSIX paths of every file below root except the manifest. Only regular files and
    folders may be there: links, FIFOs, sockets and devices are refused by their lstat, before
    anything is opened (opening a FIFO would block)."""
    files = []

    def refuse(error: OSError) -> None:
        raise ArtifactError(f"{root}: cannot list {error.filename}: {error.strerror}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=refuse, followlinks=False):
        for entry in dirnames + filenames:
            path = Path(dirpath) / entry
            relative = path.relative_to(root).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise ArtifactError(f"{root}: {relative} is a symbolic link; an artifact holds only files")
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise ArtifactError(f"{root}: {relative} is not a regular file (a FIFO, socket or device); "
                                    "an artifact holds only files and folders")
            if stat.S_ISREG(mode) and relative != MANIFEST_NAME:
                files.append(relative)
    return sorted(files)


def write_manifest(root: Path) -> Path:
    lines = [f"{sha256_file(root / name)}  {name}\n" for name in _artifact_files(root)]
    manifest = root / MANIFEST_NAME
    manifest.write_text("".join(lines))
    return manifest


def verify_manifest(root: str | os.PathLike) -> None:
    """Raise ArtifactError naming the first file that is changed, missing, unlisted or not a
    regular file, or a required file (REQUIRED_FILES) that is absent."""
    root = Path(root)
    if not root.is_dir():
        raise ArtifactError(f"{root}: not an artifact folder")
    present = set(_artifact_files(root))  # first: refuses links and FIFOs before any open
    manifest = root / MANIFEST_NAME
    if not manifest.is_file() or manifest.is_symlink():
        raise ArtifactError(f"{root}: not a zoo artifact (no {MANIFEST_NAME})")
    try:
        text = manifest.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ArtifactError(f"{manifest}: expected UTF-8 text, got byte {error.object[error.start]:#x} "
                            f"at offset {error.start}") from None
    expected: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        digest, _, name = line.partition("  ")
        if not re.fullmatch(r"[0-9a-f]{64}", digest) or not name:
            raise ArtifactError(f"{manifest}: line {number}: expected '<sha256>  <file>', got {line!r:.100}")
        if name in expected:
            raise ArtifactError(f"{manifest}: line {number}: {name!r} is listed twice")
        expected[name] = digest
    for name in REQUIRED_FILES:
        if name != MANIFEST_NAME and name not in present:
            raise ArtifactError(f"{root}: required file {name} is missing")
    for name in sorted(present - set(expected)):
        raise ArtifactError(f"{root}: file {name} is not listed in {MANIFEST_NAME}")
    for name, digest in sorted(expected.items()):
        if name not in present:
            raise ArtifactError(f"{root}: file {name} listed in {MANIFEST_NAME} is missing")
        if sha256_file(root / name) != digest:
            raise ArtifactError(f"{root}: file {name} does not match its sha256 in {MANIFEST_NAME} "
                                "(modified or truncated)")


def card_problems(card: dict[str, Any], spec: registry.ModelSpec) -> list[str]:
    """What is wrong with a committed card for the registered model `spec` (empty: nothing)."""
    problems = [f"card key {key!r} missing or not a {kind.__name__}"
                for key, kind in CARD_KEYS.items() if not isinstance(card.get(key), kind)]
    if problems:
        return problems
    if card["name"] != spec.name:
        problems.append(f"card name {card['name']!r} != registry name {spec.name!r}")
    if card["parameter_count"] != spec.parameter_count:
        problems.append(f"card parameter_count {card['parameter_count']} != registry {spec.parameter_count}")
    for key, entry in card["metrics"].items():
        if not {"value", "split", "examples"} <= set(entry):
            problems.append(f"metric {key!r} lacks value/split/examples")
    if spec.metric_key not in card["metrics"]:
        problems.append(f"card has no {spec.metric_key}")
    if "previous" in card and not _is_previous(card["previous"]):
        problems.append("card previous must be {'version': a whole number >= 1, 'metrics': {name: number}}, "
                        f"got {card['previous']!r:.80}")
    return problems


def _is_previous(previous: Any) -> bool:
    """The shape of a card's `previous` (training.cards.previous_artifact)."""
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return (isinstance(previous, dict) and isinstance(previous.get("version"), int)
            and not isinstance(previous["version"], bool) and previous["version"] >= 1
            and isinstance(previous.get("metrics"), dict) and all(map(number, previous["metrics"].values())))


# The operations the zoo's own exports use (tests/test_artifact_safety.py exports every registered
# model and checks it needs nothing more). Nothing that writes or lists files, runs Python or
# reaches the network is here; InitializeTableFromTextFileV2 reads the artifact's own
# assets/vocab.txt into the language models' lookup tables.
ALLOWED_OPS = frozenset({
    "Add", "AddV2", "All", "AnonymousHashTable", "ArgMax", "Assert", "AssignVariableOp", "BiasAdd",
    "BroadcastTo", "Cast", "ConcatV2", "Const", "Conv2D", "Cumsum", "DenseBincount", "Equal", "Erf",
    "Exp", "ExpandDims", "Fill", "FloorDiv", "GatherV2", "Greater", "Identity", "If",
    "InitializeTableFromTextFileV2", "IsFinite", "Less", "LessEqual", "Log", "LogSoftmax", "LogicalAnd",
    "LookupTableFindV2", "MatMul", "Max", "MaxPool", "Maximum", "Mean", "Minimum", "MirrorPad", "Mul", "Neg",
    "NoOp", "NotEqual", "Pack", "Pad", "Placeholder", "Prod", "RaggedGather", "RaggedTensorToTensor", "Range",
    "ReadVariableOp", "RealDiv", "Relu", "Reshape", "ReverseV2", "Rsqrt", "SelectV2", "Shape", "Sigmoid",
    "Size", "Softmax", "SparseSoftmaxCrossEntropyWithLogits", "Split", "SplitV", "Sqrt", "Squeeze",
    "StatefulPartitionedCall", "StaticRegexReplace", "StopGradient", "StridedSlice", "StringLower", "StringSplitV2",
    "StringStrip", "Sub", "Sum", "Tanh", "TensorListFromTensor", "TensorListGetItem",
    "TensorListReserve", "TensorListSetItem", "TensorListStack", "Tile", "TopKV2", "Transpose",
    "UnsortedSegmentSum", "VarHandleOp", "VarIsInitializedOp", "Where", "While", "ZerosLike",
})
# The SavedModel's own checkpoint functions (its saver_def: used by TF1-style loaders, never by
# tf.saved_model.load, which restores variables itself) may also use these, and nothing else may.
SAVER_OPS = frozenset({"DisableCopyOnRead", "MergeV2Checkpoints", "RestoreV2", "SaveV2", "Select",
                       "ShardedFilename", "StaticRegexFullMatch", "StringJoin"})


def _called_functions(nodes: Iterable[Any]) -> set[str]:
    """Names of the functions that graph nodes call (StatefulPartitionedCall's f, While's body, ...)."""
    names = set()
    for node in nodes:
        for value in node.attr.values():
            if value.HasField("func"):
                names.add(value.func.name)
            if value.HasField("list"):
                names.update(function.name for function in value.list.func)
    return names


def check_operations(root: str | os.PathLike) -> None:
    """Read saved_model.pb (without running anything) and raise ArtifactError naming the first
    operation outside ALLOWED_OPS: loading a SavedModel runs its graph (initialisers, restored
    functions), so an artifact's graph is checked before tf.saved_model.load."""
    path = Path(root) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(path.read_bytes())
    except Exception as error:  # protobuf's DecodeError and friends, whatever the damage
        raise ArtifactError(f"{path}: not a SavedModel ({type(error).__name__}: {error})") from None
    for meta_graph in saved_model.meta_graphs:
        library = {function.signature.name: function for function in meta_graph.graph_def.library.function}

        def reachable(roots: set[str]) -> set[str]:
            seen: set[str] = set()
            stack = list(roots)
            while stack:
                name = stack.pop()
                if name in seen or name not in library:
                    continue
                seen.add(name)
                stack.extend(_called_functions(library[name].node_def))
            return seen

        nodes = {node.name: node for node in meta_graph.graph_def.node}
        saver_def = meta_graph.saver_def
        saver_nodes = {name for name in (saver_def.save_tensor_name.split(":")[0], saver_def.restore_op_name)
                       if name in nodes}
        for node in meta_graph.graph_def.node:  # nothing but the saver may use the saver's nodes
            if node.name not in saver_nodes and {i.lstrip("^").split(":")[0] for i in node.input} & saver_nodes:
                raise ArtifactError(f"{path}: node {node.name!r} uses the checkpoint-writing saver; "
                                    "refused (zoo.load(..., trust=True) skips this check)")
        for signature in meta_graph.signature_def.values():
            for tensor in list(signature.inputs.values()) + list(signature.outputs.values()):
                if tensor.name.split(":")[0] in saver_nodes:
                    raise ArtifactError(f"{path}: a signature reads the checkpoint-writing saver; refused")
        saver_only = reachable(_called_functions(nodes[name] for name in saver_nodes))
        others = reachable(_called_functions(node for name, node in nodes.items() if name not in saver_nodes)
                           | set(meta_graph.object_graph_def.concrete_functions) | (set(library) - saver_only))
        saver_only -= others
        located = [(node.op, "the graph") for node in meta_graph.graph_def.node]
        located += [(node.op, f"function {name}") for name, function in library.items() for node in function.node_def]
        for op, where in located:
            allowed = ALLOWED_OPS | SAVER_OPS if where.removeprefix("function ") in saver_only else ALLOWED_OPS
            if op not in allowed:
                raise ArtifactError(f"{path}: operation {op!r} (in {where}) is not one the zoo's models use; "
                                    "refused before loading. Load it with zoo.load(..., trust=True) only if "
                                    "you trust where it came from")


def verify_all(names: list[str] | None = None) -> list[str]:
    """`zoo verify`: every committed artifact's manifest, card and graph operations, as zoo.load
    checks them; returns the problems found."""
    problems = []
    for name in names or registry.list_models():
        if not is_trained(name):
            continue  # not trained: nothing to verify
        folder = committed_dir(name)
        try:
            verify_manifest(folder)
            card = read_card(folder)
            check_operations(folder)
        except ArtifactError as error:
            problems.append(f"{name}: {error}")
            continue
        problems.extend(f"{name}: {problem}" for problem in card_problems(card, registry.get(name)))
    return problems
