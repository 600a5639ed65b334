"""training.repeat: the registered recipe with other seeds on the test split (read once, after
training), beside the committed artifact's figure; the training itself is faked here."""
import json

import pytest

from training import loop, repeat, tasks
from zoo import artifact, files


def test_seeds_are_trained_on_all_data_and_summarised_with_the_committed_figure(monkeypatch, tmp_path):
    seen = []

    def fit_and_measure(spec, recipe, data_dir, work_dir, verbose):
        seen.append(recipe)
        files.write_atomically(work_dir / loop.LOG_FILE, b"epoch,loss,elapsed_seconds\n0,2.0,60.0\n")
        return {"test_accuracy": {"value": 0.938 + recipe.seed / 1000, "split": "test", "examples": 10000},
                "test_accuracy_without_tta": {"value": 0.93, "split": "test", "examples": 10000},
                "train_accuracy": {"value": 0.99, "split": "train", "examples": 50000}}

    monkeypatch.setattr(tasks, "FIT_AND_MEASURE", {**tasks.FIT_AND_MEASURE, "image": fit_and_measure})
    card = {"recipe": {"seed": 0}, "metrics": {"test_accuracy": {"value": 0.9417}},
            "training": {"wall_time_seconds": 1590}}
    monkeypatch.setattr(artifact, "committed_card", lambda name: card)
    with pytest.raises(ValueError, match="seed 0 is the committed artifact's"):
        repeat.run("airbench_cifar10", [0, 1], report_dir=tmp_path, work_root=tmp_path / "w")
    path = repeat.run("airbench_cifar10", [1, 2], report_dir=tmp_path, work_root=tmp_path / "w")
    assert [(recipe.seed, recipe.validation) for recipe in seen] == [(1, "none"), (2, "none")]  # all 50,000
    result = json.loads((tmp_path / "airbench_cifar10" / "seed2.json").read_text())
    assert result["metric"] == "test_accuracy" and result["value"] == 0.94
    assert result["command"] == "python -m training.repeat airbench_cifar10 --seeds 2"
    text = path.read_text()
    assert "| seed | test accuracy | minutes | test accuracy without tta |" in text
    assert "| 0 | 0.9417 | 26.5 | - |" in text and "| 2 | 0.9400 | " in text and " | 0.9300 |" in text
    assert "test accuracy: mean 0.9402, standard deviation 0.0014 (sample, n = 3)." in text


def test_language_models_are_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="measure on the test split, which the language trainer"):
        repeat.run("lstm_ptb", [1], report_dir=tmp_path, work_root=tmp_path / "w")


def test_the_summary_goes_into_a_reexported_card(monkeypatch, tmp_path):
    from tests.conftest import export_fresh

    folder = tmp_path / "perceptron_mnist"
    export_fresh("perceptron_mnist", folder)  # its card: seed 0, test accuracy 0.0
    card = artifact.read_card(folder)
    monkeypatch.setattr(artifact, "committed_card", lambda name: card)
    with pytest.raises(ValueError, match="a summary needs the committed artifact and at least one repeat"):
        repeat.summary("perceptron_mnist", tmp_path / "reports")
    for seed, value in ((1, 0.5), (2, 1.0)):
        result = {"recipe_overrides": {"seed": seed}, "minutes": 1.0,
                  "metrics": {"test_accuracy": {"value": value, "split": "test", "examples": 10}}}
        (tmp_path / "reports" / "perceptron_mnist").mkdir(parents=True, exist_ok=True)
        files.write_atomically(tmp_path / "reports" / "perceptron_mnist" / f"seed{seed}.json",
                               json.dumps(result).encode())
    repeat.to_card("perceptron_mnist", tmp_path / "reports", folder)
    artifact.verify_manifest(folder)
    after = artifact.read_card(folder)
    repeats = after["repeats"]
    assert (repeats["mean"], repeats["n"], list(repeats["seeds"])) == (0.5, 3, ["0", "1", "2"])
    assert repeats["standard_deviation"] == pytest.approx(0.5)
    assert repeats["command"] == "python -m training.repeat perceptron_mnist --seeds 1 2"
    assert after["version"] == card["version"] + 1 and after["metrics"] == card["metrics"]
    assert "over seeds 0, 1, 2: test_accuracy mean 0.5000, standard deviation 0.5000 (n = 3" in \
        (folder / "README.md").read_text()
    assert "- Bar: test accuracy >= 0.91, NOT met (0)" in (folder / "README.md").read_text()
