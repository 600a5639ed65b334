"""An LSTM cell whose forget gate is 1 and input gate 0 keeps its cell state unchanged:
c_t = f * c_{t-1} + i * g = c_{t-1}, for any number of steps and any inputs. The gates are set
through their biases (+-100: sigmoid gives exactly 1.0 and ~1e-44 in float32, far beyond what
the random input and recurrent weights add); the rest of the cell stays random. For contrast,
each condition alone (forget gate 1 but input gate left at keras' default: new input piles up;
input gate 0 but forget gate default: the memory decays) and keras' default biases."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from training.experiments.common import save_figure, seed, subplots

UNITS, INPUT_DIMENSION = 16, 8
SATURATED = 100.0


def lstm_cell(forget_bias: float | None, input_bias: float | None = None) -> keras.layers.LSTMCell:
    """A random keras LSTMCell; gate biases (order i, f, c, o) overridden where given."""
    cell = keras.layers.LSTMCell(UNITS)
    cell.build((None, INPUT_DIMENSION))
    bias = cell.bias.numpy()
    if input_bias is not None:
        bias[:UNITS] = input_bias
    if forget_bias is not None:
        bias[UNITS:2 * UNITS] = forget_bias
    cell.bias.assign(bias)
    return cell


def run_cell(cell, inputs: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """Cell states [T + 1, B, units] from c_0 = memory, h_0 = 0, over inputs [B, T, D]."""
    step = tf.function(lambda x, hidden, cell_state: cell(x, [hidden, cell_state])[1])
    hidden, cell_state = tf.zeros_like(memory), tf.constant(memory)
    states = [memory]
    for index in range(inputs.shape[1]):
        hidden, cell_state = step(inputs[:, index], hidden, cell_state)
        states.append(cell_state.numpy())
    return np.stack(states)


def run(quick: bool = False, data_dir=None) -> dict:
    steps = 1000  # the claim's number of steps; cheap enough for the test too (quick is the same)
    seed(0)
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(4, steps, INPUT_DIMENSION)).astype(np.float32)  # 4 random sequences
    memory = rng.normal(size=(4, UNITS)).astype(np.float32)  # the stored c_0
    variants = {"f = 1, i = 0 (b_f = +100, b_i = -100)": lstm_cell(SATURATED, -SATURATED),
                "f = 1 only (b_f = +100, b_i default 0: i ~ 0.5)": lstm_cell(SATURATED),
                "i = 0 only (b_i = -100, b_f default 1: f ~ 0.73)": lstm_cell(None, -SATURATED),
                "keras defaults (b_f = 1, b_i = 0)": lstm_cell(None)}
    relative_change, final = {}, {}
    for name, cell in variants.items():
        states = run_cell(cell, inputs, memory)
        change = np.linalg.norm(states - memory, axis=2) / np.linalg.norm(memory, axis=1)  # [T + 1, B]
        relative_change[name] = change.mean(axis=1)
        final[name] = {"max_abs_change_of_c": float(np.max(np.abs(states[-1] - memory))),
                       "relative_change_of_c": float(change[-1].mean()),
                       "norm_ratio_c_T_to_c_0": float(np.mean(np.linalg.norm(states[-1], axis=1)
                                                              / np.linalg.norm(memory, axis=1)))}
    return {"steps": steps, "units": UNITS, "sequences": len(inputs), "final": final,
            "relative_change": {name: np.round(values, 5) for name, values in relative_change.items()}}


def plot(results: dict, path) -> None:
    figure, (axis,) = subplots(width=8, height=5)
    for name, values in results["relative_change"].items():
        axis.plot(np.arange(len(values)), values, linewidth=2.5 if "i = 0 (" in name else 1.2, label=name)
    axis.set_yscale("symlog", linthresh=0.01)  # linear near 0, so an exact 0 shows as 0
    axis.set(xscale="symlog", xlabel="step t (symlog)",
             ylabel="||c_t - c_0|| / ||c_0||, mean of sequences (symlog)",
             title=f"random LSTM cell, {results['units']} units, random inputs, c_0 random")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    exact = results["final"][next(iter(results["final"]))]["max_abs_change_of_c"]
    save_figure(figure, path, "LSTM memory: forget gate 1 and input gate 0 keep the cell state\n"
                f"(after {results['steps']} steps: max |c_T - c_0| = {exact:g})")
