"""The course's claims, asserted on the quick (synthetic, test-sized) settings of each experiment
in training/experiments/. Each test also writes the experiment's JSON + PNG to a temp folder."""
import json

import numpy as np
import pytest

from training.experiments import (
    EXPERIMENTS,
    activations,
    bias_variance,
    common,
    dropout,
    hyperplane,
    lstm_memory,
    mistake_bound,
    online_vs_batch,
    receptive_field,
    residual,
    universal_approximation,
    vanishing_gradient,
)
from zoo.models.cnn import CNNConfig, build_cnn_mnist
from zoo.models.resnet import ResNetConfig, build_resnet


def quick_report(module, tmp_path) -> dict:
    """run(quick=True), then the JSON and PNG as `python -m training.experiments` writes them."""
    results = module.run(quick=True)
    name = module.__name__.rsplit(".", 1)[-1]
    json_path, png_path = common.write_report(name, results, module.plot, tmp_path)
    assert png_path.stat().st_size > 10_000
    return json.loads(json_path.read_text())


def test_hyperplane_distance_is_the_signed_euclidean_distance(tmp_path):
    results = quick_report(hyperplane, tmp_path)
    assert results["accuracy"] > 0.9
    assert results["max_abs_distance_error_vs_brute_force"] < 1e-3  # |r| = nearest point on the line
    assert results["sign_of_distance_equals_side"]
    assert results["max_abs_f_at_foot_of_perpendicular"] < 1e-4  # x - r w/||w|| lies on f = 0
    assert results["scaled_3x_score_ratio"] == pytest.approx(3.0, rel=1e-4)  # f scales with (w, b)
    assert results["scaled_3x_max_distance_change"] < 1e-4  # r does not


def test_online_perceptron_mistakes_within_novikoff_bound(tmp_path):
    results = quick_report(mistake_bound, tmp_path)
    rows = results["rows"]
    assert all(0 < row["mistakes"] <= row["bound"] for row in rows)
    assert all(row["gamma"] >= row["margin"] for row in rows)
    by_margin = {}
    for row in rows:
        by_margin.setdefault(row["margin"], []).append(row["mistakes"])
    small, large = min(by_margin), max(by_margin)
    assert np.mean(by_margin[small]) > 2 * np.mean(by_margin[large])  # smaller margin, more mistakes


@pytest.mark.slow
def test_online_learning_adapts_to_rotated_labels_faster_than_batch(tmp_path):
    results = quick_report(online_vs_batch, tmp_path)
    assert all(accuracy > 0.8 for accuracy in results["final_accuracy"].values())
    recovery = results["drift"]["recovery"]
    online, batch = recovery["online"], recovery["batch"]
    assert online["examples_to_recover"] is not None
    assert (batch["examples_to_recover"] is None
            or batch["examples_to_recover"] > 2 * online["examples_to_recover"])
    assert online["mean_accuracy_after_drift"] > batch["mean_accuracy_after_drift"] + 0.2


def test_bias_variance_decomposition_and_u_curve(tmp_path):
    results = quick_report(bias_variance, tmp_path)
    rows = {row["degree"]: row for row in results["rows"]}  # degrees 1, 4, 12
    for row in rows.values():
        assert abs(row["sum"] - row["test_error"]) < 0.05 * row["test_error"]
    assert rows[4]["test_error"] < 0.6 * rows[1]["test_error"]  # the U: falls...
    assert rows[4]["test_error"] < 0.8 * rows[12]["test_error"]  # ...then rises
    assert rows[1]["bias_squared"] > 10 * rows[12]["bias_squared"]
    assert rows[12]["variance"] > 3 * rows[1]["variance"]


@pytest.mark.slow
def test_more_hidden_units_approximate_continuous_functions(tmp_path):
    results = quick_report(universal_approximation, tmp_path)
    for name, errors in results["best_rms_error"].items():  # widths 1, 4, 16
        assert errors[-1] < 0.1 * errors[0], name
        assert errors[-1] < 0.05, name


def test_tanh_trains_faster_than_sigmoid_from_identical_weights(tmp_path):
    results = quick_report(activations, tmp_path)
    assert results["identical_initial_weights"]
    for tanh_loss, sigmoid_loss in zip(results["final_loss"]["tanh"], results["final_loss"]["sigmoid"]):
        assert tanh_loss < 0.8 * sigmoid_loss  # every seed


@pytest.mark.slow
def test_dropout_narrows_the_gap_and_is_off_at_inference(tmp_path):
    outcome = quick_report(dropout, tmp_path)["datasets"]["synthetic"]
    plain, dropped = outcome["final"]["no dropout"], outcome["final"]["dropout"]
    assert plain["accuracy_gap"] > 0.2  # the over-sized MLP memorises the noisy labels...
    assert dropped["accuracy_gap"] < plain["accuracy_gap"] - 0.1  # ...far less with dropout
    assert dropped["test_accuracy"] > plain["test_accuracy"]
    checks = outcome["inference"]
    assert checks["inference_max_difference_between_calls"] == 0.0
    assert checks["training_mode_max_difference_between_calls"] > 0.0
    assert checks["inference_max_difference_vs_dropout_removed"] == 0.0  # every unit active, unscaled


def test_receptive_fields_analytic_equal_measured_and_grow_with_stride(tmp_path):
    results = quick_report(receptive_field, tmp_path)
    assert results["all_measured_equal_analytic"]
    sweep = results["stride_sweep"]
    last = [row["receptive_field"]["stage1_pool"] for row in sweep]
    assert last == sorted(last) and len(set(last)) == len(last)  # strictly growing with stride
    for row in sweep:
        if row["stride"] <= 3:  # stride <= kernel: every pixel still reaches the output
            assert row["fraction_of_pixels_used"] == 1.0
        else:  # stride 4 > kernel 3: a quarter of rows and columns are skipped, exactly
            assert row["fraction_of_pixels_used"] == pytest.approx(9 / 16)
            assert row["max_score_change_unused_redrawn"] == 0.0


def test_receptive_fields_of_registered_architectures_by_hand():
    cnn = receptive_field.receptive_fields(build_cnn_mnist())
    assert cnn["stage1_pool"] == (16, 4)  # 3, 5, pool 6 (jump 2), 10, 14, pool 16 (jump 4)
    resnet = receptive_field.receptive_fields(build_resnet(ResNetConfig(depth=20)))
    assert resnet["stage2_block2_b_conv"] == (81, 4)  # 3 + 6*2 = 15; +2 +5*4 = 37; +2*2 +5*8 = 81


def test_cnn_first_stride_is_validated():
    with pytest.raises(ValueError, match="first_stride"):
        build_cnn_mnist(CNNConfig(first_stride=0))


def test_gradient_vanishes_in_tanh_rnn_but_is_kept_by_open_gates_and_irnn(tmp_path):
    results = quick_report(vanishing_gradient, tmp_path)
    steps = str(results["steps"])  # 40
    ratio = {name: values[steps] for name, values in results["ratio_to_distance_0"].items()}
    assert ratio["SimpleRNN tanh, orthogonal recurrent (keras default)"] < 1e-3
    assert ratio["SimpleRNN tanh, Glorot-uniform recurrent"] < 1e-3
    assert ratio["SimpleRNN ReLU, identity recurrent (IRNN)"] > 0.1
    assert ratio["LSTM, forget bias 5"] > 0.05
    assert ratio["GRU, keep-gate bias 5"] > 0.1
    # Even at its default biases the LSTM's gradient shrinks far more slowly than the tanh RNN's.
    tanh_rnn = ratio["SimpleRNN tanh, orthogonal recurrent (keras default)"]
    assert ratio["LSTM, keras defaults (forget bias 1)"] > 10 * tanh_rnn


def test_lstm_with_forget_gate_1_and_input_gate_0_keeps_its_cell_state(tmp_path):
    results = quick_report(lstm_memory, tmp_path)
    assert results["steps"] == 1000
    final = results["final"]
    assert final["f = 1, i = 0 (b_f = +100, b_i = -100)"]["max_abs_change_of_c"] == 0.0
    # Either condition alone is not enough: new input piles up, or the memory decays.
    assert final["f = 1 only (b_f = +100, b_i default 0: i ~ 0.5)"]["relative_change_of_c"] > 1.0
    assert final["i = 0 only (b_i = -100, b_f default 1: f ~ 0.73)"]["norm_ratio_c_T_to_c_0"] < 1e-3
    assert final["keras defaults (b_f = 1, b_i = 0)"]["relative_change_of_c"] > 0.5


@pytest.mark.slow
def test_deeper_plain_network_trains_worse_residual_does_not(tmp_path):
    results = quick_report(residual, tmp_path)
    loss = results["final_loss"]  # depths 8 and 20
    assert loss["plain"]["20"] > loss["plain"]["8"] + 0.2  # deeper plain: worse
    assert loss["residual"]["20"] < loss["plain"]["20"] - 0.2  # same depth with shortcuts: better


def test_every_experiment_has_run_and_plot():
    import importlib

    for name in EXPERIMENTS:
        module = importlib.import_module(f"training.experiments.{name}")
        assert callable(module.run) and callable(module.plot), name


def test_entry_point_writes_json_and_png(tmp_path):
    from training.experiments.__main__ import main

    assert main(["lstm_memory", "--quick", "--output", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "lstm_memory" / "lstm_memory.json").read_text())
    assert results["wall_seconds"] > 0
    assert (tmp_path / "lstm_memory" / "lstm_memory.png").is_file()
