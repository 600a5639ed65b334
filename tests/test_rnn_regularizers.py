"""AWD-LSTM's regularisers (zoo.models.rnn_regularizers) and NT-ASGD (training.averaging) do what
they claim on small inputs, act only in training, and leave the exported contract unchanged."""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.test_language import FIXTURE_VOCABULARY, tiny_model, tiny_spec
from training import averaging, language_task, loop
from training.recipes import Recipe
from zoo.models import language, rnn_regularizers
from zoo.serving import language as serving

REGULARISED = dict(locked_dropout=True, embedding_dropout=0.2, weight_drop=0.5, input_dropout=0.3,
                   activation_penalty=2.0, temporal_activation_penalty=1.0)


def linear_weight_drop_rnn(units: int, rate: float, seed: int = 3):
    """A linear SimpleRNN with identity input kernel and zero bias: h_t = x_t + h_{t-1} @ U'."""
    layer = rnn_regularizers.WeightDropSimpleRNN(units, weight_drop=rate, weight_drop_seed=seed, activation=None,
                                                 return_sequences=True)
    layer.build((None, None, units))
    kernel = np.random.default_rng(seed).normal(0, 0.5, (units, units)).astype(np.float32)
    layer.set_weights([np.eye(units, dtype=np.float32), kernel, np.zeros(units, np.float32)])
    return layer, kernel


def test_weight_drop_uses_one_mask_for_every_step_and_row_and_none_at_inference():
    units, steps = 6, 4
    layer, kernel = linear_weight_drop_rnn(units, 0.5)
    # Row i starts from the basis vector e_i and gets no input afterwards: h_t[i] = e_i @ U'^t.
    inputs = np.zeros((units, steps, units), np.float32)
    inputs[:, 0, :] = np.eye(units)
    trained = keras.ops.convert_to_numpy(layer(inputs, training=True))
    dropped = trained[:, 1, :]  # h_1 rows: e_i @ U' = row i of the dropped kernel
    for step in range(2, steps):  # the same U' at every step, for every row
        np.testing.assert_allclose(trained[:, step, :], trained[:, step - 1, :] @ dropped, rtol=1e-5, atol=1e-6)
    kept = dropped != 0
    assert 0 < kept.sum() < kept.size  # some connections dropped, some kept
    np.testing.assert_allclose(dropped[kept], kernel[kept] / 0.5, rtol=1e-6)
    inference = keras.ops.convert_to_numpy(layer(inputs, training=False))
    np.testing.assert_allclose(inference[:, 1, :], kernel, rtol=1e-6)
    another = keras.ops.convert_to_numpy(layer(inputs, training=True))[:, 1, :]
    assert not np.array_equal(another != 0, kept)  # a new mask each call
    assert isinstance(layer.cell.recurrent_kernel, keras.Variable)  # restored after the call


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weight_drop_trains_the_recurrent_kernel_and_matches_the_plain_layer_at_inference(cell):
    plain = language.LanguageModelConfig(cell=cell, vocab_size=20, embedding_dim=8, hidden_units=8, dropout=0.0)
    dropped = dataclasses.replace(plain, weight_drop=0.5)
    model, reference = language._build_language_model(dropped, "m"), language._build_language_model(plain, "p")
    reference.set_weights(model.get_weights())
    tokens = np.random.default_rng(0).integers(0, 20, (3, 7)).astype(np.int32)
    np.testing.assert_allclose(model(tokens, training=False), reference(tokens, training=False), rtol=1e-6)
    layer = language.recurrent_layers(model)[0]
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(model(tokens, training=True) ** 2)
    gradient = tape.gradient(loss, layer.cell.recurrent_kernel)
    assert gradient is not None and np.abs(gradient.numpy()).sum() > 0
    # a dropped connection gets no gradient from the recurrent product (only from no path at all)
    assert (gradient.numpy() == 0).any()
    assert len(model.trainable_variables) == len(reference.trainable_variables)


def test_locked_dropout_draws_one_mask_per_sequence():
    layer = rnn_regularizers.locked_dropout(0.5, 16, "locked")
    out = keras.ops.convert_to_numpy(layer(np.ones((4, 9, 16), np.float32), training=True))
    masks = out != 0
    assert (masks == masks[:, :1, :]).all()  # the same units dropped at every time step of a row
    assert len({row.tobytes() for row in masks[:, 0, :]}) > 1  # rows differ
    np.testing.assert_array_equal(layer(np.ones((4, 9, 16), np.float32), training=False), 1.0)


def test_embedding_dropout_drops_whole_words():
    layer = rnn_regularizers.EmbeddingDropout(vocab_size=30, rate=0.5, seed=1)
    tokens = np.tile(np.arange(30, dtype=np.int32), (3, 2))  # every word 6 times: [3, 60]
    embedded = np.random.default_rng(0).normal(1.0, 0.1, (3, 60, 5)).astype(np.float32)
    out = keras.ops.convert_to_numpy(layer([tokens, embedded], training=True))
    dropped_words = {int(word) for word in tokens[(out == 0).all(-1)]}
    assert 0 < len(dropped_words) < 30
    for word in range(30):  # every occurrence of a word shares its fate
        where = tokens == word
        if word in dropped_words:
            assert (out[where] == 0).all()
        else:
            np.testing.assert_allclose(out[where], embedded[where] * 2.0, rtol=1e-6)
    np.testing.assert_array_equal(layer([tokens, embedded], training=False), embedded)


def test_activation_penalties_add_the_stated_losses():
    rng = np.random.default_rng(0)
    raw, dropped = rng.normal(size=(2, 5, 3)).astype(np.float32), rng.normal(size=(2, 5, 3)).astype(np.float32)
    layer = rnn_regularizers.ActivationPenalty(alpha=2.0, beta=1.0)
    assert np.array_equal(layer([raw, dropped], training=True), dropped)
    expected = 2.0 * np.mean(dropped ** 2) + 1.0 * np.mean((raw[:, 1:] - raw[:, :-1]) ** 2)
    np.testing.assert_allclose(float(sum(layer.losses)), expected, rtol=1e-5)
    layer = rnn_regularizers.ActivationPenalty(alpha=2.0, beta=1.0)
    layer([raw, dropped], training=False)
    assert layer.losses == []


def test_the_regularised_model_adds_its_penalty_only_in_training():
    config = dataclasses.replace(language.LanguageModelConfig(vocab_size=20, embedding_dim=8, hidden_units=8),
                                 **REGULARISED)
    model = language._build_language_model(config, "m")
    tokens = np.random.default_rng(0).integers(0, 20, (2, 6)).astype(np.int32)
    model(tokens, training=True)
    assert len(model.losses) == 1 and float(model.losses[0]) > 0
    model(tokens, training=False)
    assert model.losses == []


def test_regularisers_do_not_change_the_exported_signatures(tmp_path):
    """next_word, score and step of a regularised model equal those of today's model with the same weights."""
    plain_spec = tiny_spec("lstm")
    spec = dataclasses.replace(plain_spec, config=dataclasses.replace(plain_spec.config, **REGULARISED))
    plain = tiny_model(plain_spec)
    model = serving.set_vocabulary(spec.build(), FIXTURE_VOCABULARY)
    assert [w.path for w in model.weights] == [w.path for w in plain.weights]
    model.set_weights(plain.get_weights())
    functions = {}
    for name, keras_model in (("plain", plain), ("regularised", model)):
        vocabulary_file = serving.write_vocabulary(FIXTURE_VOCABULARY, tmp_path / f"{name}.txt")
        functions[name] = serving.LanguageServing(keras_model, vocabulary_file).functions()
    text = tf.constant([" ".join(FIXTURE_VOCABULARY[2:9])])
    for signature in ("score", "next_word"):
        for key, value in functions["plain"][signature](text=text).items():
            np.testing.assert_array_equal(functions["regularised"][signature](text=text)[key], value)
    state = tf.zeros([1, language.state_size(spec.config)])
    token = tf.constant([3], tf.int32)
    plain_step = functions["plain"]["step"](token_id=token, state=state)
    for key, value in functions["regularised"]["step"](token_id=token, state=state).items():
        np.testing.assert_array_equal(value, plain_step[key])


def test_a_regularised_stateful_twin_trains_a_step():
    spec = tiny_spec("lstm")
    spec = dataclasses.replace(spec, config=dataclasses.replace(spec.config, **REGULARISED))
    recipe = Recipe(optimizer="sgd", learning_rate=1.0, momentum=0.0, weight_decay=0.0, batch_size=2,
                    sequence_length=5, averaging="nt_asgd", schedule="constant")
    twin = language_task.compiled_twin(spec, recipe, steps_per_epoch=3)
    tokens = np.random.default_rng(0).integers(0, spec.config.vocab_size, (2, 5)).astype(np.int32)
    before = [w.copy() for w in twin.get_weights()]
    history = twin.fit(tokens, tokens, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, twin.get_weights()))


# ---- NT-ASGD -----------------------------------------------------------------------------------

def test_the_trigger_is_awd_lstms_non_monotonic_rule():
    # awd-lstm main.py: len(best_val_loss) > nonmono and val_loss > min(best_val_loss[:-nonmono]),
    # best_val_loss holding the earlier epochs' losses
    assert not averaging.should_trigger([5.0, 4.0, 6.0], patience=2)  # 2 earlier epochs: not more than patience
    assert not averaging.should_trigger([5.0, 4.0, 3.0, 2.9], patience=2)  # still improving
    assert not averaging.should_trigger([5.0, 4.0, 3.0, 4.1], patience=2)  # not above min([5.0])
    assert averaging.should_trigger([5.0, 4.0, 3.0, 5.1], patience=2)  # above min([5.0])
    assert averaging.should_trigger([5.0, 4.0, 3.0, 3.5, 4.1], patience=2)  # above min([5.0, 4.0])
    assert not averaging.should_trigger([5.0, 4.0, 3.0, 3.5, 3.9], patience=2)


def averaging_model(recipe: Recipe):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=loop.make_optimizer(recipe, steps_per_epoch=1), loss="mse")
    return model


def test_averaging_sgd_is_plain_sgd_until_triggered_then_a_uniform_average():
    recipe = Recipe(optimizer="sgd", learning_rate=0.1, momentum=0.0, weight_decay=0.0, schedule="constant",
                    averaging="nt_asgd")
    model = averaging_model(recipe)
    x, y = np.eye(3, dtype=np.float32), np.ones((3, 1), np.float32)
    model.fit(x, y, batch_size=3, epochs=2, verbose=0)
    optimizer = model.optimizer
    assert isinstance(optimizer, averaging.AveragingSGD) and not optimizer.is_averaging
    # before the trigger the average is the weights, so the finalised model is the last weights
    np.testing.assert_allclose(optimizer.average_values()[0], model.get_weights()[0], rtol=1e-6)
    optimizer.start_averaging()
    seen = []
    for _ in range(4):
        model.train_on_batch(x, y)
        seen.append(model.get_weights()[0].copy())
    np.testing.assert_allclose(optimizer.average_values()[0], np.mean(seen, axis=0), rtol=1e-5)
    # fit ends by putting the average into the weights
    model.fit(x, y, batch_size=3, epochs=1, verbose=0)
    np.testing.assert_allclose(model.get_weights()[0], optimizer.average_values()[0], rtol=1e-6)


def test_the_average_survives_a_checkpoint(tmp_path):
    recipe = Recipe(optimizer="sgd", learning_rate=0.1, momentum=0.0, weight_decay=0.0, schedule="constant",
                    averaging="nt_asgd")
    model = averaging_model(recipe)
    x, y = np.eye(3, dtype=np.float32), np.ones((3, 1), np.float32)
    model.train_on_batch(x, y)
    model.optimizer.start_averaging()
    for _ in range(3):
        model.train_on_batch(x, y)
    model.save_weights(tmp_path / "w.weights.h5")
    restored = averaging_model(recipe)
    restored.optimizer.build(restored.trainable_variables)
    restored.load_weights(tmp_path / "w.weights.h5")
    assert restored.optimizer.is_averaging
    np.testing.assert_allclose(restored.optimizer.average_values()[0], model.optimizer.average_values()[0])
    assert float(restored.optimizer.averaged_steps) == 3.0


def test_the_trigger_starts_averaging_and_validation_sees_the_average():
    recipe = Recipe(optimizer="sgd", learning_rate=0.1, momentum=0.0, weight_decay=0.0, schedule="constant",
                    averaging="nt_asgd")
    model = averaging_model(recipe)
    x, y = np.eye(3, dtype=np.float32), np.ones((3, 1), np.float32)
    model.train_on_batch(x, y)
    trigger = averaging.NonMonotonicTrigger(patience=1, earlier_losses=lambda: [3.0])
    trigger.set_model(model)
    trigger.on_train_begin()
    logs = {"val_loss": 2.0}
    trigger.on_epoch_end(0, logs)
    assert not model.optimizer.is_averaging and logs["averaging"] == 0.0
    trigger.on_epoch_end(1, {"val_loss": 3.5})  # above min([3.0, 2.0][:-1]) = 3.0
    assert model.optimizer.is_averaging
    for _ in range(3):
        model.train_on_batch(x, y)
    weights = model.get_weights()[0].copy()
    trigger.on_test_begin()
    np.testing.assert_allclose(model.get_weights()[0], model.optimizer.average_values()[0])
    assert not np.allclose(model.get_weights()[0], weights)
    trigger.on_test_end()
    np.testing.assert_array_equal(model.get_weights()[0], weights)


def test_averaging_starts_by_the_latest_epoch_even_while_validation_improves():
    recipe = Recipe(optimizer="sgd", learning_rate=0.1, momentum=0.0, weight_decay=0.0, schedule="constant",
                    averaging="nt_asgd", averaging_start_epoch=3)
    model = averaging_model(recipe)
    model.train_on_batch(np.eye(3, dtype=np.float32), np.ones((3, 1), np.float32))
    trigger = averaging.NonMonotonicTrigger(patience=5, latest_epoch=recipe.averaging_start_epoch)
    trigger.set_model(model)
    trigger.on_train_begin()
    for epoch, loss in enumerate([3.0, 2.0]):
        trigger.on_epoch_end(epoch, {"val_loss": loss})
    assert not model.optimizer.is_averaging
    trigger.on_epoch_end(2, {"val_loss": 1.0})  # the third epoch ends: due, though still improving
    assert model.optimizer.is_averaging


def test_averaging_needs_sgd():
    with pytest.raises(ValueError, match="averaging nt_asgd averages SGD's steps; the optimizer is 'adamw'"):
        Recipe(averaging="nt_asgd")


@pytest.mark.parametrize("cell", language.CELLS)
def test_every_regulariser_trains_under_bfloat16_mixed_precision(cell):
    config = language.LanguageModelConfig(cell=cell, vocab_size=30, embedding_dim=8, hidden_units=8, **REGULARISED)
    with loop.precision("mixed_bfloat16"):
        twin = language.build_stateful(config, 2, "twin")
    recurrent = language.recurrent_layers(twin)[0]
    assert recurrent.compute_dtype == "bfloat16" and recurrent.cell.recurrent_kernel.dtype == "float32"
    twin.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    tokens = np.random.default_rng(0).integers(0, 30, (2, 5)).astype(np.int32)
    penalty = rnn_regularizers.penalties(tf.ones((2, 5, 8), tf.bfloat16), tf.ones((2, 5, 8), tf.bfloat16), 2.0, 1.0)
    assert penalty.dtype == tf.float32  # added to the float32 loss
    assert np.isfinite(twin.train_on_batch(tokens, tokens))
