"""make bench-peers: the PyTorch peers are the zoo's models (same parameter counts and output
shapes), and the report judges the goals from the figures. Skipped without the optional
`peers` extra (PyTorch), which neither `make test` nor CI installs."""
import numpy as np
import pytest

from training.bench.render import markdown
from zoo import registry
from zoo.models import language

torch = pytest.importorskip("torch")
peers = pytest.importorskip("training.bench.peers")  # after torch: it imports torch itself


@pytest.mark.parametrize("name", peers.MODELS)
def test_peer_models_have_the_zoo_models_parameter_counts(name):
    spec = registry.get(name)
    assert peers.parameter_count(peers.peer_model(spec)) == spec.build().count_params() == spec.parameter_count


def test_the_one_module_lstm_variant_has_the_same_parameters():
    spec = registry.get("lstm_ptb")
    one = peers.LanguageModel(spec.config, one_module=True)
    assert peers.parameter_count(one) == spec.parameter_count
    assert all(not parameter.requires_grad and not parameter.any()
               for name, parameter in one.named_parameters() if "bias_hh" in name)


@pytest.mark.parametrize("name", ["resnet20_cifar10", "cnn_mnist", "cnn_cifar10", "resnet56_cifar10"])
def test_image_peers_map_the_same_pixels_to_the_same_shape(name):
    spec = registry.get(name)
    height, width, channels = spec.config.input_shape
    images = np.random.default_rng(0).integers(0, 256, (2, height, width, channels), dtype=np.uint8)
    model = peers.peer_model(spec).eval()
    scores = model(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    assert tuple(scores.shape) == tuple(spec.build()(images).shape) == (2, spec.config.num_classes)
    # The in-graph scaling is zoo's: (x / 255 - mean) / std per channel.
    scaled = model[0](torch.full((1, channels, 1, 1), 255, dtype=torch.uint8)).flatten().numpy()
    mean, std = spec.config.mean or (0.0,) * channels, spec.config.std or (1.0,) * channels
    np.testing.assert_allclose(scaled, [(1 - m) / s for m, s in zip(mean, std)], rtol=1e-5)


@pytest.mark.slow  # real train steps of each PyTorch variant
@pytest.mark.parametrize("name, variant", [(name, variant) for name in peers.MODELS for variant in (False, True)])
def test_each_peer_step_updates_every_trained_weight(name, variant):
    """variant: channels_last (images), one multi-layer nn.LSTM (language)."""
    spec = registry.get(name)
    if name == "lstm_ptb":
        model = peers.LanguageModel(spec.config, one_module=variant)
        step = peers.language_peer_step(spec, model)
    else:
        model = peers.peer_model(spec)
        step = peers.image_peer_step(spec, model, variant)
    before = {key: value.detach().clone() for key, value in model.named_parameters() if value.requires_grad}
    losses = [step(), step()]  # the second on the carried state (language)
    after = dict(model.named_parameters())
    assert np.isfinite(losses).all()
    unchanged = [key for key, value in before.items() if torch.equal(value, after[key])]
    # The embedding rows of ids absent from the batch get no gradient, but the whole matrix is
    # also the output layer, so every row moves.
    assert unchanged == [], unchanged


@pytest.mark.slow  # real train steps in both frameworks
def test_the_recurrent_layers_alone_are_the_same_size_and_train_in_both():
    from training.bench.measure import recurrent_train_step
    spec = registry.get("lstm_ptb")
    peer = peers.recurrent_peer_step(spec)
    losses = [peer(), peer()]
    assert np.isfinite(losses).all() and losses[0] > 0
    zoo_step, _ = recurrent_train_step(spec)
    assert float(zoo_step()) > 0
    keras_weights = sum(layer.count_params() for layer in language.recurrent_layers(spec.build()))
    assert peers.parameter_count(peers.LanguageModel(spec.config).layers) == keras_weights


def test_the_optimizer_follows_the_recipe():
    from training.recipes import resolve
    sgd = peers.optimizer(resolve(registry.get("resnet20_cifar10")), [torch.nn.Parameter(torch.zeros(1))])
    group = sgd.param_groups[0]
    assert isinstance(sgd, torch.optim.SGD) and group["nesterov"] and group["momentum"] == 0.9
    assert group["weight_decay"] == 5e-4 and group["lr"] == 0.1
    adamw = peers.optimizer(resolve(registry.get("cnn_mnist")), [torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["lr"] == 2e-3


def _results(zoo_rate: float, eager: float, fast: float, load: float = 0.1) -> dict:
    def variant(rate):
        return {"examples_per_second": rate, "zoo_ratio": zoo_rate / rate,
                "zoo_ratio_range": [zoo_rate / rate - 0.05, zoo_rate / rate + 0.05]}
    measured = {"created": "now", "hardware": {"summary": "2 CPU cores (test CPU, x86_64, avx2), no GPU"},
                "load_average": load, "threads": 2, "torch": "9.9", "steps_per_round": 10, "rounds": 5,
                "quick": False}
    return {"matmul_flops_per_second": 1e11, "hardware": {"summary": "test machine"}, "created": "now",
            "training": {}, "inference": {}, "generation": {}, "time_to_accuracy": {},
            "peers": {"measured": measured, "models": {"cnn_mnist": {
                "unit": "images", "batch": "128", "zoo_examples_per_second": zoo_rate, "parameter_count": 1,
                "peers": {"eager (NCHW)": variant(eager), "eager, channels_last": variant(fast)}}}}}


def test_peer_goals_are_judged_against_eager_and_the_fastest_variant():
    met = markdown(_results(zoo_rate=500.0, eager=450.0, fast=600.0))
    missed = markdown(_results(zoo_rate=400.0, eager=450.0, fast=600.0))
    assert "## Training beside PyTorch" in met and "test CPU, x86_64, avx2" in met
    assert "| eager (NCHW) | 450 | 1.11x (1.06-1.16) | >= 1.0x (eager) met |" in met
    assert "| eager, channels_last | 600 | 0.83x (0.78-0.88) | >= 0.8x (fastest) met |" in met
    assert "| eager (NCHW) | 450 | 0.89x (0.84-0.94) | >= 1.0x (eager) not met |" in missed
    assert "| eager, channels_last | 600 | 0.67x (0.62-0.72) | >= 0.8x (fastest) not met |" in missed


def test_a_run_on_shared_cores_says_so():
    assert "rerun on idle cores" in markdown(_results(500.0, 450.0, 600.0, load=3.0))
    assert "rerun on idle cores" not in markdown(_results(500.0, 450.0, 600.0, load=0.2))


def test_a_missing_or_malformed_bench_json_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["peers", "--output", str(tmp_path)])
    with pytest.raises(SystemExit, match="holds no `make bench` figures"):
        peers.main()
    (tmp_path / "bench.json").write_text('{"training": ')
    with pytest.raises(SystemExit, match=r"^error: .*bench.json is unreadable \(Expecting value[^\n]*$"):
        peers.main()



def _small_lstm(**options):
    config = language.LanguageModelConfig(cell="lstm", vocab_size=10, embedding_dim=8, hidden_units=8,
                                          num_layers=1, **{"dropout": 0.0, **options})
    torch.manual_seed(0)
    return peers.LanguageModel(config).train()


def _outputs(model, ids):
    """(logits, penalty, the first nn.LSTM's input and raw output, the last dropout's output)"""
    seen, dropped = [], []
    hook = model.layers[0].register_forward_hook(lambda module, inputs, output: seen.append((inputs[0], output[0])))
    dropout = model._dropout
    model._dropout = lambda x, rate: dropped.append(dropout(x, rate)) or dropped[-1]
    states = [(torch.zeros(1, ids.shape[0], model.config.hidden_units),) * 2 for _ in model.layers]
    try:
        logits, _, penalty = model(ids, states)
    finally:
        hook.remove()
        del model._dropout
    return logits, penalty, *seen[0], dropped[-1]


IDS = torch.tensor([[1, 2, 1, 3, 1, 2]] * 4)  # [N, T]


def test_the_lstm_peer_drops_whole_words_and_only_in_training():
    model = _small_lstm(embedding_dropout=0.5)
    looked_up = model.embedding(IDS).detach()
    dropped_any = False
    for _ in range(5):
        embedded = _outputs(model, IDS)[2].detach()
        for word in (1, 2, 3):  # one keep factor per vocabulary entry: dropped everywhere or kept x 2
            rows = embedded[IDS == word]
            if (rows == 0).all():
                dropped_any = True
            else:
                np.testing.assert_allclose(rows, 2 * looked_up[IDS == word], rtol=1e-6)
    assert dropped_any  # (kept 15 times in a row: 2^-15)
    model.eval()
    np.testing.assert_allclose(_outputs(model, IDS)[2].detach(), looked_up)


def test_the_lstm_peer_drops_recurrent_weights_and_keeps_its_parameters():
    model = _small_lstm(weight_drop=0.5)
    kernel = model.layers[0].weight_hh_l0.detach().clone()
    logits, _, embedded, raw, _ = _outputs(model, IDS)
    undropped = model.layers[0](embedded, (torch.zeros(1, 4, 8),) * 2)[0]
    assert not torch.allclose(raw, undropped)
    logits.square().mean().backward()
    assert torch.equal(model.layers[0].weight_hh_l0, kernel)
    gradient = model.layers[0].weight_hh_l0.grad
    assert gradient.abs().sum() > 0 and (gradient == 0).any()  # the dropped entries get none
    model.eval()
    _, _, embedded, raw, _ = _outputs(model, IDS)
    np.testing.assert_allclose(raw.detach(), model.layers[0](embedded, (torch.zeros(1, 4, 8),) * 2)[0].detach())


def test_the_lstm_peer_locks_dropout_and_penalises_as_the_zoo_model():
    """Locked dropout: one mask per sequence; AR reads the dropped output, TAR the raw one."""
    model = _small_lstm(dropout=0.5, locked_dropout=True, activation_penalty=2.0, temporal_activation_penalty=1.0)
    _, penalty, _, raw, dropped = _outputs(model, IDS)
    zeros = dropped == 0  # [N, T, H]
    assert zeros.any() and (zeros == zeros[:, :1]).all()
    expected = 2.0 * dropped.square().mean() + 1.0 * (raw[:, 1:] - raw[:, :-1]).square().mean()
    np.testing.assert_allclose(float(penalty), float(expected), rtol=1e-6)
    model.eval()
    assert float(_outputs(model, IDS)[1]) == 0.0
