"""Hostile and odd input: the only outcomes are a correct result or a clear ValueError/TypeError."""
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import zoo
from tests.conftest import random_images
from zoo.data.text import tokenize
from zoo.serving.language import MAX_CHARACTERS, MAX_TOKENS

DTYPES = [np.uint8, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_,
          np.complex64]


@pytest.fixture(scope="module")
def classifier(fresh_cnn_artifact):
    return zoo.load(fresh_cnn_artifact[1])


def expected_count(array: np.ndarray):
    """Images in a valid (28, 28, 1) input, or None when it must be rejected."""
    if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
        return None
    if np.issubdtype(array.dtype, np.floating) and array.size and (
            not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1):
        return None
    shape = array.shape
    if shape in ((28, 28), (28, 28, 1)):
        return 1
    if len(shape) == 4 and shape[1:] == (28, 28, 1) or len(shape) == 3 and shape[1:] == (28, 28):
        return shape[0] or None
    return None


shapes = st.one_of(
    hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4),
    st.sampled_from([(28, 28), (28, 28, 1), (2, 28, 28), (3, 28, 28, 1), (0, 28, 28, 1), (28, 28, 3),
                     (1, 28, 28, 2), (28, 1, 28), (1, 29, 28, 1)]))


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_image_api_arbitrary_arrays(classifier, data):
    dtype = data.draw(st.sampled_from(DTYPES))
    shape = data.draw(shapes)
    if dtype in (np.float16, np.float32, np.float64):
        width = 16 if dtype == np.float16 else 32
        elements = st.one_of(st.floats(0, 1, width=width), st.floats(-2, 2, width=width),
                             st.sampled_from([float("nan"), float("inf"), -float("inf")]))
    else:
        elements = None
    array = data.draw(hnp.arrays(dtype, shape, elements=elements))
    count = expected_count(array)
    try:
        result = classifier.predict(array)
    except (ValueError, TypeError) as error:
        assert count is None, f"valid input rejected: {error}"
        assert str(error)
        return
    assert count is not None, f"invalid input accepted: {array.dtype} {array.shape}"
    assert len(result) == count and np.all(np.isfinite(result.probabilities))


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=st.one_of(st.none(), st.integers(), st.text(), st.binary(), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(), st.integers(), max_size=2)))
def test_image_api_non_arrays(classifier, value):
    try:
        classifier.predict(value)
    except (ValueError, TypeError) as error:
        assert str(error)
    else:
        raise AssertionError(f"accepted {value!r}")


def test_concurrent_predictions_match_sequential(classifier):
    images = random_images((28, 28, 1), count=250, seed=5)
    sequential = [classifier.predict(images[i]) for i in range(len(images))]
    results = {}

    def worker(thread_index):
        results[thread_index] = [classifier.predict(images[i]) for i in range(len(images))]

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(8)]  # 2,000 calls
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for thread_results in results.values():
        for got, want in zip(thread_results, sequential):
            assert got.class_id[0] == want.class_id[0]
            np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-6)
    assert len(results) == 8


@pytest.mark.slow
def test_large_batch_is_chunked(classifier):
    images = random_images((28, 28, 1), count=5000, seed=2)
    whole = classifier.predict(images, batch_size=5000)
    chunked = classifier.predict(images)  # default chunks of 256
    np.testing.assert_array_equal(whole.class_id, chunked.class_id)
    np.testing.assert_allclose(whole.probabilities, chunked.probabilities, atol=1e-5)


@pytest.fixture(scope="module")
def language_model(tmp_path_factory):
    from tests.test_language import export_tiny, tiny_model, tiny_spec
    spec = tiny_spec("gru")
    path = export_tiny(spec, tiny_model(spec), tmp_path_factory.mktemp("lm") / "gru_ptb")
    return zoo.load(path)


texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(["the", "cat", "sat", "<unk>", "<eos>", "zebra", "THE", "\n", "  ", "n"]),
             max_size=60).map(" ".join),
    st.binary(max_size=50),
    st.integers(), st.none(), st.lists(st.text(max_size=5), max_size=3),
    st.just("word " * (MAX_CHARACTERS // 5 + 1)),  # over the documented character limit
    st.just("a " * MAX_TOKENS),  # within it, but MAX_TOKENS + 1 tokens (words and the <eos>)
)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=texts, k=st.integers(-2, 12))
def test_text_api_arbitrary_input(language_model, text, k):
    try:
        words = language_model.next_words(text, k=k)
    except (ValueError, TypeError) as error:
        assert str(error)
        # Words are separated by ASCII whitespace and NUL (as in the exported graph).
        has_word = isinstance(text, str) and any(character not in " \t\n\v\f\r\x00" for character in text)
        valid = has_word and 1 <= k and len(text) <= MAX_CHARACTERS and len(tokenize(text)) <= MAX_TOKENS
        assert not (valid and k <= len(language_model.vocabulary)), f"valid input rejected: {error}"
        return
    assert isinstance(text, str) and len(words) == k
    probabilities = [p for _, p in words]
    assert probabilities == sorted(probabilities, reverse=True) and all(0 <= p <= 1 for p in probabilities)
    assert all(word in language_model.vocabulary for word, _ in words)
    perplexity = language_model.perplexity(text)
    assert np.isfinite(perplexity) and perplexity >= 1.0
