"""Vanishing gradients in recurrent networks: the norm of dL_T / ds_t, the gradient of a loss
at the last step T with respect to the state s_t at step t, against the distance T - t.

A tanh SimpleRNN multiplies the gradient by diag(tanh'(a_t)) W^T at every step, so it shrinks
geometrically; orthogonal or identity recurrent weights with ReLU (Le et al. 2015, "IRNN") keep
it. The LSTM's cell state and the GRU's state are carried by a gated sum: the gradient passes
a step unchanged when the forget gate (LSTM) or the keep gate z (GRU) is 1. With keras' default
initial biases (forget bias 1 -> f ~ 0.73; z bias 0 -> z ~ 0.5) they start only part open;
with the gate biases set open (5: f, z ~ 0.99), as training on long-range tasks learns, the
gradient is kept."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from training.experiments.common import save_figure, seed, subplots

UNITS, INPUT_DIMENSION = 32, 8
OPEN_GATE_BIAS = 5.0


def open_gates(cell, kind: str):
    """Set the LSTM forget-gate bias (gate order i, f, c, o) or the GRU z-gate bias (z, r, h)."""
    bias = cell.bias.numpy()
    if kind == "lstm":
        bias[UNITS:2 * UNITS] = OPEN_GATE_BIAS
    else:  # GRU reset_after: bias [2, 3 * units], row 0 on the input side
        bias[0, :UNITS] = OPEN_GATE_BIAS
    cell.bias.assign(bias)
    return cell


def make_cells() -> dict:
    """name -> (built keras cell, number of state tensors)."""
    cells = {
        "SimpleRNN tanh, Glorot-uniform recurrent": keras.layers.SimpleRNNCell(
            UNITS, recurrent_initializer="glorot_uniform"),
        "SimpleRNN tanh, orthogonal recurrent (keras default)": keras.layers.SimpleRNNCell(UNITS),
        "SimpleRNN ReLU, identity recurrent (IRNN)": keras.layers.SimpleRNNCell(
            UNITS, activation="relu", recurrent_initializer="identity"),
        "LSTM, keras defaults (forget bias 1)": keras.layers.LSTMCell(UNITS),
        "GRU, keras defaults": keras.layers.GRUCell(UNITS),
        f"LSTM, forget bias {OPEN_GATE_BIAS:g}": keras.layers.LSTMCell(UNITS),
        f"GRU, keep-gate bias {OPEN_GATE_BIAS:g}": keras.layers.GRUCell(UNITS),
    }
    for cell in cells.values():
        cell.build((None, INPUT_DIMENSION))
    open_gates(cells[f"LSTM, forget bias {OPEN_GATE_BIAS:g}"], "lstm")
    open_gates(cells[f"GRU, keep-gate bias {OPEN_GATE_BIAS:g}"], "gru")
    return cells


def gradient_norms(cell, inputs: np.ndarray, readout: np.ndarray) -> np.ndarray:
    """||dL / ds_t|| for t = T .. 0 (index = distance T - t), median over the batch, where
    L = readout . h_T and s_t is the whole state (h_t, and c_t for the LSTM)."""
    batch, steps, _ = inputs.shape
    state = [tf.zeros((batch, UNITS)) for _ in np.atleast_1d(cell.state_size)]
    states = []
    with tf.GradientTape() as tape:
        for step in range(steps):
            tape.watch(state)
            states.append(state)
            output, state = cell(inputs[:, step], state)
            state = list(state) if isinstance(state, (list, tuple)) else [state]
        tape.watch(state)
        states.append(state)
        loss = tf.reduce_sum(output * readout)  # [B, units] . [units]: independent per sequence
    gradients = tape.gradient(loss, states, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    norms = np.array([np.sqrt(sum(np.sum(np.square(part.numpy()), axis=1) for part in step))
                      for step in gradients])  # [T + 1, B]
    return np.median(norms, axis=1)[::-1]


def run(quick: bool = False, data_dir=None) -> dict:
    steps, batch = (40, 8) if quick else (100, 16)
    seed(0)
    cells = make_cells()
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(batch, steps, INPUT_DIMENSION)).astype(np.float32)
    readout = (rng.normal(size=(UNITS,)) / np.sqrt(UNITS)).astype(np.float32)
    norms = {name: gradient_norms(cell, inputs, readout) for name, cell in cells.items()}
    distances = [distance for distance in (10, 20, 50, steps) if distance <= steps]
    return {"steps": steps, "sequences": batch, "units": UNITS, "input_dimension": INPUT_DIMENSION,
            "open_gate_bias": OPEN_GATE_BIAS, "gradient_norm": norms,
            "ratio_to_distance_0": {name: {str(distance): values[distance] / values[0]
                                           for distance in distances}
                                    for name, values in norms.items()}}


def plot(results: dict, path) -> None:
    figure, (axis,) = subplots(width=8, height=5.5)
    styles = {"SimpleRNN": "-", "LSTM": "--", "GRU": ":"}
    for name, values in results["gradient_norm"].items():
        family = name.split(",")[0].split(" ")[0]  # SimpleRNN, LSTM or GRU
        axis.plot(np.arange(len(values)), values, styles[family], linewidth=2, label=name)
    axis.set(yscale="log", xlabel="distance T - t (steps back from the loss)",
             ylabel="||dL_T / ds_t||, median over sequences (log)",
             title=f"random untrained cells, {results['units']} units, N(0, 1) inputs of dimension "
                   f"{results['input_dimension']}, T = {results['steps']}")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
    save_figure(figure, path,
                "Vanishing gradient: how much of the loss at step T reaches the state at step t")
