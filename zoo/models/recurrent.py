"""Keras' LSTM, GRU and SimpleRNN layers with the input projection hoisted out of the time loop.

Keras runs a recurrent cell once per time step, and each step multiplies that step's input by the
input kernel [D, G*H] besides the state by the recurrent kernel [H, G*H]. These layers project the
inputs of every step in one matmul ([N*T, D] x [D, G*H]) before the loop, so the loop does only
the recurrent product and the gates, and the input kernel's gradient is one matmul after it.
The loop runs unrolled where the length is known when the step is traced and at most
UNROLL_LIMIT (the training windows), else (and under XLA) as a tf.scan. Same variables, same
maths (up to float rounding: the sums are added in another order).
Whatever this does not cover (masks, which the serving signatures pass; cell dropout; going
backwards; unroll=True; another backend; cuDNN on a GPU) runs Keras' own loop. `make bench-peers`
times lstm_ptb's train step both ways.

The classes keep Keras' names: a .weights.h5 file keys each layer's variables by its class name
(`layers/gru/cell/vars/0`), so the committed weights of models built with Keras' layers load.
A .keras file of a model built with them names `zoo>GRU` etc.: it loads once zoo is imported.
"""
from __future__ import annotations

import functools

import keras
from keras import ops

# Sequences of at most this many steps, of a length known when the step is traced, run unrolled:
# TensorFlow's executor runs straight-line ops with less overhead than a while loop's iterations.
# Not under XLA, which compiled lstm_ptb's 35-step window faster as a loop than unrolled.
UNROLL_LIMIT = 64


def _in_xla() -> bool:
    try:  # no public way to ask; if these move, take the loop, which is right everywhere
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:
        return True
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()))


@functools.cache
def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


class _Hoisted(keras.layers.RNN):
    """Put before a Keras RNN layer in the bases; subclasses give `_project` and `_step`.
    hoist_inputs=False always runs Keras' loop (the bench's comparison)."""

    def __init__(self, units, hoist_inputs: bool = True, **kwargs):
        super().__init__(units, **kwargs)  # the keras layer after this class in the bases
        self.hoist_inputs = hoist_inputs

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self._hoistable(mask, training):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        import tensorflow as tf

        dtype = self.cell.compute_dtype
        # The cell's variables as the cell reads them: in the compute dtype (bfloat16 under mixed
        # precision), and the recurrent kernel as weight drop may have replaced it for this call.
        kernel = ops.cast(self.cell.kernel, dtype)
        recurrent_kernel = ops.cast(self.cell.recurrent_kernel, dtype)
        bias = None if self.cell.bias is None else ops.cast(self.cell.bias, dtype)
        projected = self._project(ops.cast(sequences, dtype), kernel, bias)  # [N, T, G*H]
        states = tuple(ops.cast(state, dtype) for state in initial_state)  # each [N, H]
        steps = projected.shape[1]
        if steps is not None and 0 < steps <= UNROLL_LIMIT and not _in_xla():
            outputs = []
            for z in tf.unstack(projected, axis=1):  # each [N, G*H]
                states = self._step(z, states, recurrent_kernel, bias)
                outputs.append(states[0])
            return states[0], tf.stack(outputs, axis=1), list(states)
        # [T, N, G*H] -> every state's sequence [T, N, H]; the first state is the output h.
        sequence_states = tf.scan(lambda carry, z: self._step(z, carry, recurrent_kernel, bias),
                                  tf.transpose(projected, [1, 0, 2]), initializer=states)
        last_states = [state[-1] for state in sequence_states]
        return last_states[0], tf.transpose(sequence_states[0], [1, 0, 2]), last_states

    def _hoistable(self, mask, training) -> bool:
        cell = self.cell
        dropout = training and (cell.dropout or cell.recurrent_dropout)
        # use_cudnn=True is Keras' to honour (or refuse); "auto" takes cuDNN where there is a GPU.
        use_cudnn = getattr(self, "use_cudnn", False)
        cudnn = use_cudnn is True or (use_cudnn == "auto" and _has_gpu())
        return (self.hoist_inputs and keras.backend.backend() == "tensorflow" and mask is None and not dropout
                and not cudnn and not self.go_backwards and not self.unroll)

    def get_config(self):
        config = {**super().get_config(), "hoist_inputs": self.hoist_inputs}
        if hasattr(self, "use_cudnn"):  # Keras' LSTM and GRU leave it out: a reloaded layer would say "auto"
            config["use_cudnn"] = self.use_cudnn
        return config

    def _project(self, sequences, kernel, bias):
        projected = ops.matmul(sequences, kernel)
        return projected if bias is None else projected + bias

    def _step(self, projected, states, recurrent_kernel, bias) -> tuple:
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="zoo")
class LSTM(_Hoisted, keras.layers.LSTM):
    """keras.layers.LSTM with the input projection before the time loop."""

    def _step(self, projected, states, recurrent_kernel, bias):
        h, c = states  # each [N, H]
        z = projected + ops.matmul(h, recurrent_kernel)  # [N, 4H]: input, forget, cell, output gates
        c, o = self.cell._compute_carry_and_output_fused(ops.split(z, 4, axis=-1), c)
        h = o * self.cell.activation(c)
        return h, c


@keras.saving.register_keras_serializable(package="zoo")
class GRU(_Hoisted, keras.layers.GRU):
    """keras.layers.GRU with the input projection before the time loop (reset_after=True, Keras'
    default; reset_after=False takes Keras' own loop)."""

    def _hoistable(self, mask, training) -> bool:
        return self.cell.reset_after and super()._hoistable(mask, training)

    def _project(self, sequences, kernel, bias):
        # bias [2, 3H]: the input projection's bias, then the recurrent one
        return super()._project(sequences, kernel, None if bias is None else bias[0])

    def _step(self, projected, states, recurrent_kernel, bias):
        (h,) = states  # [N, H]
        inner = ops.matmul(h, recurrent_kernel)  # [N, 3H]: update, reset, candidate
        if bias is not None:
            inner = inner + bias[1]
        x_z, x_r, x_h = ops.split(projected, 3, axis=-1)
        inner_z, inner_r, inner_h = ops.split(inner, 3, axis=-1)
        z = self.cell.recurrent_activation(x_z + inner_z)
        r = self.cell.recurrent_activation(x_r + inner_r)
        candidate = self.cell.activation(x_h + r * inner_h)
        return (z * h + (1 - z) * candidate,)


@keras.saving.register_keras_serializable(package="zoo")
class SimpleRNN(_Hoisted, keras.layers.SimpleRNN):
    """keras.layers.SimpleRNN with the input projection before the time loop."""

    def _step(self, projected, states, recurrent_kernel, bias):
        (h,) = states  # [N, H]
        output = projected + ops.matmul(h, recurrent_kernel)
        return (self.cell.activation(output),)


HOISTED_LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}
