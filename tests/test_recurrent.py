"""zoo.models.recurrent's hoisted layers give Keras' outputs, states and gradients for the same
weights, alone, under weight drop and in a language model's training step."""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.models import language, recurrent, rnn_regularizers

KERAS_LAYERS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}


def _pair(cell: str, units: int = 6, features: int = 5, hoisted_options: dict | None = None, **options):
    if cell != "rnn":
        options["use_cudnn"] = False  # Keras' loop on a GPU too
    hoisted = recurrent.HOISTED_LAYERS[cell](units, return_sequences=True, return_state=True,
                                             **options, **(hoisted_options or {}))
    plain = KERAS_LAYERS[cell](units, return_sequences=True, return_state=True, **options)
    for layer in (hoisted, plain):
        layer.build((None, None, features))
    rng = np.random.default_rng(0)
    # nonzero biases, so both of the GRU's biases are exercised
    plain.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in plain.get_weights()])
    hoisted.set_weights(plain.get_weights())
    return hoisted, plain


def _run(layer, inputs, states, training: bool):
    """outputs [N, T, H], final states, and the gradients of a loss over both w.r.t. the weights
    and the inputs."""
    inputs = tf.convert_to_tensor(inputs)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs, *final = layer(inputs, initial_state=states, training=training)
        loss = tf.reduce_sum(outputs * tf.sin(outputs)) + sum(tf.reduce_sum(state ** 2) for state in final)
    gradients = tape.gradient(loss, [*layer.trainable_variables, inputs])
    return [np.asarray(t) for t in (outputs, *final, *gradients)]


def _count_calls(owner, name: str, monkeypatch) -> list:
    """Records the arguments of every call of owner.<name> (still called through)."""
    calls: list = []
    function = getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return function(*args, **kwargs)
    monkeypatch.setattr(owner, name, counted)
    return calls


@pytest.mark.parametrize("cell", sorted(recurrent.HOISTED_LAYERS))
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("loop", ["unrolled", "scan"])
def test_hoisted_layers_match_keras_outputs_states_and_gradients(cell, training, loop, monkeypatch):
    """Both forms of the hoisted loop: unrolled (a known length up to UNROLL_LIMIT) and tf.scan."""
    if loop == "scan":
        monkeypatch.setattr(recurrent, "UNROLL_LIMIT", 6)  # below the 7 steps here
    hoisted, plain = _pair(cell)
    steps = _count_calls(hoisted, "_step", monkeypatch)
    scans = _count_calls(tf, "scan", monkeypatch)
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(3, 7, 5)).astype(np.float32)
    states = [rng.normal(size=(3, 6)).astype(np.float32) for _ in range(2 if cell == "lstm" else 1)]
    for got, expected in zip(_run(hoisted, inputs, states, training), _run(plain, inputs, states, training),
                             strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert steps  # the hoisted loop ran
    assert len(scans) == (loop == "scan")


def test_a_sequence_of_unknown_length_or_under_xla_runs_the_scan(monkeypatch):
    """A length unknown when the step is traced, or XLA, takes tf.scan, with the unrolled form's
    results."""
    hoisted, _ = _pair("lstm")
    inputs = np.random.default_rng(8).normal(size=(2, 4, 5)).astype(np.float32)
    unrolled = np.asarray(hoisted(inputs)[0])
    scans = _count_calls(tf, "scan", monkeypatch)
    spec = tf.TensorSpec([None, None, 5], tf.float32)
    for function in (tf.function(lambda x: hoisted(x)[0], input_signature=[spec]),
                     tf.function(lambda x: hoisted(x)[0], jit_compile=True)):
        np.testing.assert_allclose(function(inputs), unrolled, rtol=1e-5, atol=1e-6)
    assert len(scans) == 2


@pytest.mark.parametrize("cell", sorted(recurrent.HOISTED_LAYERS))
@pytest.mark.parametrize("case", ["mask", "go_backwards", "dropout", "hoist_inputs=False"])
def test_hoisted_layers_take_keras_loop_where_they_do_not_apply(cell, case, monkeypatch):
    """A mask (as the serving signatures pass), going backwards, cell dropout in training, or
    hoist_inputs=False runs Keras' own loop, with Keras' results."""
    options = {"go_backwards": {"go_backwards": True}, "dropout": {"dropout": 0.5, "seed": 1}}.get(case, {})
    hoisted, plain = _pair(cell, hoisted_options={"hoist_inputs": False} if case == "hoist_inputs=False" else None,
                           **options)
    steps = _count_calls(hoisted, "_step", monkeypatch)
    inputs = np.random.default_rng(2).normal(size=(2, 4, 5)).astype(np.float32)
    mask = np.array([[True] * 4, [True, True, False, False]]) if case == "mask" else None
    training = case == "dropout"
    got, expected = hoisted(inputs, mask=mask, training=training)[0], plain(inputs, mask=mask, training=training)[0]
    if case != "dropout":  # (dropout draws its own masks in each layer)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert not steps


def test_a_gru_with_reset_before_takes_keras_loop(monkeypatch):
    hoisted, plain = _pair("gru", reset_after=False)
    steps = _count_calls(hoisted, "_step", monkeypatch)
    inputs = np.random.default_rng(5).normal(size=(2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(hoisted(inputs)[0], plain(inputs)[0], rtol=1e-6)
    assert not steps


@pytest.mark.parametrize("cell", sorted(recurrent.HOISTED_LAYERS))
def test_hoisted_layers_round_trip_their_config(cell):
    layer = recurrent.HOISTED_LAYERS[cell](4, hoist_inputs=False, return_sequences=True,
                                           **({} if cell == "rnn" else {"use_cudnn": False}))
    clone = type(layer).from_config(layer.get_config())
    assert clone.hoist_inputs is False and getattr(clone, "use_cudnn", False) is False


def test_hoisted_lstm_under_mixed_bfloat16_computes_in_bfloat16():
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        hoisted, plain = _pair("lstm")
    finally:
        keras.config.set_dtype_policy(policy)
    inputs = np.random.default_rng(3).normal(size=(2, 5, 5)).astype(np.float32)
    got, expected = hoisted(inputs, training=True)[0], plain(inputs, training=True)[0]
    assert got.dtype == expected.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(got, tf.float32), tf.cast(expected, tf.float32), atol=0.05)


class KerasLoopWeightDropLSTM(rnn_regularizers._WeightDrop, keras.layers.LSTM):
    """Weight drop over Keras' own LSTM: the training path before the hoisted layers."""


def test_a_weight_dropped_language_model_trains_as_with_keras_loop(monkeypatch):
    """The stateful training twin with every regulariser on: the same loss and gradients with
    the hoisted layers as with Keras' loop, for the same weights and seeds (dropout masks)."""
    config = dataclasses.replace(language.LSTM_PTB_CONFIG, vocab_size=30, embedding_dim=8, hidden_units=8)

    def twin(keras_loop: bool):
        # Both clone every layer after the same seed, so their dropout layers' and weight drop's
        # seed generators draw the same masks.
        keras.utils.set_random_seed(7)
        return keras.models.clone_model(language.build_stateful(config, 4, "twin"),
                                        clone_function=lambda layer: _clone(layer, keras_loop))

    hoisted, reference = twin(False), twin(True)
    reference.set_weights(hoisted.get_weights())
    assert any(type(layer) is KerasLoopWeightDropLSTM for layer in reference.layers)
    steps = [_count_calls(layer, "_step", monkeypatch) for layer in language.recurrent_layers(hoisted)]
    tokens = np.random.default_rng(4).integers(0, 30, (4, 9)).astype(np.int32)
    targets = np.roll(tokens, -1, axis=1)

    def step(model):
        with tf.GradientTape() as tape:
            logits = model(tokens, training=True)
            loss = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
            loss = tf.reduce_mean(loss) + sum(model.losses)
        states = [np.asarray(state) for layer in language.recurrent_layers(model) for state in layer.states]
        return [loss.numpy(), *[g.numpy() for g in tape.gradient(loss, model.trainable_variables)], *states]

    for _ in range(2):  # the second step starts from the states the first carried over
        for got, expected in zip(step(hoisted), step(reference), strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert len(steps) == 2 and all(steps)  # both layers ran the hoisted loop


def _clone(layer, keras_loop: bool):
    if keras_loop and isinstance(layer, rnn_regularizers.WeightDropLSTM):
        config = layer.get_config()
        assert config.pop("hoist_inputs") is True
        return KerasLoopWeightDropLSTM.from_config(config)
    return type(layer).from_config(layer.get_config())


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_an_xla_train_step_matches_the_plain_one(cell):
    """recipe.jit_compile=True compiles the twin's train step with XLA: from the same weights, two
    steps give the same losses, weights and carried states as without (no dropout, whose random
    masks XLA may draw with another algorithm)."""
    from tests.test_language import tiny_spec
    from training import language_task
    from training.recipes import Recipe

    spec = tiny_spec(cell)
    spec = dataclasses.replace(spec, config=dataclasses.replace(spec.config, dropout=0.0))
    recipe = Recipe(optimizer="sgd", learning_rate=1.0, momentum=0.0, weight_decay=0.0, batch_size=2,
                    sequence_length=5, schedule="constant", gradient_clip_norm=0.25)
    twins = [language_task.compiled_twin(spec, dataclasses.replace(recipe, jit_compile=jit), steps_per_epoch=3)
             for jit in (False, True)]
    twins[1].set_weights(twins[0].get_weights())
    tokens = np.random.default_rng(6).integers(0, spec.config.vocab_size, (2, 5)).astype(np.int32)
    targets = np.roll(tokens, -1, axis=1)
    for _ in range(2):
        losses = [float(twin.train_on_batch(tokens, targets)) for twin in twins]
        np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    for got, expected in zip(twins[1].get_weights(), twins[0].get_weights(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    states = [[np.asarray(s) for layer in language.recurrent_layers(twin) for s in layer.states] for twin in twins]
    for got, expected in zip(*states, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert twins[1].jit_compile and not twins[0].jit_compile
