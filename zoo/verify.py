"""make verify: every committed artifact's manifest and model-card schema."""
from __future__ import annotations

import json

from zoo import registry
from zoo.manifest import ArtifactError, verify_manifest

CARD_KEYS = {"name": str, "task": str, "metrics": dict, "parameter_count": int, "label_names": list,
             "model_config": dict, "recipe": dict, "dataset": dict, "preprocessing": str,
             "signatures": dict, "training": dict, "versions": dict, "created": str}


def card_problems(card: dict, spec) -> list[str]:
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
    if f"test_{spec.metric}" not in card["metrics"]:
        problems.append(f"card has no test_{spec.metric}")
    return problems


def verify_all(names: list[str] | None = None) -> list[str]:
    problems = []
    for name in names or registry.list_models():
        spec = registry.get(name)
        if not spec.export_dir.exists():
            continue  # not trained: nothing to verify
        try:
            verify_manifest(spec.export_dir)
            card = json.loads((spec.export_dir / "model_card.json").read_text())
        except (ArtifactError, ValueError) as error:
            problems.append(f"{name}: {error}")
            continue
        problems.extend(f"{name}: {problem}" for problem in card_problems(card, spec))
    return problems
