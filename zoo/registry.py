"""The one list of models: name -> ModelSpec. A leaf: it imports nothing of the zoo; the catalog
fills it when `zoo` is imported. Duplicate names raise."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

TASKS = ("image", "language")  # zoo.tasks maps each to its serving code


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the zoo knows about one model before it is trained.

    `recipe` holds only the training settings that differ from the defaults in
    `training.recipes.Recipe`; `reference` is the literature figure shown beside
    ours; `bar` is the test metric the committed artifact must reach.
    """

    name: str
    task: str  # one of TASKS
    builder: Callable[..., Any]
    config: Any  # the family's frozen config dataclass
    dataset: str  # a key of zoo.data.DATASETS
    parameter_count: int
    metric: str  # "accuracy" (higher is better) or "perplexity" (lower is better)
    bar: float
    reference: str = ""
    recipe: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    label_names: tuple[str, ...] = ()
    probabilistic: bool = True  # has a `probabilities` output (the perceptron has not)
    hyperplane_distance: bool = False  # has a `distance` output, f(x)/||w|| per class
    description: str = ""

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.metric)

    @property
    def metric_key(self) -> str:
        """The card's metric the bar judges."""
        return f"test_{self.metric}"

    @property
    def bar_text(self) -> str:
        return f"{'>=' if self.higher_is_better else '<='} {self.bar:g}"

    def meets_bar(self, value: float) -> bool:
        return self.at_least_as_good(value, self.bar)

    def at_least_as_good(self, value: float, other: float) -> bool:
        """Whether metric `value` is as good as `other` or better (accuracy up, perplexity down)."""
        return value >= other if self.higher_is_better else value <= other

    def build(self, config: Any = None):
        """A freshly initialised Keras model (config defaults to the registered one)."""
        return self.builder(config or self.config)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model name {spec.name!r} is already registered")
    if spec.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {spec.task!r}")
    _REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> ModelSpec:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown model {name!r}; known models: {known}") from None


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def higher_is_better(metric: str) -> bool:
    """Accuracy goes up, perplexity down."""
    return metric == "accuracy"
