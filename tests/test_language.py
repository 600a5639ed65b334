"""Word-level language models: PTB builder, vocabulary, stateful batching, the three signatures,
LanguageModel, training. Tiny fixture text and tiny models; the real data only with ZOO_DATA_DIR."""
import dataclasses
import json
import math

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import zoo
from training.recipes import resolve
from zoo import artifact, registry
from zoo.data import ptb
from zoo.data.text import EOS, UNK, build_vocabulary, token_ids, tokenize
from zoo.models import language
from zoo.models.language import LanguageModelConfig
from zoo.serving import language as serving

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "mat", "a", "big", "small", "red", "n", "<unk>", "and"]


def fixture_lines(count: int, seed: int) -> list[str]:
    """PTB-like lines (leading and trailing space, lower case) of words from WORDS."""
    rng = np.random.default_rng(seed)
    probabilities = np.linspace(2.0, 0.5, len(WORDS))
    probabilities /= probabilities.sum()
    return [" " + " ".join(rng.choice(WORDS, size=rng.integers(2, 9), p=probabilities)) + " "
            for _ in range(count)]


FIXTURE = {"train": fixture_lines(60, 0), "validation": fixture_lines(12, 1), "test": fixture_lines(15, 2)}
FIXTURE_VOCABULARY = build_vocabulary(FIXTURE["train"])


def tiny_spec(cell: str = "lstm", tie: bool = True, layers: int = 2):
    base = registry.get(f"{cell}_ptb")
    config = LanguageModelConfig(cell=cell, vocab_size=len(FIXTURE_VOCABULARY), embedding_dim=8, hidden_units=8,
                                 num_layers=layers, dropout=0.1, tie_embeddings=tie)
    return dataclasses.replace(base, config=config, parameter_count=base.build(config).count_params())


def tiny_model(spec, seed: int = 0):
    """A randomly initialised model with large weights, so that distributions are far from uniform."""
    model = spec.build()
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, 0.6, weight.shape).astype(np.float32) for weight in model.get_weights()])
    return serving.set_vocabulary(model, FIXTURE_VOCABULARY)


def export_tiny(spec, model, destination):
    from training.cards import make_card
    from zoo.export import export
    metrics = {"test_perplexity": {"value": 0.0, "split": "test", "examples": 0}}
    card = make_card(spec, resolve(spec), model, metrics, {}, 0.0,
                     extra={"state_size": language.state_size(spec.config)})
    return export(model, spec, card, destination)


@pytest.fixture(scope="module")
def tiny_lstm(tmp_path_factory):
    """(spec, keras model, artifact folder) of a tiny tied 2-layer LSTM; the score chunk is cut
    to 7 tokens so that short texts already cross chunk boundaries."""
    spec = tiny_spec("lstm")
    model = tiny_model(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serving, "CHUNK_TOKENS", 7)
        path = export_tiny(spec, model, tmp_path_factory.mktemp("artifacts") / "lstm_ptb")
    return spec, model, path


def write_fixture_files(folder, lines=FIXTURE):
    (folder / "ptb").mkdir(parents=True)
    for split, (name, _, _) in ptb.FILES.items():
        (folder / "ptb" / name).write_text("".join(line + "\n" for line in lines[split]))
    return folder


def fixture_checksums(folder):
    infos = {}
    for name, _, _ in ptb.FILES.values():
        info = tfds.download.checksums.compute_url_info(folder / "ptb" / name)
        infos[ptb.URL_ROOT + name] = dataclasses.replace(info, filename=name)
    return infos


# ---- data ---------------------------------------------------------------------------------

def test_tfds_builder_keeps_order_and_counts_eos(tmp_path, monkeypatch):
    raw = write_fixture_files(tmp_path / "raw")
    monkeypatch.setattr(ptb.Ptb, "url_infos", fixture_checksums(raw))  # the fixture's, not PTB's
    for split, lines in FIXTURE.items():
        loaded = ptb.load_lines(split, raw, tfds_dir=tmp_path / "tfds")
        assert loaded == [line.strip() for line in lines]
        words = sum(len(line.split()) for line in lines)
        assert len(token_ids(loaded, FIXTURE_VOCABULARY)) == words + len(lines)
    assert ptb.Ptb(data_dir=tmp_path / "tfds").info.disable_shuffling


def test_tfds_builder_refuses_files_with_other_checksums(tmp_path):
    raw = write_fixture_files(tmp_path / "raw")  # not the official bytes
    with pytest.raises(ValueError, match="ptb: a raw file does not match the official checksum"):
        ptb.load_lines("test", raw, tfds_dir=tmp_path / "tfds")
    with pytest.raises(ValueError, match="has no 'ptb' folder"):
        ptb.load_lines("test", tmp_path, tfds_dir=tmp_path / "tfds")
    with pytest.raises(ValueError, match="split"):
        ptb.load_lines("dev", raw)


def test_registered_checksums_are_the_official_ones():
    assert ptb.dataset_checksums()["ptb.test.txt"] == \
        "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"
    assert set(ptb.Ptb.url_infos) == {ptb.URL_ROOT + name for name, _, _ in ptb.FILES.values()}


def test_tokenize_lower_cases_skips_empty_lines_and_ends_lines_with_eos():
    text = " The CAT\tsat \n\n   \n on a\x0bmat \r\n"
    assert tokenize(text) == ["the", "cat", "sat", "<eos>", "on", "a", "mat", "<eos>"]
    assert tokenize(text, final_eos=False) == ["the", "cat", "sat", "<eos>", "on", "a", "mat"]
    assert tokenize(" \n \n") == []
    assert (EOS, UNK) == ("<eos>", "<unk>")


def test_vocabulary_order_size_and_unknown_words():
    lines = ["b a c a", "a b", "zz"]
    vocabulary = build_vocabulary(lines)
    # a: 3, <eos>: 3, b: 2, c and zz: 1 (ties by code point), <unk> added with count 0.
    assert vocabulary == ["<eos>", "a", "b", "c", "zz", "<unk>"]
    ids = token_ids(["a QQ b", "zz"], vocabulary)
    assert ids.dtype == np.int32
    assert [vocabulary[i] for i in ids] == ["a", "<unk>", "b", "<eos>", "zz", "<eos>"]
    assert len(FIXTURE_VOCABULARY) == len(set(FIXTURE_VOCABULARY)) == len(set(WORDS)) + 1  # + <eos>


def test_stream_batches_continue_each_stream_across_batches():
    ids = np.arange(100, dtype=np.int32)
    batches = list(ptb.stream_batches(ids, batch_size=3, sequence_length=4).as_numpy_iterator())
    assert len(batches) == (100 - 1) // 12
    inputs = np.concatenate([x for x, _ in batches], axis=1)  # [B, steps * T]
    targets = np.concatenate([y for _, y in batches], axis=1)
    for row in range(3):
        stream = inputs[row]
        np.testing.assert_array_equal(stream, np.arange(stream[0], stream[0] + len(stream)))  # contiguous
        np.testing.assert_array_equal(targets[row], stream + 1)
    assert batches[0][0].shape == (3, 4) and batches[0][0].dtype == np.int32
    with pytest.raises(ValueError, match="do not fill"):
        ptb.stream_batches(ids[:10], batch_size=3, sequence_length=4)


# ---- models -------------------------------------------------------------------------------

@pytest.mark.parametrize("cell,tie", [("rnn", True), ("lstm", False), ("gru", True)])
def test_builders_shapes_and_pure(cell, tie):
    spec = tiny_spec(cell, tie)
    model = spec.build()
    logits = np.asarray(model(np.zeros((2, 5), np.int32), training=False))
    assert logits.shape == (2, 5, len(FIXTURE_VOCABULARY)) and np.all(np.isfinite(logits))
    assert model.input.dtype == "int32" and model.input.name == "token_ids"
    assert spec.build().count_params() == model.count_params()



class KerasOpsTiedEmbedding(language.ReversibleEmbedding):
    """The tied output layer as keras ops write it (ops.transpose of the matrix)."""

    def call(self, inputs, reverse: bool = False):
        if not reverse:
            return super().call(inputs)
        return keras.ops.matmul(inputs, keras.ops.transpose(self.embeddings)) + self.output_bias


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_the_tied_output_layer_is_x_times_the_embedding_matrix_plus_its_bias(policy):
    """reverse=True gives what keras ops give for x @ E^T + b: logits [N, T, V] in the same dtype
    (the compute dtype), and the same gradients, E's also from the lookup."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        layers = [cls(7, 3) for cls in (language.ReversibleEmbedding, KerasOpsTiedEmbedding)]
        for layer in layers:
            layer.build()
    finally:
        keras.config.set_dtype_policy(previous)
    rng = np.random.default_rng(0)
    layers[0].output_bias.assign(rng.normal(size=7).astype(np.float32))
    layers[1].set_weights(layers[0].get_weights())
    x = tf.cast(rng.normal(size=(2, 4, 3)).astype(np.float32), layers[0].compute_dtype)  # as the layers below give it

    def loss_and_gradients(layer):
        with tf.GradientTape() as tape:
            logits = layer(x, reverse=True)
            looked_up = layer(np.array([[1, 1]]))
            loss = tf.reduce_sum(tf.cast(logits, tf.float32) ** 2) + tf.reduce_sum(tf.cast(looked_up, tf.float32))
        return [logits, *tape.gradient(loss, [layer.embeddings, layer.output_bias])]

    got, expected = (loss_and_gradients(layer) for layer in layers)
    assert got[0].shape == (2, 4, 7) and got[0].dtype == expected[0].dtype == layers[0].compute_dtype
    tolerance = 1e-6 if policy == "float32" else 1e-2  # (bfloat16 keeps 8 bits of mantissa)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(tf.cast(a, tf.float32), tf.cast(b, tf.float32), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_training_loss_is_keras_sparse_cross_entropy_with_its_gradient(jit_compile):
    from training.language_task import TokenCrossEntropy

    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(0, 30, (3, 4, 11)).astype(np.float32))  # large: the shift matters
    labels = tf.constant(rng.integers(0, 11, (3, 4)).astype(np.int32))

    @tf.function(jit_compile=jit_compile)
    def loss_and_gradient(loss):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss(labels, logits * 1.0)
        return value, tape.gradient(value, logits)

    got = loss_and_gradient(TokenCrossEntropy())
    expected = loss_and_gradient(keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    per_token = TokenCrossEntropy(reduction=None)(labels, logits)
    assert per_token.shape == (3, 4)

def test_config_and_builder_argument_checks():
    with pytest.raises(ValueError, match="cell"):
        language.build_lstm_ptb(LanguageModelConfig(cell="transformer"))
    with pytest.raises(ValueError, match="tie_embeddings"):
        language.build_lstm_ptb(LanguageModelConfig(embedding_dim=64, hidden_units=128))
    with pytest.raises(ValueError, match="dropout"):
        language.build_gru_ptb(LanguageModelConfig(cell="gru", dropout=1.0))
    with pytest.raises(ValueError, match="num_layers"):
        language.build_rnn_ptb(LanguageModelConfig(cell="rnn", num_layers=0))
    with pytest.raises(ValueError, match="makes 'rnn'"):
        language.build_rnn_ptb(LanguageModelConfig(cell="lstm"))
    with pytest.raises(ValueError, match="embedding_init_range"):
        language.build_lstm_ptb(LanguageModelConfig(embedding_init_range=0.0))
    model = tiny_spec("gru").build()
    with pytest.raises(ValueError, match="no vocabulary"):
        serving.model_vocabulary(model)
    with pytest.raises(ValueError, match="words"):
        serving.set_vocabulary(model, FIXTURE_VOCABULARY[:-1])
    with pytest.raises(ValueError, match="lacks"):
        serving.set_vocabulary(model, [f"w{i}" for i in range(len(FIXTURE_VOCABULARY))])


def test_embeddings_start_in_the_configured_range():
    config = LanguageModelConfig(cell="rnn", vocab_size=50, embedding_dim=16, hidden_units=16, num_layers=1,
                                 embedding_init_range=0.5)
    embeddings = language.build_rnn_ptb(config).get_layer("embedding").embeddings.numpy()
    assert 0.4 < np.abs(embeddings).max() <= 0.5


def test_registered_sizes_fit_the_artifact_limit():
    for name in ("rnn_ptb", "lstm_ptb", "gru_ptb"):
        spec = registry.get(name)
        assert spec.config.vocab_size == 10_000 and spec.label_names == ()
        # The weights twice (SavedModel variables + model.weights.h5, float32) and ~1 MB of graph and
        # vocabulary: under the project's 40 MB per artifact.
        assert 2 * 4 * spec.parameter_count + 1e6 < 40e6
        if artifact.is_trained(name):
            folder = artifact.committed_dir(name)
            assert sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) < 40e6


# ---- signatures ---------------------------------------------------------------------------

def step_through(signatures, token_ids, state_size):
    """Logits [T, V] after each token, fed one at a time through `step` from the zero state."""
    state, rows = tf.zeros([1, state_size]), []
    for token in token_ids:
        result = signatures["step"](token_id=tf.constant([token], tf.int32), state=state)
        rows.append(result["logits"][0].numpy())
        state = result["state"]
    return np.stack(rows)


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


@pytest.mark.parametrize("text", [
    "the cat sat on the mat\r\nA BIG\tdog ran\n \n\nand  zebra n",
    " the big red cat sat on a small mat and the dog ran on the mat and the cat sat ",
])
def test_score_step_next_word_and_keras_agree(tiny_lstm, text):
    spec, model, path = tiny_lstm
    loaded = tf.saved_model.load(str(path))  # plain TF: no zoo
    signatures = loaded.signatures
    size = language.state_size(spec.config)
    assert signatures["step"].structured_input_signature[1]["state"].shape[-1] == size
    index = {word: i for i, word in enumerate(FIXTURE_VOCABULARY)}
    tokens = [index["<eos>"]] + [index.get(word, index["<unk>"]) for word in tokenize(text)]

    stepped = step_through(signatures, tokens, size)  # [T, V]
    keras_logits = np.asarray(model(np.array([tokens], np.int32), training=False))[0]
    np.testing.assert_allclose(stepped, keras_logits, atol=1e-4)

    score = signatures["score"](text=tf.constant([text]))
    assert score["token_count"].dtype == tf.int64 and int(score["token_count"][0]) == len(tokens) - 1
    expected = log_softmax(stepped[:-1])[np.arange(len(tokens) - 1), tokens[1:]].sum()
    assert abs(float(score["log_probability"][0]) - expected) < 1e-3 * max(1.0, abs(expected))

    next_word = signatures["next_word"](text=tf.constant([text]))  # context: all but the final <eos>
    expected_probabilities = np.exp(log_softmax(stepped[-2]))
    np.testing.assert_allclose(next_word["probabilities"][0].numpy(), expected_probabilities, atol=1e-5)
    top = np.argsort(-expected_probabilities)[:10]
    assert [w.decode() for w in next_word["top_words"][0].numpy()] == [FIXTURE_VOCABULARY[i] for i in top]
    np.testing.assert_allclose(next_word["top_probabilities"][0].numpy(), expected_probabilities[top], atol=1e-6)
    np.testing.assert_allclose(signatures["serving_default"](text=tf.constant([text]))["probabilities"],
                               next_word["probabilities"])


def test_score_scores_each_string_on_its_own(tiny_lstm):
    _, _, path = tiny_lstm
    score = tf.saved_model.load(str(path)).signatures["score"]
    texts = ["the cat sat", "", "a dog ran on the big red mat and the cat sat on it\nthe end", "  \n  ",
             "a\x0bcat\x0cdog\r\n\x0b\n\tÉtÉ big"]
    together = score(text=tf.constant(texts))
    for index, text in enumerate(texts):
        alone = score(text=tf.constant([text]))
        np.testing.assert_allclose(together["log_probability"][index], alone["log_probability"][0], rtol=1e-5)
        assert int(together["token_count"][index]) == len(tokenize(text))
    assert float(together["log_probability"][1]) == 0.0


def test_artifact_holds_vocabulary_asset_and_card(tiny_lstm):
    spec, model, path = tiny_lstm
    assert (path / "assets" / "vocab.txt").read_text().splitlines() == FIXTURE_VOCABULARY
    card = json.loads((path / "model_card.json").read_text())
    assert card["task"] == "language" and set(card["signatures"]) == {"next_word", "serving_default", "score", "step"}
    assert card["dataset"]["files_sha256"] == ptb.dataset_checksums()
    assert card["state_size"] == 2 * 2 * 8
    assert not list(path.glob("*.txt")), "the vocabulary lives in assets/ only"
    weights_bytes = 4 * model.count_params()
    saved_bytes = (path / "variables" / "variables.data-00000-of-00001").stat().st_size
    assert weights_bytes <= saved_bytes < 1.5 * weights_bytes, "each weight is saved once in the SavedModel"


@pytest.mark.parametrize("cell,tie,layers", [("rnn", True, 1), ("gru", False, 2)])
def test_other_cells_export_and_agree(cell, tie, layers, tmp_path):
    spec = tiny_spec(cell, tie, layers)
    model = tiny_model(spec, seed=1)
    path = export_tiny(spec, model, tmp_path / f"{cell}_ptb")
    signatures = tf.saved_model.load(str(path)).signatures
    text = "the dog sat\non the mat"
    index = {word: i for i, word in enumerate(FIXTURE_VOCABULARY)}
    tokens = [index["<eos>"]] + [index[word] for word in tokenize(text)]
    stepped = step_through(signatures, tokens, language.state_size(spec.config))
    np.testing.assert_allclose(stepped, np.asarray(model(np.array([tokens], np.int32)))[0], atol=1e-4)
    expected = log_softmax(stepped[:-1])[np.arange(len(tokens) - 1), tokens[1:]].sum()
    log_probability = float(signatures["score"](text=tf.constant([text]))["log_probability"][0])
    assert log_probability == pytest.approx(expected, rel=1e-4)


# ---- LanguageModel ------------------------------------------------------------------------

def test_language_model_api(tiny_lstm):
    _, _, path = tiny_lstm
    lm = zoo.load(path)
    assert type(lm).__name__ == "LanguageModel" and lm.vocabulary == FIXTURE_VOCABULARY
    words = lm.next_words("the cat", k=3)
    assert len(words) == 3 and all(isinstance(w, str) and 0 < p <= 1 for w, p in words)
    assert words == sorted(words, key=lambda pair: -pair[1])
    log_probability, count = lm.log_probability("the cat sat\non the mat")
    assert count == 8 and lm.perplexity("the cat sat\non the mat") == pytest.approx(math.exp(-log_probability / count))
    assert lm.unknown_words("The Zebra sat on a ZEBRA\nyak") == ["zebra", "yak"]


def test_nul_reads_as_a_space_and_lone_surrogates_are_refused(tiny_lstm):
    # tf.strings.lower ends a string at its first NUL; the graph maps NUL to a space first.
    lm = zoo.load(tiny_lstm[2])
    assert lm.log_probability("the\x00cat sat") == pytest.approx(lm.log_probability("the cat sat"))
    assert tokenize("the\x00cat") == ["the", "cat", EOS]
    with pytest.raises(ValueError, match="no words"):
        lm.next_words("\x00 \x00")
    with pytest.raises(ValueError, match="lone surrogate"):
        lm.perplexity("the \ud800 cat")


def test_generation_is_reproducible_with_a_seed(tiny_lstm):
    _, _, path = tiny_lstm
    lm = zoo.load(path)
    first = lm.generate("the cat", num_words=20, temperature=0.8, top_k=5, seed=3)
    assert first == lm.generate("the cat", num_words=20, temperature=0.8, top_k=5, seed=3)
    assert len(first.split()) + first.count("\n") == 20
    assert set(first.split()) <= set(FIXTURE_VOCABULARY)
    others = {lm.generate("the cat", num_words=20, seed=seed) for seed in range(4)}
    assert len(others) > 1
    assert lm.generate("the cat", num_words=0, seed=0) == ""


@pytest.mark.parametrize("call,error", [
    (lambda lm: lm.next_words(""), ValueError),
    (lambda lm: lm.next_words(" \n\t "), ValueError),
    (lambda lm: lm.next_words(b"the cat"), TypeError),
    (lambda lm: lm.next_words(["the cat"]), TypeError),
    (lambda lm: lm.next_words("the cat", k=0), ValueError),
    (lambda lm: lm.next_words("the cat", k=2.5), TypeError),
    (lambda lm: lm.perplexity("the " * 250_001), ValueError),
    (lambda lm: lm.generate("the", temperature=0), ValueError),
    (lambda lm: lm.generate("the", top_k=0), ValueError),
    (lambda lm: lm.generate("the", num_words=-1), ValueError),
    (lambda lm: lm.unknown_words(None), TypeError),
])
def test_bad_inputs_are_rejected(tiny_lstm, call, error):
    lm = zoo.load(tiny_lstm[2])
    with pytest.raises(error):
        call(lm)


def test_cli_predict_and_demo_on_a_language_artifact(tiny_lstm, capsys):
    from tests.test_cli import run_cli
    _, _, path = tiny_lstm
    result = run_cli("predict", str(path), "the cat sat", "--top", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("'the cat sat' -> ") and result.stdout.count(",") == 2
    print("\n".join(zoo.load(path).demo()))
    assert "'the stock market': next" in capsys.readouterr().out


def test_evaluate_scores_the_whole_test_split(tiny_lstm, tmp_path, monkeypatch):
    raw = write_fixture_files(tmp_path / "raw")
    monkeypatch.setattr(ptb.Ptb, "url_infos", fixture_checksums(raw))
    load_lines = ptb.load_lines
    monkeypatch.setattr(ptb, "load_lines", lambda split, data_dir: load_lines(split, data_dir, tmp_path / "tfds"))
    lm = zoo.load(tiny_lstm[2])
    result = lm.evaluate(data_dir=raw)["test_perplexity"]
    text = "\n".join(FIXTURE["test"])
    assert result["split"] == "test" and result["examples"] == len(tokenize(text))
    assert result["value"] == pytest.approx(lm.perplexity(text), rel=1e-6)


# ---- training -----------------------------------------------------------------------------

def test_training_on_fixture_text_exports_a_working_artifact(tmp_path):
    from training import language_task
    spec = tiny_spec("gru", tie=True, layers=1)
    recipe = dataclasses.replace(resolve(spec), epochs=2, batch_size=4, sequence_length=5, learning_rate=1e-2)
    path = language_task.train_on_lines(spec, recipe, FIXTURE, tmp_path / "gru_ptb", tmp_path / "work", verbose=0)
    card = json.loads((path / "model_card.json").read_text())
    test_tokens = len(tokenize("\n".join(FIXTURE["test"])))
    assert card["metrics"]["test_perplexity"]["examples"] == test_tokens
    assert card["metrics"]["validation_perplexity"]["split"] == "validation"
    assert card["training"]["epochs_run"] == 2 and "val_perplexity" in card["training"]["history"]
    assert card["state_size"] == 8 and card["parameter_count"] == spec.parameter_count
    assert not (tmp_path / "work").exists(), "checkpoints are removed once the artifact lands"
    lm = zoo.load(path)
    reported = card["metrics"]["test_perplexity"]["value"]
    assert lm.perplexity("\n".join(FIXTURE["test"])) == pytest.approx(reported, rel=1e-5)
    history = card["training"]["history"]
    assert history["perplexity"][-1] < history["perplexity"][0], "training lowers the loss"


def test_carried_state_is_reset_each_epoch_and_validation():
    from training.language_task import CarriedState
    spec = tiny_spec("lstm", layers=1)
    twin = language.build_stateful(spec.config, batch_size=2, name="twin")
    twin(np.ones((2, 3), np.int32))
    assert np.abs(twin.get_layer("lstm_1").states[0].numpy()).sum() > 0, "state carried after a batch"
    callback = CarriedState()
    callback.set_model(twin)
    callback.on_test_begin()
    assert np.abs(twin.get_layer("lstm_1").states[0].numpy()).sum() == 0
    logs = {"loss": 1.0, "val_loss": 2.0}
    callback.on_epoch_end(0, logs)
    assert logs["perplexity"] == pytest.approx(math.e) and logs["val_perplexity"] == pytest.approx(math.e ** 2)


# ---- real data ----------------------------------------------------------------------------

@pytest.mark.data
@pytest.mark.slow
def test_real_ptb_through_tfds(data_dir, tmp_path):
    lines = {split: ptb.load_lines(split, data_dir, tfds_dir=tmp_path / "tfds") for split in ptb.SPLITS}
    vocabulary = build_vocabulary(lines["train"])
    assert len(vocabulary) == 10_000 and {"<unk>", "<eos>", "n"} <= set(vocabulary)
    counts = {split: len(token_ids(lines[split], vocabulary)) for split in ptb.SPLITS}
    assert counts == {"train": 929_589, "validation": 73_760, "test": 82_430}
    assert lines["test"][0] == "no it was n't black monday"
    test_ids = token_ids(lines["test"], vocabulary)
    assert vocabulary.index("<unk>") in test_ids and len(tokenize("\n".join(lines["test"]))) == 82_430


def test_make_train_dispatches_language_models_with_the_recipe(tmp_path, monkeypatch):
    from training import language_task, tasks
    seen = {}

    def fake_lines(split, data_dir):
        seen["data_dir"] = data_dir
        return FIXTURE[split]
    monkeypatch.setattr(ptb, "load_lines", fake_lines)

    def fake_train(spec, recipe, lines, destination, work_dir, strategy, verbose):
        seen.update(spec=spec, recipe=recipe, lines=lines, destination=destination)
        return destination
    monkeypatch.setattr(language_task, "train_on_lines", fake_train)
    path = tasks.train("lstm_ptb", {"epochs": 1}, data_dir=str(tmp_path), destination=tmp_path / "out",
                       work_dir=tmp_path / "work", verbose=0)
    assert path == tmp_path / "out" and seen["spec"].name == "lstm_ptb" and seen["data_dir"] == str(tmp_path)
    assert seen["recipe"].epochs == 1 and seen["recipe"].batch_size == registry.get("lstm_ptb").recipe["batch_size"]
    assert seen["lines"] == FIXTURE


@pytest.mark.parametrize("tie", [True, False])
def test_weights_file_round_trip_keeps_every_weight(tie, tmp_path):
    """model.weights.h5 (get_model(pretrained=True), checkpoints) restores the output bias too."""
    spec = tiny_spec("lstm", tie=tie)
    model = tiny_model(spec)
    model.save_weights(tmp_path / "model.weights.h5")
    restored = spec.build()
    restored.load_weights(tmp_path / "model.weights.h5")
    for saved, loaded in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(saved, loaded)


def test_mixed_precision_trains_in_bfloat16_and_exports_float32(tmp_path, monkeypatch):
    from training import language_task
    spec = tiny_spec("lstm", tie=True, layers=1)
    recipe = dataclasses.replace(resolve(spec), epochs=1, batch_size=4, sequence_length=5, precision="mixed_bfloat16")
    twins = []
    real_twin = language_task.compiled_twin
    monkeypatch.setattr(language_task, "compiled_twin", lambda *a: twins.append(real_twin(*a)) or twins[-1])
    path = language_task.train_on_lines(spec, recipe, FIXTURE, tmp_path / "lstm_ptb", tmp_path / "work", verbose=0)
    assert twins[0].get_layer("lstm_1").compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == "float32"  # the policy is restored after building
    dtypes = set()
    with h5py.File(path / "model.weights.h5") as weights:
        weights.visititems(lambda name, item: dtypes.add(str(item.dtype)) if isinstance(item, h5py.Dataset) else None)
    assert dtypes == {"float32"}
    card = json.loads((path / "model_card.json").read_text())
    assert card["recipe"]["precision"] == "mixed_bfloat16"
    assert zoo.load(path).perplexity("\n".join(FIXTURE["test"])) == pytest.approx(
        card["metrics"]["test_perplexity"]["value"], rel=1e-5)
