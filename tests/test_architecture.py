"""The project's shape: data flows one way (training -> zoo), the registry is a leaf, and no
module of the project imports another in a circle, at module level or from inside a function."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("zoo", "training")


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def project_imports(path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """(imported project module, imported inside a function?) for every import in `path`."""
    tree = ast.parse(path.read_text())
    local = {id(node) for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
             for node in ast.walk(function) if node is not function}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from zoo import registry` imports the module zoo.registry; `from zoo.x import f` zoo.x
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                     for alias in node.names]
        for name in names:
            if name in known:
                found.append((name, id(node) in local))
    return found


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """module -> project modules it imports; and the function-local imports found."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    local = []
    for name, path in known.items():
        for target, inside_function in project_imports(path, set(known)):
            if target != name:
                graph[name].add(target)
            if inside_function:
                local.append(f"{name} imports {target} inside a function")
    return graph, local


def test_no_import_circles():
    graph, _ = import_graph()
    # A package's __init__ imports its submodules; a submodule's own imports of the package's
    # siblings are what counts, so edges into a package's __init__ from its children are left out.
    edges = {module: {target for target in targets if not module.startswith(target + ".")}
             for module, targets in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module):
        state[module] = 1
        stack.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def needs_tfds(name: str, packages: tuple[str, ...] = ("tensorflow_datasets",)) -> bool:
    """Does the module import tensorflow_datasets (the `data` extra), or any of `packages`, at
    module level?"""
    tree = ast.parse(modules()[name].read_text())
    return any(isinstance(node, (ast.Import, ast.ImportFrom)) and
               any((node.module if isinstance(node, ast.ImportFrom) else alias.name or "").split(".")[0] in packages
                   for alias in node.names) for node in tree.body)


def test_no_function_local_imports_of_the_project():
    """Except modules that need an optional extra, imported only where it is used: the tfds data
    loaders in zoo's serving code (the `data` extra, so that inference installs and imports without
    tfds) and the PyTorch peers of the bench (the `peers` extra, never installed by make test)."""
    _, local = import_graph()
    allowed = [entry for entry in local if (entry.startswith("zoo.serving.") and needs_tfds(entry.split()[-4]))
               or (entry.startswith("training.bench.") and needs_tfds(entry.split()[-4], ("torch",)))]
    assert sorted(set(local) - set(allowed)) == []


def test_inference_imports_neither_tfds_nor_matplotlib():
    """What `import zoo` loads at module level (the CLI and the HTTP server too) needs no extra
    beyond `serve`: the data modules it reads are the pure-Python ones."""
    known = modules()
    reached, frontier = set(), ["zoo", "zoo.cli", "zoo.serving.http"]
    while frontier:
        module = frontier.pop()
        if module not in reached:
            reached.add(module)
            frontier.extend(target for target, inside_function in project_imports(known[module], set(known))
                            if not inside_function)
    assert sorted(module for module in reached if needs_tfds(module, ("tensorflow_datasets", "matplotlib"))) == []


def test_data_flows_one_way_and_the_registry_is_a_leaf():
    graph, _ = import_graph()
    assert not [f"{module} -> {target}" for module, targets in graph.items() if module.startswith("zoo")
                for target in targets if target.startswith("training")]
    assert graph["zoo.registry"] == set()
    assert not [module for module, targets in graph.items() if module.startswith("zoo.models") and
                any(not target.startswith("zoo.models") and target != "zoo" for target in targets)], \
        "zoo.models holds only builders"


def test_the_task_is_switched_on_in_one_place():
    """Only zoo.tasks (serving) and training.tasks (training) map a task name to code."""
    offenders = []
    for name, path in modules().items():
        if name in ("zoo.tasks", "training.tasks", "zoo.registry"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(isinstance(side, ast.Constant) and side.value in
                                                     ("image", "language") for side in node.comparators):
                text = ast.unparse(node)
                if "task" in text:
                    offenders.append(f"{name}: {text}")
    assert offenders == []


def test_every_registry_task_has_serving_and_training_code():
    from training import tasks as training_tasks
    from zoo import registry, tasks
    assert set(tasks.TASKS) == set(registry.TASKS) == set(training_tasks.TRAINERS)
    assert set(training_tasks.FIT_AND_MEASURE) == set(registry.TASKS)
    assert all(registry.get(name).task in tasks.TASKS for name in registry.list_models())


def test_the_readme_layout_names_every_module():
    """README "Layout" matches the tree: every module and sub-package of zoo/ and training/."""
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("```", 2)[1]
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).iterdir()):
            if path.name.startswith(("_", ".")) or not (path.suffix == ".py" or (path / "__init__.py").exists()):
                continue
            shown = path.name if path.suffix == ".py" else f"{path.name}/"
            if shown not in layout:
                missing.append(f"{package}/{shown}")
    assert missing == [], f"README's Layout does not mention {missing}"
