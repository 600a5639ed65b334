"""The human side of an artifact: a generated README.md and training_curve.png."""
from __future__ import annotations

from pathlib import Path

from zoo.registry import higher_is_better


def write_card_readme(folder: Path, card: dict) -> None:
    history = card.get("training", {}).get("history") or {}
    has_curve = bool(history.get("epoch"))
    if has_curve:
        _plot_history(history, folder / "training_curve.png", card["name"])
    rows = "\n".join(f"| {name} | {entry['value']:.4f} | {entry['split']} | {entry['examples']:,} |"
                     for name, entry in card["metrics"].items())
    training = card.get("training", {})
    signatures = "\n".join(
        f"- `{name}`: inputs {', '.join(f'`{k}` {v}' for k, v in sig['inputs'].items())} -> "
        f"outputs {', '.join(f'`{k}` {v}' for k, v in sig['outputs'].items())}"
        for name, sig in card.get("signatures", {}).items())
    text = f"""# {card['name']}

{card.get('description', '')}

| metric | value | split | examples |
|---|---|---|---|
{rows}

- Parameters: {card['parameter_count']:,}{_bar_line(card)}
- Dataset: `{card['dataset']['name']}` (tfds {card['dataset'].get('version', '?')})
- Trained with `{training.get('command', '?')}`: {training.get('epochs_run', '?')} epochs,
  {training.get('wall_time_seconds', 0) / 60:.1f} min on {training.get('hardware', {}).get('summary', '?')}
- Re-measure: `make evaluate-{card['name']} DATA_DIR=/path/to/raw/data`{_extra_lines(card)}

## Signatures
{signatures}

## Use
```python
import zoo
model = zoo.load("{card['name']}")
```
or, without the zoo: `tf.saved_model.load("exported_models/{card['name']}")`.
"""
    if has_curve:
        text += "\n![training curve](training_curve.png)\n"
    (folder / "README.md").write_text(text)


def _bar_line(card: dict) -> str:
    """Whether the test metric meets the card's bar (accuracy at least, perplexity at most)."""
    bar = card.get("bar") or {}
    measured = card["metrics"].get(f"test_{bar.get('metric')}")
    if not measured:
        return ""
    higher = higher_is_better(bar["metric"])
    met = measured["value"] >= bar["value"] if higher else measured["value"] <= bar["value"]
    return (f"\n- Bar: test {bar['metric']} {'>=' if higher else '<='} {bar['value']:g}, "
            f"{'met' if met else 'NOT met'} ({measured['value']:.4g})")


def _extra_lines(card: dict) -> str:
    return _repeats_line(card.get("repeats")) + _previous_line(card)


def _previous_line(card: dict) -> str:
    """The artifact this run replaced, with its figures (training.cards.previous_artifact)."""
    previous = card.get("previous")
    if not previous:
        return ""
    figures = ", ".join(f"{key.replace('_', ' ')} {value:.4g}" for key, value in previous["metrics"].items())
    return f"\n- Replaces version {previous['version']}" + (f" ({figures})" if figures else "")


def _repeats_line(repeats: dict | None) -> str:
    """The seeds' spread (training.repeat), when the card has it."""
    if not repeats:
        return ""
    return (f"\n- The same recipe over seeds {', '.join(repeats['seeds'])}: {repeats['metric']} mean "
            f"{repeats['mean']:.4f}, standard deviation {repeats['standard_deviation']:.4f} (n = {repeats['n']}; "
            f"`{repeats['command']}`, {repeats['report']})")


def _plot_history(history: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric_keys = [k for k in history if k not in ("epoch", "elapsed_seconds", "learning_rate")]
    losses = [k for k in metric_keys if "loss" in k]
    others = [k for k in metric_keys if k not in losses]
    figure, axes = plt.subplots(1, 2 if others else 1, figsize=(10 if others else 5, 3.6), squeeze=False)
    for key in losses:
        axes[0, 0].plot(history["epoch"], history[key], marker=".", label=key)
    axes[0, 0].set(title=f"{title}: loss", xlabel="epoch", ylabel="loss")
    axes[0, 0].legend()
    if others:
        for key in others:
            axes[0, 1].plot(history["epoch"], history[key], marker=".", label=key)
        axes[0, 1].set(title=f"{title}: metrics", xlabel="epoch", ylabel="value")
        axes[0, 1].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
