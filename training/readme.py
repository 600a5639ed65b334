"""python -m training.readme: the README's model table, from the registry and the committed cards
(`make readme-table`); the bench and `make formats` render their own sections (`update_section`)
from the reports they read with `read_report`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from training import REPO_ROOT
from zoo import artifact, files, registry
from zoo.cli import metric_text

README = REPO_ROOT / "README.md"


def markdown_table() -> str:
    """The README's model table, from the registry and the committed cards."""
    lines = ["| model | test metric | bar | reference | parameters | training (the card's machine) |",
             "|---|---|---|---|---|---|"]
    for name in registry.list_models():
        spec = registry.get(name)
        card = artifact.committed_card(name)  # read once per model
        training = measured = "not trained"
        if card is not None:
            training = (f"{card['training']['epochs_run']} epochs, "
                        f"{card['training']['wall_time_seconds'] / 60:.0f} min, {_machine(card)}")
            value = artifact.card_value(spec, card)
            measured = metric_text(spec, card["metrics"])
            measured = f"{spec.metric} {measured}{'' if spec.meets_bar(value) else ' (bar not met)'}"
        lines.append(f"| `{name}` | {measured} | {spec.bar_text} | {spec.reference or '-'} | "
                     f"{spec.parameter_count:,} | {training} |")
    return "\n".join(lines)


def _machine(card: dict) -> str:
    """The CPU a card's run trained on, in a few words ('2-core AMD EPYC')."""
    hardware = card["training"].get("hardware") or {}
    cores = f"{hardware['cpu_count']}-core " if hardware.get("cpu_count") else ""
    return f"{cores}{hardware['cpu_model']}" if hardware.get("cpu_model") else f"{cores}CPU, model not recorded"


def replace_section(text: str, section: str, body: str) -> str:
    """text with what stands between <!-- section:start --> and <!-- section:end --> replaced."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"README lacks the markers {start} and {end}")
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{body}\n{end}{tail}"


def update_section(section: str, body: str, readme: Path = README) -> None:
    """Replace the README's `section` with `body`, the file written whole (zoo.files)."""
    files.write_atomically(readme, replace_section(readme.read_text(), section, body).encode())


def read_report(path: Path, if_missing: dict | None = None, hint: str = "") -> dict:
    """The JSON object a report holds; `if_missing` when there is no file (None: refused). A
    refused, unreadable or malformed report is a SystemExit with one line (and `hint`)."""
    if if_missing is not None and not path.exists():
        return if_missing
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as error:  # missing or unreadable; JSONDecodeError, bad UTF-8
        reason = "does not exist" if isinstance(error, FileNotFoundError) else f"is unreadable ({error})"
        raise SystemExit(f"error: {path} {reason}{'; ' + hint if hint else ''}") from None
    if not isinstance(results, dict):
        raise SystemExit(f"error: {path}: expected a JSON object, got {type(results).__name__}")
    return results


def readme_with_table(text: str) -> str:
    return replace_section(text, "model-table", markdown_table())


def main() -> int:
    update_section("model-table", markdown_table())
    print(f"updated the model table in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
