"""The one list of models: name -> ModelSpec. Duplicate names raise."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPORT_ROOT = REPO_ROOT / "exported_models"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the zoo knows about one model before it is trained.

    `recipe` holds only the training settings that differ from the defaults in
    `training.recipes.Recipe`; `reference` is the literature figure shown beside
    ours; `bar` is the test metric the committed artifact must reach.
    """

    name: str
    task: str  # "image" or "language"
    builder: Callable[..., Any]
    config: Any  # the family's frozen config dataclass
    dataset: str
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
        return self.metric == "accuracy"

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

    @property
    def export_dir(self) -> Path:
        return EXPORT_ROOT / self.name

    def card(self) -> dict | None:
        """The committed artifact's model card; None if untrained."""
        card_path = self.export_dir / "model_card.json"
        return json.loads(card_path.read_text()) if card_path.is_file() else None

    def reported_metrics(self, card: dict | None = None) -> dict | None:
        """Metrics of the committed artifact (from `card`, else its model card); None if untrained."""
        card = card if card is not None else self.card()
        return None if card is None else card["metrics"]

    def committed_value(self, card: dict | None = None) -> float | None:
        """The committed artifact's test metric (the one the bar judges); None if untrained."""
        metrics = self.reported_metrics(card)
        return None if metrics is None else metrics[f"test_{self.metric}"]["value"]


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model name {spec.name!r} is already registered")
    if spec.task not in ("image", "language"):
        raise ValueError(f"task must be 'image' or 'language', got {spec.task!r}")
    _REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> ModelSpec:
    _load_catalog()
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown model {name!r}; known models: {known}") from None


def list_models() -> list[str]:
    _load_catalog()
    return sorted(_REGISTRY)


def _load_catalog() -> None:
    # The catalog module registers every model on import; imported lazily so that
    # registry.py stays importable from the model modules without a cycle.
    from zoo import catalog  # noqa: F401
