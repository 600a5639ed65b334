"""airbench_cifar10: the whitening layer, test-time augmentation in the exported signature, the
optimizer's equivalence with airbench's PyTorch SGD, the schedule, lookahead, one training run."""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.conftest import export_fresh, random_images
from training import airbench, image_task, loop
from training.bench.measure import pipeline_throughput
from training.recipes import Recipe, resolve
from zoo import registry
from zoo.data.images import alternating_flip_pipeline
from zoo.models.airbench import VIEW_WEIGHTS, AirbenchConfig, PatchWhitening

SPEC = registry.get("airbench_cifar10")


def correlated_images(count=64, size=12, seed=0):
    """Images whose pixels are correlated across channels and neighbours: [N, size, size, 3]."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(count, size + 1, size + 1, 3))
    smooth = noise[:, 1:, 1:] + 0.7 * noise[:, :-1, 1:] + 0.5 * noise[:, 1:, :-1]
    mixing = np.array([[1.0, 0.8, 0.6], [0.0, 0.5, 0.4], [0.0, 0.0, 0.3]])
    return (smooth @ mixing + 0.2).astype(np.float32)


def test_the_whitening_layer_whitens_its_patches():
    inputs = correlated_images()
    layer = PatchWhitening(24, 2)
    layer.build(inputs.shape)
    layer.kernel.assign(airbench.whitening_kernel(inputs, 2))
    outputs = keras.ops.convert_to_numpy(layer(inputs)).reshape(-1, 24)  # [positions, 24]
    moment = outputs[:, :12].T @ outputs[:, :12] / len(outputs)
    np.testing.assert_allclose(moment, np.eye(12), atol=0.02)
    np.testing.assert_allclose(outputs[:, 12:], -outputs[:, :12], atol=1e-5)  # each direction's negative
    patches = np.lib.stride_tricks.sliding_window_view(inputs, (2, 2), axis=(1, 2)).reshape(-1, 12)
    raw_moment = patches.T @ patches / len(patches)
    assert np.abs(raw_moment - np.diag(np.diag(raw_moment))).max() > 0.5  # the inputs were far from white


def test_the_trainer_sets_the_whitening_kernel_from_the_scaled_images():
    model = SPEC.build(dataclasses.replace(SPEC.config, widths=(8, 8, 8)))
    images = random_images((32, 32, 3), count=20)
    airbench.init_whitening(model, images)
    scaled = keras.ops.convert_to_numpy(model.get_layer("scale")(images.astype("float32")))
    np.testing.assert_allclose(model.get_layer("whitening").kernel.numpy(), airbench.whitening_kernel(scaled, 2),
                               rtol=1e-4, atol=1e-4)


def test_identity_initialisation_passes_channels_through_the_centre_tap():
    kernel = SPEC.build().get_layer("block2_conv1").kernel.numpy()  # [3, 3, 64, 256]
    identity = np.zeros((3, 3, 64, 64))
    identity[1, 1] = np.eye(64)
    np.testing.assert_array_equal(kernel[:, :, :, :64], identity)
    assert 0.9 / np.sqrt(9 * 64) < np.abs(kernel[:, :, :, 64:]).max() <= 1.0001 / np.sqrt(9 * 64)  # PyTorch bound


def views(images: np.ndarray) -> list[np.ndarray]:
    """The six test-time views, in VIEW_WEIGHTS[2]'s order, computed with numpy."""
    padded = np.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    result = []
    for image in (images, padded[:, :32, :32], padded[:, 2:, 2:]):
        result += [image, image[:, :, ::-1]]
    return result


def test_the_exported_signature_averages_the_views_probabilities(tmp_path):
    model = export_fresh("airbench_cifar10", tmp_path / "airbench_cifar10")
    plain = SPEC.build(dataclasses.replace(SPEC.config, tta_level=0))
    plain.set_weights(model.get_weights())
    images = random_images((32, 32, 3), count=5)
    expected = sum(weight * keras.ops.convert_to_numpy(keras.ops.softmax(plain(view, training=False)))
                   for weight, view in zip(VIEW_WEIGHTS[2], views(images)))
    served = tf.saved_model.load(str(tmp_path / "airbench_cifar10")).signatures["serving_default"](
        image=tf.constant(images))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(served["class_id"].numpy(), expected.argmax(-1))
    single = keras.ops.convert_to_numpy(keras.ops.softmax(plain(images, training=False)))
    assert np.abs(single - expected).max() > 1e-4  # the views do change the answer


def test_the_optimizer_steps_as_airbenchs_pytorch_sgd():
    """A few steps of the catalog's recipe (constant rate) on a quadratic, against a hand-written
    PyTorch SGD (nesterov, dampening 0, weight_decay added to the gradient) with airbench's own
    parameter groups, rates and decays, on the loss summed over a batch of 1024."""
    batch, momentum = 1024, 0.85
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr = 11.5 / kilostep_scale
    wd = 0.0153 * batch / kilostep_scale
    groups = {"kernel": (lr, wd / lr), "beta": (lr * 64, wd / (lr * 64))}  # other parameters, BN biases
    rng = np.random.default_rng(0)
    # Curvatures the rates keep stable: 1.5 x 0.1 for the kernel, 96 x 0.002 for the offsets.
    hessian = {name: scale * (lambda a: a @ a.T / 4 + np.eye(4))(rng.normal(size=(4, 4)))
               for name, scale in (("kernel", 0.1), ("beta", 0.002))}
    target = {name: rng.normal(size=4) for name in groups}
    start = {name: rng.normal(size=4) for name in groups}

    def mean_gradient(name, weights):  # of the per-example loss 1/2 (w - t)' H (w - t)
        return hessian[name] @ (weights - target[name])

    torch_weights, buffers = dict(start), {name: np.zeros(4) for name in groups}
    for _ in range(8):
        for name, (group_lr, group_wd) in groups.items():
            gradient = batch * mean_gradient(name, torch_weights[name]) + group_wd * torch_weights[name]
            buffers[name] = momentum * buffers[name] + gradient
            torch_weights[name] = torch_weights[name] - group_lr * (gradient + momentum * buffers[name])

    def keras_steps(overrides):
        optimizer = loop.make_optimizer(resolve(SPEC, {"schedule": "constant", **overrides}), steps_per_epoch=48)
        variables = [keras.Variable(start[name], dtype="float64", name=name) for name in groups]
        for _ in range(8):
            optimizer.apply_gradients([(keras.ops.convert_to_tensor(mean_gradient(v.name, v.numpy())), v)
                                       for v in variables])
        return {variable.name: variable.numpy() for variable in variables}

    ours = keras_steps({})
    for name in groups:  # the rate is a float32 variable in Keras
        np.testing.assert_allclose(ours[name], torch_weights[name], rtol=1e-6, atol=1e-9)
    assert not np.allclose(keras_steps({"batch_norm_rate_factor": 1.0})["beta"], torch_weights["beta"], rtol=1e-3)


def test_the_triangular_schedule_rises_to_the_peak_then_falls():
    recipe = Recipe(learning_rate=1.5, schedule="triangular", epochs=10)
    schedule = loop.learning_rate_schedule(recipe, steps_per_epoch=48)  # peak at step 110 of 480
    rates = [float(schedule(step)) for step in (0, 55, 110, 295, 480)]
    np.testing.assert_allclose(rates, [0.3, 0.9, 1.5, 1.5 * (1 + 0.93 * -0.5), 1.5 * 0.07], rtol=1e-5)


def test_lookahead_averages_every_k_steps_and_ends_on_the_average():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=lambda y, p: -keras.ops.mean(p))  # w += 1 per step
    lookahead = airbench.Lookahead(every=2, total_steps=4)
    model.fit(np.ones((4, 1)), np.ones((4, 1)), batch_size=1, epochs=1, verbose=0, callbacks=[lookahead])
    d2, d4 = 0.95 ** 2 * (2 / 4) ** 3, 0.95 ** 2 * 1.0
    after2 = d2 * 0 + (1 - d2) * 2  # weights 2 at step 2, averaged with the start (0)
    after4 = d4 * after2 + (1 - d4) * (after2 + 2)
    np.testing.assert_allclose(model.get_weights()[0].item(), after4, rtol=1e-6)


def test_the_whitening_bias_stops_training_after_its_epochs():
    model = keras.Sequential([keras.Input((4, 4, 3)), PatchWhitening(24, 2, name="whitening"),
                              keras.layers.Flatten(), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    biases = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: biases.append(
        model.get_layer("whitening").bias.numpy().copy()))
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(16, 4, 4, 3)), rng.normal(size=(16, 1)), batch_size=4, epochs=3, verbose=0,
              callbacks=[airbench.FreezeWhiteningBias(after=1), record])
    assert not np.allclose(biases[0], 0)  # trained in epoch 1
    np.testing.assert_array_equal(biases[1], biases[0])  # not after, momentum included
    np.testing.assert_array_equal(biases[2], biases[0])


def test_a_short_run_on_mock_data_trains_and_exports_with_test_time_augmentation(tmp_path):
    spec = dataclasses.replace(SPEC, config=AirbenchConfig(widths=(8, 16, 16)))
    recipe = resolve(spec, {"epochs": 2, "batch_size": 32, "freeze_whitening_bias_after": 1,
                            "lookahead_every": 2})
    with tfds.testing.mock_data(num_examples=96):
        model, measured, history, compute = image_task.train_image_model(spec, recipe, None, tmp_path, None, 0)
    assert history["epoch"] == [1, 2] and np.isfinite(history["loss"]).all()
    assert set(measured) == {"test_accuracy", "test_accuracy_without_tta", "train_accuracy"}
    assert model.get_layer("scores").level == 2  # the exported model has the views
    assert compute["examples_seen"] == 2 * 3 * 32 and compute["total"] == compute["per_example"] * 192
    glorot_bound = np.sqrt(6 / (2 * 2 * 3 + 2 * 2 * 24))
    assert np.abs(model.get_layer("whitening").kernel.numpy()).max() > glorot_bound  # set from the data


def test_a_holdout_run_is_not_exported():
    with pytest.raises(ValueError, match="training.ablation"):
        image_task.train(SPEC, resolve(SPEC, {"validation": "holdout"}), None, None, None, None, 0)


def test_alternating_flips_mirror_each_image_on_every_other_epoch_and_a_resume_continues_exactly():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(12)))
    unshifted = list(alternating_flip_pipeline(dataset, 4, seed=0, first_epoch=0, epochs=4, padding=0))
    mirrored = np.full((4, 12), -1)  # [epoch, image]: 1 mirrored, 0 not
    for step, (batch, labels) in enumerate(unshifted):
        for image, label in zip(batch.numpy(), labels.numpy()):
            assert (image == images[label]).all() or (image == images[label][:, ::-1]).all()
            mirrored[step // 3, label] = int(not (image == images[label]).all())
    assert (mirrored >= 0).all() and (mirrored[1] == 1 - mirrored[0]).all() and (mirrored[2] == mirrored[0]).all()
    assert 0 < mirrored[0].sum() < 12  # each image's first state is drawn
    whole = list(alternating_flip_pipeline(dataset, 4, seed=0, first_epoch=0, epochs=4))
    resumed = list(alternating_flip_pipeline(dataset, 4, seed=0, first_epoch=2, epochs=4))
    for (batch, labels), (again, again_labels) in zip(whole[6:], resumed, strict=True):
        np.testing.assert_array_equal(batch, again)
        np.testing.assert_array_equal(labels, again_labels)
    shifted = whole[0][0].numpy()
    assert any(not (image == images[label]).all() and not (image == images[label][:, ::-1]).all()
               for image, label in zip(shifted, whole[0][1].numpy()))  # translated


def test_the_bench_draws_airbenchs_pipeline():
    assert pipeline_throughput(SPEC, batches=2) > 0
