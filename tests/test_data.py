import numpy as np
import pytest
import tensorflow as tf

from training.cards import files_sha256
from zoo import registry
from zoo.data.common import raw_data_dir
from zoo.data.images import (
    AUGMENTATIONS,
    IMAGE_DATASETS,
    Affine,
    affine_transforms,
    elastic_displacements,
    image_pipeline,
    load_images,
    random_affine,
    warp,
)


def test_raw_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    assert raw_data_dir() is None
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path))
    assert raw_data_dir() == tmp_path.resolve()
    with pytest.raises(ValueError, match="does not exist"):
        raw_data_dir(tmp_path / "missing")


def test_missing_dataset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="has no 'mnist' folder"):
        load_images("mnist", "test", data_dir=tmp_path)
    with pytest.raises(ValueError, match="must be one of"):
        load_images("imagenet", "test")


def test_checksums_are_the_official_ones():
    checksums = files_sha256("mnist")
    assert checksums["t10k-labels-idx1-ubyte.gz"] == \
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"


@pytest.mark.parametrize("augment", AUGMENTATIONS)
def test_pipeline_keeps_uint8_and_shape(augment):
    images = np.random.default_rng(0).integers(0, 256, (10, 28, 28, 1), dtype=np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(10)))
    batches = list(image_pipeline(dataset, 4, training=True, augment=augment, seed=0))
    assert len(batches) == 2  # drop_remainder while training
    batch_images, batch_labels = batches[0]
    assert batch_images.dtype == tf.uint8 and batch_images.shape == (4, 28, 28, 1)
    evaluation = list(image_pipeline(dataset, 4, training=False))
    assert sum(int(b[1].shape[0]) for b in evaluation) == 10  # evaluation keeps every example
    np.testing.assert_array_equal(np.concatenate([b[0] for b in evaluation]), images)


def test_shift_augmentation_translates_without_changing_pixels():
    image = np.zeros((1, 28, 28, 1), np.uint8)
    image[0, 10:18, 10:18] = 200  # a square well inside the 2-pixel margin
    dataset = tf.data.Dataset.from_tensor_slices((np.repeat(image, 16, 0), np.zeros(16)))
    for batch, _ in image_pipeline(dataset, 16, training=True, augment="shift", seed=1):
        for augmented in batch.numpy():
            assert augmented.sum() == image.sum()  # a pure translation of the square


def transform(images, angle, scale, shift):
    count, height, width = images.shape[:3]
    transforms = affine_transforms(tf.fill([count], float(angle)), tf.fill([count], float(scale)),
                                   tf.constant([shift] * count, tf.float32), height, width)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32), transforms=transforms, output_shape=[height, width], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT").numpy()


def test_affine_transforms_are_the_stated_rotation_scale_and_shift():
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1)).astype(np.uint8)
    np.testing.assert_array_equal(transform(images, 0, 1, [0, 0]), images)
    shifted = np.zeros_like(images)
    shifted[:, :26, 3:] = images[:, 2:, :25]  # 3 pixels right, 2 up
    np.testing.assert_array_equal(transform(images, 0, 1, [3, -2]), shifted)
    np.testing.assert_allclose(transform(images, np.pi / 2, 1, [0, 0]), np.rot90(images, 3, axes=(1, 2)), atol=1e-3)
    doubled = transform(images, 0, 2, [0, 0])  # about the centre (13.5, 13.5): output 15 <- input 14.25
    np.testing.assert_allclose(doubled[:, 15, 15], (images[:, 14, 14] * 0.75 + images[:, 14, 15] * 0.25) * 0.75
                               + (images[:, 15, 14] * 0.75 + images[:, 15, 15] * 0.25) * 0.25, rtol=1e-5)


def test_affine_augmentation_moves_digits_within_its_ranges():
    image = np.zeros((1, 28, 28, 1), np.uint8)
    image[0, 12:16, 6:22] = 255  # a horizontal bar through the centre
    dataset = tf.data.Dataset.from_tensor_slices((np.repeat(image, 64, 0), np.zeros(64)))
    still = next(iter(image_pipeline(dataset, 64, True, "affine", 0, Affine(0.0, 0.0, 0.0))))[0].numpy()
    np.testing.assert_array_equal(still, np.repeat(image, 64, 0))
    moved = next(iter(image_pipeline(dataset, 64, True, "affine", 0, Affine(20.0, 3.0, 0.1))))[0].numpy()
    assert len({picture.tobytes() for picture in moved}) == 64  # drawn per image
    for picture in moved:
        rows, columns = np.nonzero(picture[..., 0] > 127)
        # the bar's centre moves by at most the translation (plus rounding); its tilt stays within 20 degrees
        assert abs(rows.mean() - 13.5) <= 3.6 and abs(columns.mean() - 13.5) <= 3.6
        slope = np.polyfit(columns, rows, 1)[0]
        assert abs(np.degrees(np.arctan(slope))) <= 21


def _field(dx: float, dy: float, count: int = 2):  # a constant displacement [count, 28, 28, 2]
    return tf.concat([tf.fill([count, 28, 28, 1], float(dx)), tf.fill([count, 28, 28, 1], float(dy))], -1)


def test_warp_reads_the_displaced_points_bilinearly_with_zeros_outside():
    images = tf.constant(np.random.default_rng(1).uniform(0, 255, (2, 28, 28, 1)), tf.float32)
    pixels = images.numpy()
    identity = affine_transforms(tf.zeros([2]), tf.ones([2]), tf.zeros([2, 2]), 28, 28)
    np.testing.assert_allclose(warp(images, identity, _field(0, 0)), pixels, atol=1e-4)
    expected = np.zeros_like(pixels)
    expected[:, :, :27] = pixels[:, :, 1:]  # each pixel reads x + 1; the last column reads the zeros beyond
    np.testing.assert_allclose(warp(images, identity, _field(1, 0)), expected, atol=1e-4)
    expected = np.zeros_like(pixels)
    expected[:, :, 1:] = pixels[:, :, :27]  # x - 1; the first column reads the zeros before
    np.testing.assert_allclose(warp(images, identity, _field(-1, 0)), expected, atol=1e-4)
    expected = np.zeros_like(pixels)
    expected[:, :27] = (pixels[:, :27] + pixels[:, 1:]) / 2  # y + 0.5, between two rows
    expected[:, 27] = pixels[:, 27] / 2  # half of the last row, half of the zeros below
    np.testing.assert_allclose(warp(images, identity, _field(0, 0.5)), expected, atol=1e-3)
    for far in (40.0, -40.0):  # wholly outside: zeros, not the clipped border
        np.testing.assert_array_equal(warp(images, identity, _field(far, far / 2)), np.zeros_like(pixels))


def test_warp_displaces_in_output_coordinates_then_applies_the_transform():
    images = tf.constant(np.random.default_rng(2).uniform(0, 255, (2, 28, 28, 1)), tf.float32)
    quarter = affine_transforms(tf.fill([2], np.pi / 2), tf.ones([2]), tf.zeros([2, 2]), 28, 28)
    rotated = np.rot90(images.numpy(), 3, axes=(1, 2))  # what the quarter turn alone gives (as above)
    expected = np.zeros_like(rotated)
    expected[:, :, :27] = rotated[:, :, 1:]  # the rotated image read at x + 1
    np.testing.assert_allclose(warp(images, quarter, _field(1, 0)), expected, atol=1e-3)


def test_the_elastic_path_with_no_distortion_is_the_affine_augmentation():
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (8, 28, 28, 1)), tf.float32)
    transforms = affine_transforms(tf.constant(rng.uniform(-0.4, 0.4, 8), tf.float32),
                                   tf.constant(rng.uniform(0.9, 1.1, 8), tf.float32),
                                   tf.constant(rng.uniform(-3, 3, (8, 2)), tf.float32), 28, 28)
    projected = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=[28, 28], fill_value=0.0, interpolation="BILINEAR",
        fill_mode="CONSTANT")
    np.testing.assert_allclose(warp(images, transforms, tf.zeros([8, 28, 28, 2])), projected, atol=1e-3)
    digits = rng.integers(0, 256, (8, 28, 28, 1)).astype(np.uint8)  # and through the augmentation, rounded
    seed = tf.constant(5, tf.int64)
    difference = (random_affine(digits, seed, Affine(20.0, 3.0, 0.1, 1e-6, 4.0)).numpy().astype(int)
                  - random_affine(digits, seed, Affine(20.0, 3.0, 0.1)).numpy().astype(int))
    assert np.abs(difference).max() <= 1


@pytest.mark.parametrize("alpha, sigma", [(34.0, 4.0), (36.0, 6.0)])  # Simard et al.'s; allconv_mnist's
def test_elastic_displacements_are_smooth_fields_of_the_stated_size(alpha, sigma):
    fields = elastic_displacements(tf.constant([64, 28, 28]), tf.constant([1, 2], tf.int64), alpha, sigma).numpy()
    assert fields.shape == (64, 28, 28, 2)
    # Smoothing uniform noise (variance 1/3) by a normalised 2-D Gaussian divides its variance by
    # 4 pi sigma^2, away from the border (zeros beyond it lower it near the edges).
    stated = alpha / np.sqrt(3 * 4 * np.pi * sigma**2)
    assert 0.85 * stated < fields[:, 8:20, 8:20].std() < 1.15 * stated
    assert fields.std() < fields[:, 8:20, 8:20].std()
    assert abs(fields.mean()) < 0.1 * stated
    neighbours = np.corrcoef(fields[:, :, :-1, 0].ravel(), fields[:, :, 1:, 0].ravel())[0, 1]
    assert neighbours > 0.95  # smooth: a pixel moves as its neighbours do
    assert abs(np.corrcoef(fields[..., 0].ravel(), fields[..., 1].ravel())[0, 1]) < 0.1  # x and y drawn apart
    assert np.abs(fields[0] - fields[1]).max() > 0.5 * stated  # per image


@pytest.mark.parametrize("alpha, sigma", [(-1.0, 4.0), (float("nan"), 4.0), (34.0, 0.0), (34.0, float("inf"))])
def test_affine_rejects_impossible_elastic_settings(alpha, sigma):
    with pytest.raises(ValueError, match="elastic_(alpha|sigma) must be a finite number"):
        Affine(elastic_alpha=alpha, elastic_sigma=sigma)


def test_elastic_augmentation_distorts_digits_without_moving_them_far():
    image = np.zeros((1, 28, 28, 1), np.uint8)
    image[0, 12:16, 6:22] = 255  # a horizontal bar through the centre
    dataset = tf.data.Dataset.from_tensor_slices((np.repeat(image, 64, 0), np.zeros(64)))
    bent = next(iter(image_pipeline(dataset, 64, True, "affine", 0, Affine(0.0, 0.0, 0.0, 34.0, 4.0))))[0].numpy()
    assert len({picture.tobytes() for picture in bent}) == 64
    for picture in bent:
        assert not np.array_equal(picture, image[0])
        rows, columns = np.nonzero(picture[..., 0] > 127)
        assert abs(rows.mean() - 13.5) <= 3 and abs(columns.mean() - 13.5) <= 3
        assert 0.4 < picture.sum() / image.sum() < 2.5  # stretched or squeezed in places, not erased


def test_augmentation_is_drawn_per_image_within_a_batch():
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 12:20, 8:14] = 255  # an off-centre bar: flips and shifts both move it
    dataset = tf.data.Dataset.from_tensor_slices((np.repeat(image, 64, 0), np.zeros(64)))
    batch = next(iter(image_pipeline(dataset, 64, training=True, augment="flip_crop", seed=0)))[0].numpy()
    columns = {tuple(np.flatnonzero(picture.any(axis=(0, 2)))) for picture in batch}
    assert len(columns) > 4  # many different horizontal placements in one batch
    assert all(picture.sum() == image.sum() for picture in batch)  # the bar never leaves the frame


def test_each_epoch_draws_new_augmentations_and_a_seed_replays_its_epochs():
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 12:20, 8:14] = 255  # identical images: any difference between epochs is the augmentation
    dataset = tf.data.Dataset.from_tensor_slices((np.repeat(image, 32, 0), np.zeros(32)))

    def epochs(seed, count=2):
        pipeline = image_pipeline(dataset, 32, training=True, augment="flip_crop", seed=seed)
        return [next(iter(pipeline))[0].numpy() for _ in range(count)]

    first, second = epochs(0)
    assert not np.array_equal(first, second)  # plain tf.random ops in the map repeated epoch 1 here
    np.testing.assert_array_equal(epochs(0)[0], first)  # reproducible from the seed
    assert not np.array_equal(epochs(1)[0], first)  # a resumed run's offset seed: no replay


def test_each_training_epoch_is_a_new_permutation_of_the_whole_split():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)  # pixel = label: pairs stay together
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(10)))
    pipeline = image_pipeline(dataset, 3, training=True, seed=0)
    epochs = []
    for _ in range(3):
        batches = list(pipeline)
        for batch_images, batch_labels in batches:
            np.testing.assert_array_equal(batch_images.numpy().reshape(-1), batch_labels.numpy())
        epochs.append(tuple(np.concatenate([labels.numpy() for _, labels in batches])))
    assert all(len(order) == 9 and len(set(order)) == 9 for order in epochs)  # 3 full batches, none repeated
    assert len(set(epochs)) == 3  # a new order every epoch
    with pytest.raises(ValueError, match="full batch"):
        image_pipeline(dataset, 11, training=True, seed=0)


def test_unknown_augmentation_rejected():
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((2, 28, 28, 1), np.uint8), np.zeros(2)))
    with pytest.raises(ValueError, match="augment"):
        image_pipeline(dataset, 2, training=True, augment="mixup")


@pytest.mark.parametrize("name", sorted(IMAGE_DATASETS))
def test_label_names_come_from_the_dataset_metadata_without_prepared_data(name, tmp_path):
    """Without data or a download: the builder's own metadata names the classes, and every
    registered model of the dataset uses those names."""
    from zoo.data.images import label_names
    names = label_names(name)
    assert len(names) == 10 and len(set(names)) == 10
    assert names == IMAGE_DATASETS[name].label_names
    assert not any((tmp_path / name).iterdir()) if (tmp_path / name).exists() else True
    for model_name in registry.list_models():
        if registry.get(model_name).dataset == name:
            assert registry.get(model_name).label_names == names
    if name == "cifar10":
        assert names[0] == "airplane" and names[-1] == "truck"  # not tfds's fallback '0'..'9'


@pytest.mark.data
@pytest.mark.slow
def test_cifar10_prepared_from_raw_files_keeps_the_official_label_names(data_dir):
    """Preparing from the official batches checks batches.meta.txt against the declared names."""
    from zoo.data.images import image_dataset
    from zoo.data.prepare import prepare_builder
    builder = prepare_builder(image_dataset("cifar10").builder(), "cifar10", data_dir)
    assert tuple(builder.info.features["label"].names) == IMAGE_DATASETS["cifar10"].label_names
