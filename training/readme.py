"""python -m training.readme: the README's model table, from the registry and the committed cards
(`make readme-table`); the bench renders its own sections with `replace_section`."""
from __future__ import annotations

import sys

from training import REPO_ROOT
from zoo import artifact, registry
from zoo.cli import metric_text

README = REPO_ROOT / "README.md"


def markdown_table() -> str:
    """The README's model table, from the registry and the committed cards."""
    lines = ["| model | test metric | bar | reference | parameters | training on this machine |",
             "|---|---|---|---|---|---|"]
    for name in registry.list_models():
        spec = registry.get(name)
        card = artifact.committed_card(name)  # read once per model
        training = measured = "not trained"
        if card is not None:
            training = f"{card['training']['epochs_run']} epochs, {card['training']['wall_time_seconds'] / 60:.0f} min"
            value = artifact.card_value(spec, card)
            measured = metric_text(spec, card["metrics"])
            measured = f"{spec.metric} {measured}{'' if spec.meets_bar(value) else ' (bar not met)'}"
        lines.append(f"| `{name}` | {measured} | {spec.bar_text} | {spec.reference or '-'} | "
                     f"{spec.parameter_count:,} | {training} |")
    return "\n".join(lines)


def replace_section(text: str, section: str, body: str) -> str:
    """text with what stands between <!-- section:start --> and <!-- section:end --> replaced."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"README lacks the markers {start} and {end}")
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{body}\n{end}{tail}"


def readme_with_table(text: str) -> str:
    return replace_section(text, "model-table", markdown_table())




def main() -> int:
    README.write_text(readme_with_table(README.read_text()))
    print(f"updated the model table in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
