"""Family-level checks: the perceptron rule, the mistake bound, dropout, hyperplane distance,
ResNet depths."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.conftest import export_fresh, random_images
from zoo.models import allconv, common, linear, mlp, perceptron, resnet

X = np.array([[1.0, 2.0], [-1.0, -1.0], [2.0, 0.5]], np.float32)
Y = np.array([1, 0, 1])


def tiny_perceptron(mode, averaged=False):
    model = perceptron.build_perceptron(perceptron.PerceptronConfig(
        input_shape=(2,), num_classes=2, pixel_input=False, mode=mode, averaged=averaged))
    model.compile(loss=perceptron.perceptron_criterion, metrics=["categorical_accuracy"])
    return model


def fit_tiny(mode, batch_size=3, averaged=False):
    """One epoch over X in order; returns the model."""
    model = tiny_perceptron(mode, averaged)
    model.fit(X, np.eye(2)[Y], batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return model


def assert_working_weights(model, kernel, bias):
    np.testing.assert_allclose(model.working_kernel.numpy(), kernel)
    np.testing.assert_allclose(model.working_bias.numpy(), bias)


def test_online_rule_matches_hand_computation():
    model = fit_tiny("online")
    # x1 = (1, 2), y = 1: all scores 0, argmax 0 -> mistake: w1 += x1, w0 -= x1, b1 += 1, b0 -= 1.
    # x2 = (-1, -1), y = 0: f0 = 1 + 2 - 1 = 2 > f1 = -2 -> right. x3 = (2, .5): f1 = 4 > f0 -> right.
    assert_working_weights(model, [[-1, 1], [-2, 2]], [-1, 1])
    np.testing.assert_allclose(model.get_layer("scores").kernel.numpy(), [[-1, 1], [-2, 2]])  # not averaged


@pytest.mark.parametrize("mode", ["minibatch", "batch"])
def test_summed_rule_matches_hand_computation(mode):
    # All three scored with w = 0 -> predicted 0; mistakes x1, x3 (y = 1): one summed step,
    # the gradient step on J(w) = -sum_mistakes (f_y - f_pred).
    assert_working_weights(fit_tiny(mode), [[-3, 3], [-2.5, 2.5]], [-2, 2])


def test_minibatch_applies_one_step_per_batch():
    model = fit_tiny("minibatch", batch_size=2)
    # Batch 1 {x1, x2} at w = 0: only x1 wrong -> w1 = x1, w0 = -x1, b = (-1, 1).
    # Batch 2 {x3}: f0 = -2 - 1 - 1 = -4, f1 = 4 -> right: no change.
    assert_working_weights(model, [[-1, 1], [-2, 2]], [-1, 1])
    assert model.counter.numpy() == 2


def test_averaged_weights_are_the_mean_of_every_snapshot():
    model = fit_tiny("online", averaged=True)
    # Snapshots w_0 = 0, then after x1, x2, x3: w_a, w_a, w_a (only x1 was a mistake)
    # -> average = 3/4 w_a.
    expected = 0.75 * np.array([[-1, 1], [-2, 2]])
    np.testing.assert_allclose(model.get_layer("scores").kernel.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(model.get_layer("scores").bias.numpy(), 0.75 * np.array([-1, 1]))


def separable_data(count, margin, seed):
    """Points in the unit disc at least `margin` from the line u.x = 0, labelled by its side."""
    rng = np.random.default_rng(seed)
    direction = np.array([np.cos(0.7), np.sin(0.7)])
    points = rng.uniform(-1, 1, size=(count * 10, 2))
    points = points[np.linalg.norm(points, axis=1) <= 1]
    distance = points @ direction
    points = points[np.abs(distance) >= margin][:count]
    return points.astype(np.float32), (points @ direction > 0).astype(int), direction


@pytest.mark.parametrize("margin", [0.05, 0.1, 0.2])
def test_online_perceptron_obeys_mistake_bound(margin):
    points, labels, direction = separable_data(300, margin, seed=int(margin * 100))
    model = tiny_perceptron("online")
    mistakes = []
    for _ in range(50):  # epochs until an error-free pass
        model.fit(points, np.eye(2)[labels], batch_size=300, epochs=1, shuffle=False, verbose=0)
        mistakes.append(model.mistake_tracker.result().numpy() * len(points))
        if mistakes[-1] == 0:
            break
    assert mistakes[-1] == 0, "converged on separable data"
    # With the bias, x is augmented to (x, 1): R^2 = max|x|^2 + 1; (u, 0) keeps margin gamma.
    radius = np.sqrt(np.max(np.sum(points ** 2, axis=1)) + 1.0)
    gamma = np.min(np.abs(points @ direction))
    # Two-class multi-class rule = binary perceptron on w1 - w0 (steps of 2x from zero: same mistakes).
    assert sum(mistakes) <= (radius / gamma) ** 2


def test_dropout_stochastic_in_training_and_deterministic_at_inference():
    model = mlp.build_mlp_mnist()
    images = random_images((28, 28, 1), count=4)
    inference = [np.asarray(model(images, training=False)) for _ in range(3)]
    np.testing.assert_array_equal(inference[0], inference[1])
    np.testing.assert_array_equal(inference[0], inference[2])
    training = [np.asarray(model(images, training=True)) for _ in range(2)]
    assert not np.allclose(training[0], training[1])


def test_dropout_off_in_exported_artifact(tmp_path):
    export_fresh("mlp_mnist", tmp_path / "mlp")
    loaded = zoo.load(tmp_path / "mlp")
    images = random_images((28, 28, 1), count=4)
    np.testing.assert_array_equal(loaded.predict(images).scores, loaded.predict(images).scores)


@pytest.mark.parametrize("name", ["linear_mnist", "perceptron_mnist"])
def test_hyperplane_distance_output_matches_weights(name, tmp_path):
    model = zoo.get_model(name)
    if name == "perceptron_mnist":  # zero-initialised: give it a hyperplane first
        model.get_layer("scores").set_weights([np.random.default_rng(0).normal(size=(784, 10)),
                                              np.arange(10, dtype=np.float32)])
    from training.cards import make_card
    from training.recipes import resolve
    from zoo.export import export
    spec = zoo.get_spec(name)
    card = make_card(spec, resolve(spec), model, {"test_accuracy": {"value": 0, "split": "test",
                     "examples": 0}}, {}, 0.0)
    export(model, spec, card, tmp_path / name)
    images = random_images((28, 28, 1), count=5)
    result = zoo.load(tmp_path / name).predict(images)
    expected = linear.hyperplane_distance(model, images.astype(np.float32) / 255.0)
    np.testing.assert_allclose(result.distance, expected, rtol=1e-4, atol=1e-5)
    kernel = model.get_layer("scores").kernel.numpy()
    np.testing.assert_allclose(result.distance * np.linalg.norm(kernel, axis=0), result.scores,
                               rtol=1e-4, atol=1e-4)
    assert (result.probabilities is None) == (name == "perceptron_mnist")


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_resnet_depths_build_with_expected_layers(depth):
    model = resnet.build_resnet(resnet.ResNetConfig(depth=depth))
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convolutions) + 1 == depth  # 6n conv layers + stem conv + final dense = 6n + 2
    outputs = np.asarray(model(random_images((32, 32, 3), count=2), training=False))
    assert outputs.shape == (2, 10) and np.all(np.isfinite(outputs))


def test_resnet_rejects_bad_depth():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        resnet.build_resnet(resnet.ResNetConfig(depth=21))


def test_builder_argument_errors():
    with pytest.raises(ValueError, match="mode"):
        perceptron.build_perceptron(perceptron.PerceptronConfig(mode="sideways"))
    with pytest.raises(ValueError, match="activation"):
        mlp.build_mlp(mlp.MLPConfig(activation="swishy"))
    with pytest.raises(ValueError, match="dropout"):
        mlp.build_mlp(mlp.MLPConfig(dropout=1.0))


def _bn_pair(dtype=None):
    """zoo's fused BatchNormalization and Keras' own, built alike with the same random variables."""
    rng = np.random.default_rng(0)
    layers = (common.BatchNormalization(momentum=0.9, dtype=dtype),
              keras.layers.BatchNormalization(momentum=0.9, dtype=dtype))
    for layer in layers:
        layer.build((4, 5, 5, 3))
    for variable in zip(*(layer.weights for layer in layers)):
        values = rng.uniform(0.5, 1.5, variable[0].shape).astype(np.float32)
        for each in variable:
            each.assign(values)
    return layers


def test_fused_batch_norm_matches_keras_in_training_and_inference():
    fused, reference = _bn_pair()
    rng = np.random.default_rng(1)
    inputs = tf.constant(rng.normal(2.0, 3.0, (4, 5, 5, 3)).astype(np.float32))
    weights = tf.constant(rng.normal(size=(4, 5, 5, 3)).astype(np.float32))  # a loss with every gradient
    results = []
    for layer in (fused, reference):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs, training=True)
            loss = tf.reduce_sum(outputs * weights)
        gradients = tape.gradient(loss, [inputs, layer.gamma, layer.beta])
        results.append([outputs, *gradients, layer.moving_mean, layer.moving_variance,
                        layer(inputs, training=False)])
    for got, expected in zip(*results):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_fused_batch_norm_runs_the_fused_kernel_when_training(dtype):
    layer = common.BatchNormalization(dtype=dtype)
    layer.build((2, 4, 4, 3))
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(
        tf.TensorSpec((2, 4, 4, 3), tf.float32)).graph
    fused = [op for op in graph.get_operations() if op.type.startswith("FusedBatchNorm")]
    assert fused and fused[0].get_attr("T") == (tf.bfloat16 if dtype == "mixed_bfloat16" else tf.float32)


def test_allconv_downsamples_by_strided_convs_not_pooling():
    model = allconv.build_allconv_mnist()
    assert not [layer for layer in model.layers if "pool" in type(layer).__name__.lower()]
    # 28 -> two 'valid' 3x3 convs -> 24 -> stride 2 -> 12 -> 10 -> 8 -> 4 -> the 4x4 head -> 1
    assert [model.get_layer(f"stage{s}_down").output.shape[1] for s in (0, 1)] == [12, 4]
    assert model.get_layer("head").output.shape[1:] == (1, 1, 128)
    assert all(model.get_layer(f"{layer.name}_bn") for layer in model.layers if isinstance(layer, keras.layers.Conv2D))


def test_allconv_rejects_an_input_too_small_for_its_stages():
    with pytest.raises(ValueError, match=r"input_shape \(12, 12, 1\) is too small for 2 stages"):
        allconv.build_allconv_mnist(allconv.AllConvConfig(input_shape=(12, 12, 1)))


def test_allconv_test_time_views_average_the_four_one_pixel_shifts():
    plain = allconv.build_allconv_mnist(allconv.AllConvConfig(filters=(8,), head_filters=16))
    tta = allconv.build_allconv_mnist(allconv.AllConvConfig(filters=(8,), head_filters=16, tta_level=1))
    tta.set_weights(plain.get_weights())  # the views add no weights
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype(np.uint8)
    padded = np.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)])  # zeros
    views = [images, padded[:, 2:, 1:-1], padded[:, :-2, 1:-1], padded[:, 1:-1, 2:], padded[:, 1:-1, :-2]]
    np.testing.assert_array_equal(views[1][:, 4, 7], images[:, 5, 7])  # up: row 5 moves to row 4
    expected = sum(weight * keras.ops.convert_to_numpy(keras.ops.softmax(plain(view, training=False)))
                   for weight, view in zip(common.VIEW_WEIGHTS["shift"][1], views))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(tta(images, training=False))),
                               expected, atol=1e-5)
    assert tta(images, training=True).shape == (3, 10)  # training: the image alone
    # The layer's own order (the shifts' weights are equal, so the scores alone could not tell).
    stacked = common.TestTimeViews(1, "shift")(images.astype(np.float32), training=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(stacked), np.concatenate(views).astype(np.float32))
    with pytest.raises(ValueError, match=r"tta_level must be one of \[0, 1\] \(shift views\), got 2"):
        allconv.build_allconv_mnist(allconv.AllConvConfig(tta_level=2))
    with pytest.raises(ValueError, match=r"tta_level must be one of \[0, 1\] \(shift views\), got True"):
        allconv.build_allconv_mnist(allconv.AllConvConfig(tta_level=True))
    with pytest.raises(ValueError, match=r"view scheme must be one of \['mirror', 'shift'\], got 'spin'"):
        common.TestTimeViews(1, "spin")


def test_fused_batch_norm_takes_bfloat16_under_mixed_precision():
    fused, reference = _bn_pair("mixed_bfloat16")
    inputs = tf.constant(np.random.default_rng(2).normal(2.0, 3.0, (4, 5, 5, 3)), tf.bfloat16)
    outputs = [layer(inputs, training=True) for layer in (fused, reference)]
    assert outputs[0].dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(outputs[0], tf.float32), tf.cast(outputs[1], tf.float32), atol=0.05)
    np.testing.assert_allclose(fused.moving_variance.numpy(), reference.moving_variance.numpy(), rtol=0.02)
    assert fused.moving_mean.dtype == "float32"  # statistics stay float32
