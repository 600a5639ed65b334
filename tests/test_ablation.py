"""training.ablation: variants of a registry recipe measured on the validation split, one JSON a
variant and a table of all; the training itself is faked here (it is training.tasks')."""
import json

import pytest

from training import ablation, loop, tasks
from zoo import files, registry


@pytest.fixture
def fake_training(monkeypatch):
    seen = []

    def fit_and_measure(spec, recipe, data_dir, work_dir, verbose):
        seen.append((spec, recipe))
        files.write_atomically(work_dir / loop.LOG_FILE, b"epoch,loss,val_loss\n0,5.0,5.1\n1,4.0,4.2\n")
        value = 100.0 + 10 * spec.config.weight_drop + recipe.epochs
        return {"validation_perplexity": {"value": value, "split": "validation", "examples": 73760}}

    monkeypatch.setattr(tasks, "FIT_AND_MEASURE", {**tasks.FIT_AND_MEASURE, "language": fit_and_measure})
    return seen


def test_variants_are_measured_on_validation_and_tabled_best_first(fake_training, tmp_path):
    reports = tmp_path / "reports"
    ablation.run("lstm_ptb", "weight_drop_half", {"weight_drop": 0.5, "locked_dropout": True}, {"epochs": 2},
                 report_dir=reports, work_dir=tmp_path / "a")
    ablation.run("lstm_ptb", "baseline", {}, {"epochs": 2}, report_dir=reports, work_dir=tmp_path / "b")
    (spec, recipe), _ = fake_training
    assert spec.config.weight_drop == 0.5 and spec.config.locked_dropout and recipe.epochs == 2
    result = json.loads((reports / "lstm_ptb" / "weight_drop_half.json").read_text())
    assert result["value"] == 107.0 and result["epochs"] == 2 and result["metric"] == "validation_perplexity"
    assert result["history"] == {"epoch": [1, 2], "loss": [5.0, 4.0], "val_loss": [5.1, 4.2]}  # per-epoch record
    assert result["command"] == ("python -m training.ablation lstm_ptb weight_drop_half --config weight_drop=0.5 "
                                 "--config locked_dropout=true --set epochs=2")
    table = (reports / "lstm_ptb.md").read_text().splitlines()
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| variant")]
    baseline = 100 + 10 * registry.get("lstm_ptb").config.weight_drop + 2  # the registry's weight_drop
    assert baseline < 107  # the faked perplexity grows with weight_drop: the baseline is tabled first
    assert rows[0].startswith(f"| baseline | epochs=2 | {baseline:.5g} validation_perplexity | 2 |")
    assert rows[1].startswith("| weight_drop_half | weight_drop=0.5, locked_dropout=True, epochs=2 | 107")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())  # checkpoints cleared


def test_bad_variants_are_refused_before_any_training(fake_training, tmp_path, capsys):
    with pytest.raises(ValueError, match="weight_drop must be in"):
        ablation.run("lstm_ptb", "bad", {"weight_drop": 1.5}, {}, report_dir=tmp_path, work_dir=tmp_path / "w")
    with pytest.raises(ValueError, match="variant name"):
        ablation.run("lstm_ptb", "Bad/../x", {}, {}, report_dir=tmp_path, work_dir=tmp_path / "w")
    assert ablation.main(["lstm_ptb", "x", "--config", "locked_dropout=maybe"]) == 2
    assert "--config locked_dropout takes true or false, got 'maybe'" in capsys.readouterr().err
    assert ablation.main(["lstm_ptb", "x", "--config", "nonsense=1"]) == 2
    assert fake_training == []


def test_image_variants_train_on_all_but_the_last_training_images(monkeypatch, tmp_path):
    seen = []

    def fit_and_measure(spec, recipe, data_dir, work_dir, verbose):
        seen.append(recipe)
        files.write_atomically(work_dir / loop.LOG_FILE, b"epoch,loss,elapsed_seconds\n0,2.0,60.0\n")
        return {"validation_accuracy": {"value": 0.9, "split": "validation", "examples": 5000}}

    monkeypatch.setattr(tasks, "FIT_AND_MEASURE", {**tasks.FIT_AND_MEASURE, "image": fit_and_measure})
    path = ablation.run("airbench_cifar10", "no_tta", {"tta_level": 0}, {"lookahead_every": 0},
                        report_dir=tmp_path, work_dir=tmp_path / "w")
    assert seen[0].validation == "holdout" and seen[0].lookahead_every == 0  # never the test split
    result = json.loads(path.read_text())
    assert result["metric"] == "validation_accuracy" and result["value"] == 0.9
