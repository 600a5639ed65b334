"""Training machinery: learning-rate schedules, the time limit, the paper schedules."""
import dataclasses
import json

import keras
import numpy as np
import pytest

from training import loop
from training.bench.measure import time_to_target
from training.paper import PAPER_SCHEDULES, run
from training.recipes import Recipe, resolve
from zoo import registry


def test_step_schedule_multiplies_by_the_factor_at_each_step_epoch():
    recipe = Recipe(learning_rate=35.0, schedule="steps", step_epochs=(4, 5, 6), step_factor=0.5)
    schedule = loop.learning_rate_schedule(recipe, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 39, 40, 50, 60, 99)]
    assert rates == [35.0, 35.0, 17.5, 8.75, 4.375, 4.375]


def test_sgd_weight_decay_is_l2_through_the_momentum_like_the_papers():
    """Steps of the recipe's SGD with weight_decay equal plain SGD (same momentum) on the loss
    plus weight_decay/2 * ||w||^2: the decay passes through the momentum, unlike Keras' own."""
    rng = np.random.default_rng(0)
    inputs, targets = rng.normal(size=(16, 3)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")
    recipe = Recipe(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=0.05, schedule="constant")

    def trained(optimizer, l2_in_loss):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])

        def loss(y_true, y_pred):
            mse = keras.ops.mean(keras.ops.square(y_true - y_pred))
            return mse + l2_in_loss / 2 * sum(keras.ops.sum(keras.ops.square(w)) for w in model.trainable_weights)

        model.compile(optimizer=optimizer, loss=loss)
        for _ in range(5):
            model.train_on_batch(inputs, targets)
        return model.get_weights()

    coupled = trained(loop.make_optimizer(recipe, steps_per_epoch=1), 0.0)
    reference = trained(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), 0.05)
    keras_decay = trained(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.05), 0.0)
    for ours, expected in zip(coupled, reference):
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(keras_decay[0], reference[0], rtol=1e-3)  # the weaker decoupled form


def test_ema_recipe_ends_training_with_the_moving_average():
    """fit with ema_momentum ends with Keras' moving average of the weights after each step:
    the first step's weights, then m * average + (1 - m) * weights."""
    rng = np.random.default_rng(0)
    inputs, targets = rng.normal(size=(16, 3)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")
    recipe = Recipe(epochs=3, learning_rate=0.05, weight_decay=0.0, schedule="constant", ema_momentum=0.5)

    def model_with(optimizer):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer=optimizer, loss="mse")
        return model

    plain = model_with(loop.make_optimizer(dataclasses.replace(recipe, ema_momentum=None), steps_per_epoch=1))
    average = None
    for _ in range(recipe.epochs):
        plain.train_on_batch(inputs, targets)
        weights = plain.get_weights()
        average = weights if average is None else [0.5 * a + 0.5 * w for a, w in zip(average, weights)]
    averaged = model_with(loop.make_optimizer(recipe, steps_per_epoch=1))
    averaged.fit(inputs, targets, batch_size=16, epochs=recipe.epochs, verbose=0)
    for ours, expected in zip(averaged.get_weights(), average):
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(averaged.get_weights()[0], plain.get_weights()[0])
    with pytest.raises(ValueError, match="ema_momentum must be None or in"):
        Recipe(ema_momentum=1.5)


def test_time_limit_stops_after_the_first_epoch_past_it(tmp_path, capsys):
    model, dataset = tiny_regression()
    model.compile(optimizer="sgd", loss="mse")
    recipe = Recipe(epochs=5, time_limit_minutes=1e-9)
    history = loop.fit(model, recipe, dataset, dataset, tmp_path, verbose=0)
    assert history["epoch"] == [1]
    assert "training stops after epoch 1 of 5" in capsys.readouterr().err
    history = loop.fit(model, dataclasses.replace(recipe, time_limit_minutes=None), dataset, dataset,
                       tmp_path / "unlimited", verbose=0)
    assert history["epoch"] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("name", sorted(PAPER_SCHEDULES))
def test_paper_schedules_are_valid_recipes_for_registered_models(name):
    recipe = resolve(registry.get(name), PAPER_SCHEDULES[name])
    assert recipe.schedule == "steps" and recipe.optimizer == "sgd"
    assert all(0 < epoch < recipe.epochs for epoch in recipe.step_epochs)


def test_paper_run_rejects_models_without_a_schedule():
    with pytest.raises(ValueError, match="no paper schedule"):
        run("cnn_mnist", minutes=1)


def test_time_to_target_reads_the_first_epoch_at_the_target():
    history = {"epoch": [1, 2, 3], "elapsed_seconds": [60.0, 120.0, 180.0], "val_perplexity": [150, 114, 110]}
    assert time_to_target(history, "val_perplexity", 114.5, True) == {
        "status": "reached", "epoch": 2, "minutes": 2.0, "value": 114}
    missed = time_to_target(history, "val_perplexity", 100, True)
    assert missed["status"] == "not reached" and missed["best"] == 110 and missed["minutes"] == 3.0
    assert time_to_target({}, "val_perplexity", 100, True) == {"status": "not run"}
    assert time_to_target({}, "val_perplexity", 100, True, missing="no committed artifact") == {
        "status": "no committed artifact"}


def tiny_regression():
    import tensorflow as tf
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    data = (np.ones((8, 3), np.float32), np.ones((8, 1), np.float32))
    return model, tf.data.Dataset.from_tensor_slices(data).batch(4)


def test_a_diverged_run_raises_instead_of_returning(tmp_path):
    model, dataset = tiny_regression()
    model.compile(optimizer=keras.optimizers.SGD(1e30), loss="mse")  # overflows to inf, then NaN
    with pytest.raises(loop.TrainingDiverged, match="nothing was exported"):
        loop.fit(model, Recipe(epochs=3), dataset, dataset, tmp_path, verbose=0)


def test_an_interrupted_run_resumes_only_with_the_same_recipe(tmp_path):
    model, dataset = tiny_regression()
    model.compile(optimizer="sgd", loss="mse")
    loop.fit(model, Recipe(epochs=1), dataset, dataset, tmp_path, verbose=0)
    # a budget may change
    loop.fit(model, Recipe(epochs=1, time_limit_minutes=5.0), dataset, dataset, tmp_path, verbose=0)
    with pytest.raises(ValueError, match=r"another recipe \(epochs: 1 -> 2\)"):
        loop.fit(model, Recipe(epochs=2), dataset, dataset, tmp_path, verbose=0)


@pytest.mark.parametrize("settings, message", [
    ({"epochs": 0}, "epochs must be a positive int"),
    ({"optimizer": "adam"}, "optimizer must be one of"),
    ({"learning_rate": -1.0}, "learning_rate must be a positive number"),
    ({"warmup_epochs": 20.0}, r"warmup_epochs must be in \[0, epochs=10\]"),
    ({"label_smoothing": 1.0}, r"label_smoothing must be a number in \[0, 1\)"),
    ({"augment": "mixup"}, "augment must be one of"),
    ({"jit_compile": "yes"}, "jit_compile must be true or false, got 'yes'"),
    ({"elastic_alpha": -1.0}, r"elastic_alpha must be a number in \[0, 100\] pixels, got -1.0"),
    ({"augment": "affine", "elastic_alpha": float("nan")}, "elastic_alpha must be a number in"),
    ({"augment": "affine", "elastic_sigma": 0.1}, r"elastic_sigma must be a number in \[0.5, 16\] pixels, got 0.1"),
    ({"augment": "shift", "elastic_alpha": 34.0}, "elastic_alpha distorts the affine augmentation; augment is 'shift'"),
])
def test_recipe_rejects_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        Recipe(**settings)


def test_command_line_overrides_name_the_setting_they_could_not_read():
    from training.recipes import parse_override
    assert parse_override("epochs=3") == ("epochs", 3)
    assert parse_override("step_epochs=4,6") == ("step_epochs", (4, 6))
    with pytest.raises(ValueError, match="--set epochs takes an int, got 'abc'"):
        parse_override("epochs=abc")


def test_the_perceptron_refuses_distributed_training():
    import tensorflow as tf

    from training.image_task import train_image_model
    spec = registry.get("perceptron_mnist")
    with pytest.raises(ValueError, match="perceptron rule on one device"):
        train_image_model(spec, resolve(spec), None, None, tf.distribute.OneDeviceStrategy("/cpu:0"), 0)


def test_a_run_that_replaces_a_better_artifact_says_so_and_how_to_restore_it():
    from training.train import replacement_note
    accuracy, perplexity = registry.get("cnn_mnist"), registry.get("lstm_ptb")
    assert "WORSE" not in replacement_note(accuracy, 0.99, 0.995)
    assert "WORSE" in replacement_note(accuracy, 0.995, 0.99)
    assert "git checkout -- exported_models/cnn_mnist" in replacement_note(accuracy, 0.995, 0.99)
    assert "WORSE" not in replacement_note(perplexity, 90.0, 89.0)
    assert "WORSE" in replacement_note(perplexity, 89.0, 90.0)


def test_completed_epochs_counts_the_interrupted_runs_committed_epochs(tmp_path):
    assert loop.completed_epochs(tmp_path) == 0
    model, dataset = tiny_regression()
    model.compile(optimizer="sgd", loss="mse")
    loop.fit(model, Recipe(epochs=3), dataset, dataset, tmp_path / "run", verbose=0)
    assert loop.completed_epochs(tmp_path / "run") == 3
    # A log without the checkpoint it records is no run to resume (tests/test_checkpoints.py).
    (tmp_path / "log.csv").write_text("epoch,loss\n0,2.0\n1,1.5\n2,1.2\n")
    with pytest.raises(loop.CheckpointError, match="records 3 epochs"):
        loop.completed_epochs(tmp_path)


def test_mixed_precision_image_training_exports_a_float32_model(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    from training import image_task
    from zoo.models import cnn
    trained = []
    compile_model = image_task.compile_image_model
    monkeypatch.setattr(image_task, "compile_image_model", lambda model, *a: trained.append(model) or compile_model(
        model, *a))
    spec = dataclasses.replace(registry.get("cnn_mnist"), config=cnn.CNNConfig(filters=(4, 8), dense_units=8))
    recipe = resolve(spec, {"epochs": 1, "batch_size": 32, "precision": "mixed_bfloat16"})
    with tfds.testing.mock_data(num_examples=64):
        model, measured, history, _ = image_task.train_image_model(spec, recipe, None, tmp_path, None, 0)
    assert np.isfinite(history["loss"]).all() and 0.0 <= measured["test_accuracy"]["value"] <= 1.0
    assert trained[0].get_layer("stage0_conv0").compute_dtype == "bfloat16"
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}  # the exported model
    assert {weight.dtype for weight in model.weights} == {"float32"}
    assert keras.config.dtype_policy().name == "float32"


def test_a_training_card_names_the_artifact_it_replaces_and_its_readme_says_so(monkeypatch, tmp_path):
    from training import cards
    from zoo import artifact
    from zoo.card import write_card_readme

    def artifact_with(card):
        folder = tmp_path / "exports" / str(len(list((tmp_path / "exports").glob("*"))))
        folder.mkdir(parents=True)
        (folder / artifact.MANIFEST_NAME).write_text("")
        (folder / artifact.CARD_NAME).write_text(json.dumps(
            {"name": "cnn_mnist", "task": "image", "label_names": [], **card}))
        return folder

    (tmp_path / "exports").mkdir()
    old = {"version": 2, "created": "then", "metrics": {"test_accuracy": {"value": 0.99, "split": "test"}}}
    assert cards.previous_artifact(artifact_with(old)) == {
        "version": 2, "created": "then", "metrics": {"test_accuracy": 0.99}}
    assert cards.previous_artifact(tmp_path / "nothing-here") is None  # a first export
    # A figure that is not a number is left out, not the link; an unreadable card gives no link.
    odd = {**old, "metrics": {"test_accuracy": {"value": None}, "validation_accuracy": {"value": 0.98}}}
    assert cards.previous_artifact(artifact_with(odd))["metrics"] == {"validation_accuracy": 0.98}
    assert cards.previous_artifact(artifact_with({**old, "version": "two"})) is None
    # The card names what the export's own destination held, not the committed artifact.
    spec = registry.get("cnn_mnist")
    monkeypatch.setattr(cards, "files_sha256", lambda dataset: {})
    model = spec.build()
    made = cards.make_card(spec, resolve(spec), model, {}, {}, 0.0, destination=tmp_path / "elsewhere")
    assert "previous" not in made
    made = cards.make_card(spec, resolve(spec), model, {}, {}, 0.0, destination=artifact_with(old))
    assert made["previous"]["version"] == 2
    assert artifact.card_problems({**made, "metrics": {spec.metric_key: {"value": 1, "split": "test", "examples": 1}},
                                   "previous": {"version": 0, "metrics": {}}}, spec)[-1].startswith(
        "card previous must be")
    card = {"name": "cnn_mnist", "parameter_count": 1, "dataset": {"name": "mnist"},
            "metrics": {"test_accuracy": {"value": 0.995, "split": "test", "examples": 10000}},
            "previous": {"version": 2, "metrics": {"test_accuracy": 0.99}}}
    write_card_readme(tmp_path, card)
    assert "- Replaces version 2 (test accuracy 0.99)" in (tmp_path / "README.md").read_text()
