import numpy as np
import pytest

import zoo
from tests.conftest import random_images


@pytest.fixture(scope="module")
def classifier(fresh_cnn_artifact):
    model, folder = fresh_cnn_artifact
    return model, zoo.load(folder)


def test_predict_result_object(classifier):
    model, loaded = classifier
    images = random_images((28, 28, 1), count=5)
    result = loaded.predict(images)
    assert len(result) == 5 and result.probabilities.shape == (5, 10)
    first = result[0]
    assert first.label == loaded.label_names[first.class_id]
    assert first.probability == pytest.approx(float(result.probabilities[0].max()))
    np.testing.assert_array_equal(result.class_id, np.asarray(model(images, training=False)).argmax(-1))
    assert [p.class_id for p in result] == list(result.class_id)


def test_accepted_input_forms_agree(classifier, tmp_path):
    from PIL import Image
    _, loaded = classifier
    image = random_images((28, 28, 1), count=1)[0]
    expected = loaded.predict(image[None]).scores
    path = tmp_path / "digit.png"
    Image.fromarray(image[..., 0]).save(path)
    forms = [image, image[..., 0], image[None, ..., 0], image.astype(np.float32) / 255.0,
             str(path), path, Image.open(path), [path, path]]
    for form in forms:
        scores = loaded.predict(form).scores
        np.testing.assert_allclose(scores[:1], expected, atol=1e-6, err_msg=str(type(form)))


@pytest.mark.parametrize("bad, message", [
    (np.zeros((28, 28, 3), np.uint8), "shape"),
    (np.zeros((2, 32, 32, 1), np.uint8), "shape"),
    (np.zeros((1, 1, 28, 28, 1), np.uint8), "shape"),
    (np.zeros((28,), np.uint8), "shape"),
    (np.zeros((0, 28, 28, 1), np.uint8), "empty"),
    (np.zeros((28, 28), np.int32), "dtype"),
    (np.zeros((28, 28), np.complex64), "dtype"),
    (np.full((28, 28), np.nan, np.float32), "NaN"),
    (np.full((28, 28), 2.0, np.float32), r"\[0, 1\]"),
    (np.full((28, 28), -0.5, np.float64), r"\[0, 1\]"),
    ([], "empty"),
    ("/no/such/file.png", "does not exist"),
    ([[1, 2], [3]], "ragged"),
])
def test_bad_input_is_a_value_error(classifier, bad, message):
    _, loaded = classifier
    with pytest.raises(ValueError, match=message):
        loaded.predict(bad)


def test_non_image_objects_are_type_errors(classifier):
    _, loaded = classifier
    for bad in (None, {"image": 1}, b"bytes"):
        with pytest.raises(TypeError):
            loaded.predict(bad)


def test_unreadable_image_file(classifier, tmp_path):
    _, loaded = classifier
    path = tmp_path / "not_an_image.png"
    path.write_bytes(b"definitely not a png")
    with pytest.raises(ValueError, match="not a readable"):
        loaded.predict(path)


def test_chunked_prediction_matches_unchunked(classifier):
    _, loaded = classifier
    images = random_images((28, 28, 1), count=37, seed=3)
    whole = loaded.predict(images, batch_size=64)
    chunked = loaded.predict(images, batch_size=5)
    np.testing.assert_array_equal(whole.class_id, chunked.class_id)
    np.testing.assert_allclose(whole.probabilities, chunked.probabilities, atol=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        loaded.predict(images, batch_size=0)
