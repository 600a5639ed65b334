"""The bench report: goals judged against the measured figures (no timing here, but for quick runs
of the serving bench against a real server and of the training table on one small model)."""
import json
import sys

import pytest

from tests.test_checkpoints import make_dry_run
from training import cards
from training.bench import __main__ as bench_main
from training.bench.render import markdown
from zoo import registry


def _results(fraction: float, pipeline_ratio: float, speedup: float, ratio: float) -> dict:
    latency = {"p50_ms": 1.0, "p99_ms": 2.0, "batch256_examples_per_second": 1000.0}
    return {
        "matmul_flops_per_second": 1e11, "hardware": {"summary": "test machine"}, "created": "now",
        "training": {"resnet20_cifar10": {"batch_size": 128, "examples_per_second": 100.0,
                                          "training_flops_per_example": 1e8, "fraction_of_matmul_rate": fraction,
                                          "fraction_of_matmul_rate_range": [fraction - 0.1, fraction + 0.05],
                                          "rounds": 3,
                                          "xla_fraction_of_matmul_rate": 0.25,
                                          "keras_batch_norm_fraction_of_matmul_rate": 0.4,
                                          "convolutions_alone_fraction_of_matmul_rate": 0.8,
                                          "pipeline_examples_per_second": 100.0 * pipeline_ratio,
                                          "pipeline_ratio": pipeline_ratio}},
        "inference": {"cnn_mnist": {"zoo": latency, "onnxruntime": latency,
                                    "keras_predict": {**latency, "p50_ms": speedup}}},
        "generation": {"lstm_ptb": {"tokens_per_second": 500.0, "cost_ratio_position_1000_vs_10": ratio}},
        "time_to_accuracy": {"target a": {"status": "reached", "epoch": 3, "minutes": 12.5, "value": 0.91625},
                             "target b": {"status": "not trained"},
                             "target c": {"status": "not reached", "epochs": 40, "minutes": 99.0, "best": 0.8991}},
    }


def test_goals_met_and_missed_are_judged_from_the_figures():
    met = markdown(_results(fraction=0.7, pipeline_ratio=6.0, speedup=12.0, ratio=1.1))
    missed = markdown(_results(fraction=0.5, pipeline_ratio=2.0, speedup=3.0, ratio=1.5))
    assert "not met" not in met and "median of 3 rounds" in met
    assert "`resnet20_cifar10` trains at 25% of the matmul rate (70% without)" in met
    assert "alone (the same Conv2D layers" in met and "train at 80% of the matmul rate" in met
    assert "with Keras' own (separate moments and normalise ops) the model trains at 40%" in met
    assert "| 70% (60%-75%) | met |" in met and "| 50% (40%-55%) | not met |" in missed
    assert "6.0x | met |" in met and "2.0x | not met |" in missed
    assert "12.0x met" in met and "3.0x not met" in missed
    assert "1.10 met" in met and "1.50 not met" in missed
    assert "| target a | reached | 3 | 12.5 | 0.9163 |" in met and "| target b | not trained | - | - | - |" in met
    assert "| target c | not reached | 40 | 99.0 | 0.8991 |" in met


def test_readme_quotes_the_committed_bench_tables():
    import json

    from training import REPO_ROOT
    from training.bench.render import tables
    results = json.loads((REPO_ROOT / "reports" / "bench.json").read_text())
    readme = (REPO_ROOT / "README.md").read_text()
    quoted = readme.split("<!-- bench:start -->\n", 1)[1].split("\n<!-- bench:end -->", 1)[0]
    assert quoted == tables(results), "run `python -m training.bench --markdown-only --update-readme`"


def test_language_flops_count_gates_and_output_layer():
    from training.bench.flops import language_forward_flops
    from zoo.models.language import LanguageModelConfig
    config = LanguageModelConfig(cell="lstm", vocab_size=100, embedding_dim=8, hidden_units=8, num_layers=2)
    # two layers of 4 gates over [input 8 + state 8] -> 8 units, then 8 -> 100 logits
    assert language_forward_flops(config) == 2 * (2 * 16 * 4 * 8 + 8 * 100)


@pytest.mark.slow  # real train steps of two models
def test_training_fraction_is_the_median_of_alternating_rounds():
    from training.bench.measure import training_throughput
    from zoo import registry
    entry = training_throughput(registry.get("linear_mnist"), steps=2, rounds=3)
    low, high = entry["fraction_of_matmul_rate_range"]
    assert entry["rounds"] == 3 and 0 < low <= entry["fraction_of_matmul_rate"] <= high
    assert entry["examples_per_second"] > 0 and entry["batch_size"] == 128


def test_convolutions_alone_probe_keeps_every_convolution_and_nothing_else():
    import keras

    from training.bench.measure import _convolutions_alone
    from zoo import registry
    model = registry.get("resnet20_cifar10").build()
    probe = _convolutions_alone(model)
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    kept = [layer for layer in probe.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.kernel.shape for layer in kept] == [layer.kernel.shape for layer in convolutions]
    assert [layer.strides for layer in kept] == [layer.strides for layer in convolutions]
    assert len(kept) == 19 and not any(isinstance(layer, keras.layers.BatchNormalization) for layer in probe.layers)


def test_keras_batch_norm_probe_swaps_only_the_batch_norm_layers():
    import keras

    from training.bench.measure import _keras_batch_norm
    from zoo import registry
    from zoo.models.common import BatchNormalization
    model = registry.get("resnet20_cifar10").build()
    probe = keras.models.clone_model(model, clone_function=_keras_batch_norm)
    assert not any(isinstance(layer, BatchNormalization) for layer in probe.layers)
    assert sum(type(layer) is keras.layers.BatchNormalization for layer in probe.layers) == 19
    assert probe.count_params() == model.count_params()


@pytest.mark.slow
def test_the_serving_bench_measures_a_real_server_and_renders():
    """A quick run of training.bench.serving against a real `python -m zoo serve` subprocess
    (cnn_mnist, 1 and 4 clients, 24 requests each), then its tables."""
    from training.bench import serving

    figures = serving.serving_figures(quick=True, models=("cnn_mnist",), clients=(1, 4))["serving"]
    entry = figures["models"]["cnn_mnist"]
    for mode in ("batching", "no_batching"):
        for clients in (1, 4):
            row = entry[mode][f"clients_{clients}"]
            assert row["requests"] == 24 and 0 < row["p50_ms"] <= row["p99_ms"] and row["requests_per_second"] > 0
        assert entry[mode]["overhead_vs_direct_predict"] > 0 and entry[mode]["overhead_vs_empty_route"] > 0
    text = markdown({**_results(0.7, 6.0, 12.0, 1.1), "serving": figures})
    assert "## Serving over HTTP" in text and "| `cnn_mnist` | on | 4 |" in text and "| `cnn_mnist` | off | 1 |" in text


def test_new_models_are_timed_to_their_bar_and_their_predecessors_figure(monkeypatch):
    from training.bench import measure
    from zoo import artifact

    history = {"epoch": [1, 2, 3], "elapsed_seconds": [60.0, 120.0, 180.0], "val_accuracy": [0.99, 0.9965, 0.9972]}
    cards = {"cnn_mnist": {"metrics": {"test_accuracy": {"value": 0.9961}}},
             "allconv_mnist": {"recipe": {"validation": "test"}, "metrics": {"test_accuracy": {"value": 0.9972}},
                               "training": {"history": history, "epochs_run": 3, "wall_time_seconds": 180.0}}}
    monkeypatch.setattr(artifact, "committed_card", cards.get)
    monkeypatch.setattr(measure, "PAPER_TARGETS", {})
    monkeypatch.setattr(measure, "SUCCESSORS", {"allconv_mnist": "cnn_mnist"})
    per_epoch = measure.time_to_accuracy()
    assert per_epoch["allconv_mnist to 0.997 test accuracy (its bar; test split read each epoch)"] == {
        "status": "reached", "epoch": 3, "minutes": 3.0, "value": 0.9972}
    assert per_epoch["allconv_mnist to 0.9961 test accuracy (cnn_mnist's; test split read each epoch)"]["epoch"] == 2
    cards["allconv_mnist"]["recipe"]["validation"] = "none"  # read once: the whole run is the time
    (once, _) = measure.time_to_accuracy().values()
    assert once == {"status": "reached", "epoch": 3, "minutes": 3.0, "value": 0.9972}
    cards["allconv_mnist"]["metrics"]["test_accuracy"]["value"] = 0.9968
    assert list(measure.time_to_accuracy().values())[0]["status"] == "not reached"


def test_the_mixed_precision_table_shows_each_models_speed_up():
    results = _results(fraction=0.7, pipeline_ratio=6.0, speedup=12.0, ratio=1.1)
    results["precision"] = {"hardware": "test machine", "created": "now", "load_average": 0.5, "models": {
        "resnet20_cifar10": {"float32": 300.0, "mixed_bfloat16": 450.0, "speedup": 1.5, "rounds": 3, "unit": "images"},
        "lstm_ptb": {"float32": 4000.0, "mixed_bfloat16": 4400.0, "speedup": 1.1, "rounds": 3, "unit": "tokens"}}}
    text = markdown(results)
    assert "## Mixed precision (bfloat16) training" in text
    assert "| `resnet20_cifar10` | 300 images | 450 images | 1.50x |" in text
    assert "| `lstm_ptb` | 4000 tokens | 4400 tokens | 1.10x |" in text
    assert "## Mixed precision" not in markdown(_results(fraction=0.7, pipeline_ratio=6.0, speedup=12.0, ratio=1.1))


def test_the_peer_section_shows_what_hoisting_the_inputs_buys_and_where_the_step_goes():
    results = _results(fraction=0.7, pipeline_ratio=6.0, speedup=12.0, ratio=1.1)
    variant = {"examples_per_second": 3000.0, "zoo_ratio": 1.2, "zoo_ratio_range": [1.1, 1.3]}
    results["peers"] = {"measured": {"created": "now", "hardware": {"summary": "test CPU"}, "load_average": 0.1,
                                     "threads": 2, "torch": "9.9", "steps_per_round": 10, "rounds": 5, "quick": False},
                        "models": {"lstm_ptb": {"unit": "tokens", "batch": "64 x 35", "zoo_examples_per_second": 3600.0,
                                                "parameter_count": 1, "peers": {"eager": variant},
                                                "zoo_variants": {"Keras' loop": variant},
                                                "recurrent_layers_alone": {"zoo_examples_per_second": 7200.0,
                                                                           "pytorch": variant}}}}
    text = markdown(results)
    assert ("`lstm_ptb` with Keras' loop: 3000 tokens/s in the same rounds, 1.00x PyTorch eager's (medians); the "
            "zoo's step trains 1.20x (1.10-1.30) as fast.") in text
    assert ("alone (random embeddings in, a mean-square loss on their outputs) train at 7200 tokens/s in the zoo and "
            "3000 in PyTorch, 1.20x (1.10-1.30); they take 50% of the zoo's step and 100% of PyTorch eager's") in text


def test_the_recurrent_layers_alone_train_on_embeddings():
    from training.bench.measure import recurrent_train_step
    from training.recipes import resolve
    step, tokens = recurrent_train_step(registry.get("lstm_ptb"))
    recipe = resolve(registry.get("lstm_ptb"))
    assert tokens == recipe.batch_size * recipe.sequence_length and float(step()) > 0


def test_the_keras_loop_twin_differs_from_the_zoos_only_in_its_loop():
    from training import language_task
    from training.recipes import resolve
    spec = registry.get("lstm_ptb")
    twins = [language_task.compiled_twin(spec, resolve(spec), 10, hoist_inputs=hoist) for hoist in (True, False)]
    recurrent = [[layer for layer in twin.layers if hasattr(layer, "hoist_inputs")] for twin in twins]
    assert [[layer.hoist_inputs for layer in layers] for layers in recurrent] == [[True, True], [False, False]]
    assert [type(layer) for layer in recurrent[0]] == [type(layer) for layer in recurrent[1]]
    assert twins[0].count_params() == twins[1].count_params()


@pytest.mark.slow
def test_precision_speedups_time_both_precisions_of_each_model(monkeypatch):
    from training.bench import measure
    monkeypatch.setattr(measure, "PRECISION_COMPARED", ("cnn_mnist", "lstm_ptb"))
    results = measure.precision_speedups(steps=1, rounds=1)
    for name in ("cnn_mnist", "lstm_ptb"):
        entry = results["models"][name]
        assert entry["float32"] > 0 and entry["mixed_bfloat16"] > 0
        assert entry["speedup"] == pytest.approx(entry["mixed_bfloat16"] / entry["float32"])
    assert results["models"]["lstm_ptb"]["unit"] == "tokens"


def test_a_retrained_model_is_timed_to_its_bar_and_the_replaced_artifacts_figure(monkeypatch):
    from training.bench import measure
    from zoo import artifact

    history = {"epoch": [1, 2, 3], "elapsed_seconds": [60.0, 120.0, 180.0], "val_perplexity": [120.0, 100.0, 90.0]}
    card = {"recipe": {}, "metrics": {"test_perplexity": {"value": 86.0}, "validation_perplexity": {"value": 90.0}},
            "training": {"history": history, "epochs_run": 3, "wall_time_seconds": 180.0},
            "previous": {"version": 1, "metrics": {"test_perplexity": 89.1, "validation_perplexity": 92.3}}}
    monkeypatch.setattr(artifact, "committed_card", {"lstm_ptb": card}.get)
    # The validation split is read each epoch: the old artifact's validation figure is the target.
    assert measure.retrained_targets("lstm_ptb") == {
        "lstm_ptb to 110 validation perplexity (its test bar; read each epoch)":
            {"status": "reached", "epoch": 2, "minutes": 2.0, "value": 100.0},
        "lstm_ptb to 92.3 validation perplexity (version 1's; read each epoch)":
            {"status": "reached", "epoch": 3, "minutes": 3.0, "value": 90.0}}
    del card["previous"]
    assert measure.retrained_targets("lstm_ptb") == {} and measure.retrained_targets("rnn_ptb") == {}



def test_a_paper_schedule_log_of_another_architecture_is_not_timed(monkeypatch, tmp_path):
    import dataclasses
    import json

    from training.bench import measure

    monkeypatch.setattr(measure, "REPORT_DIR", tmp_path)
    assert measure.paper_history("lstm_ptb") == ({}, "not run (`make paper-lstm_ptb`)")
    (tmp_path / "lstm_ptb_paper_schedule.csv").write_text("epoch,elapsed_seconds,val_perplexity\n0,60.0,120.0\n")
    config = dataclasses.asdict(registry.get("lstm_ptb").config)
    for other in ({**config, "hidden_units": 256}, None):
        (tmp_path / "lstm_ptb_paper_schedule.json").write_text(json.dumps({"model_config": other}))
        assert measure.paper_history("lstm_ptb")[1].startswith("run on another architecture")
    (tmp_path / "lstm_ptb_paper_schedule.json").write_text(json.dumps({"model_config": config}))
    assert measure.paper_history("lstm_ptb") == ({"epoch": [1], "elapsed_seconds": [60.0], "val_perplexity": [120.0]},
                                                 "")


def test_a_run_with_the_kernels_kept_to_an_older_isa_says_so(monkeypatch):
    monkeypatch.setattr(cards.tf.config, "list_physical_devices", lambda kind=None: [])  # a CPU machine
    for name in cards.ISA_LIMITS:
        monkeypatch.delenv(name, raising=False)
    plain = cards.hardware_summary()
    assert plain["isa_limits"] == {} and "limited" not in plain["summary"]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    limited = cards.hardware_summary()
    assert limited["isa_limits"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    assert "kernels limited by ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2" in limited["summary"]


@pytest.mark.slow
def test_a_training_only_bench_measures_the_named_models_and_renders(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["bench", "--quick", "--training-only", "--models", "linear_mnist",
                                      "--output", str(tmp_path)])
    assert bench_main.main() == 0
    results = json.loads((tmp_path / "bench.json").read_text())
    assert list(results["training"]) == ["linear_mnist"] and results["matmul_flops_per_second"] > 0
    assert "`linear_mnist`" in (tmp_path / "bench.md").read_text()
    monkeypatch.setattr(sys, "argv", ["bench", "--training-only", "--update-readme", "--output", str(tmp_path)])
    with pytest.raises(SystemExit):
        bench_main.main()


def test_make_keeps_the_kernels_to_avx2_only_when_asked_and_checks_isa(tmp_path):
    result = make_dry_run(tmp_path, "bench", "bench-peers", "ISA=avx2")
    assert result.returncode == 0, result.stderr
    limits = "ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 "
    assert f"{limits}.venv/bin/python -m training.bench --training-only" in result.stdout
    assert f"{limits}.venv/bin/python -m training.bench.peers --output reports/isa-avx2\n" in result.stdout
    result = make_dry_run(tmp_path, "bench", "bench-peers")
    assert "ONEDNN" not in result.stdout and result.stdout.count("--update-readme") == 2
    for value in ("avx512", "avx2;touch INJECTED", "$(shell touch INJECTED)"):
        result = make_dry_run(tmp_path, "bench", f"ISA={value}")
        assert result.returncode != 0 and "must be avx2" in result.stderr
    assert not (tmp_path / "INJECTED").exists()


def test_a_limited_run_says_its_xla_figures_are_not_of_the_limited_set():
    results = _results(0.7, 10.0, 20.0, 1.1)
    assert "XLA compiles for the host CPU" not in markdown(results)
    results["hardware"] = {"summary": "test machine; kernels limited by ONEDNN_MAX_CPU_ISA=AVX2",
                           "isa_limits": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}
    assert markdown(results).count("XLA compiles for the host CPU") == 1
