"""NT-ASGD (Merity et al. 2017): SGD until the validation loss stalls, then the weights averaged
over every later step; validation and the exported model use the average.

The average lives in the optimizer (Keras' moving-average slots, one per trainable variable), so
it is saved and restored with the checkpoints like any optimizer state, and `model.fit` puts it
into the model's weights at the end (`finalize_variable_values`). Before the trigger the average
simply follows the weights, so a run that never triggers ends with its last weights.
"""
from __future__ import annotations

from typing import Callable

import keras
import numpy as np
from keras import ops


class AveragingSGD(keras.optimizers.SGD):
    """SGD (with l2 added to the gradient, like training.loop.CoupledWeightDecaySGD) keeping a
    uniform average of the weights from the step `start_averaging` is called on."""

    def __init__(self, *args, l2: float = 0.0, **kwargs):
        kwargs.pop("use_ema", None)
        super().__init__(*args, use_ema=True, **kwargs)
        self.l2 = l2

    def build(self, variables):
        super().build(variables)
        # averaging: 0 until triggered, then 1; averaged_steps: steps in the average so far
        self.averaging = self.add_variable((), initializer="zeros", dtype="float32", name="averaging")
        self.averaged_steps = self.add_variable((), initializer="zeros", dtype="float32", name="averaged_steps")

    def start_averaging(self) -> None:
        self.averaging.assign(1.0)

    @property
    def is_averaging(self) -> bool:
        return self.built and bool(ops.convert_to_numpy(self.averaging))

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = gradient + ops.cast(self.l2, variable.dtype) * variable
        super().update_step(gradient, variable, learning_rate)

    def _update_model_variables_moving_average(self, trainable_variables):
        # average_n = average_{n-1} * n / (n + 1) + weights / (n + 1), n = steps averaged so far;
        # before the trigger n stays 0: the average is the weights.
        steps = self.averaged_steps * self.averaging
        for variable, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                keep = ops.cast(steps / (steps + 1.0), variable.dtype)
                average.assign(keep * average + (1.0 - keep) * variable)
        self.averaged_steps.assign(steps + self.averaging)

    def average_values(self) -> list[np.ndarray]:
        return [ops.convert_to_numpy(average) for average in self._model_variables_moving_average]

    def get_config(self):
        config = {**super().get_config(), "l2": self.l2}
        config.pop("use_ema", None)
        return config


class NonMonotonicTrigger(keras.callbacks.Callback):
    """Starts the optimizer's averaging at the end of the first epoch whose validation loss is
    above the lowest of all epochs but the last `patience` (AWD-LSTM's trigger), or at the end of
    epoch `latest_epoch` (1-based; 0: no such limit); while averaging, validation runs on the
    averaged weights. `earlier_losses()` gives the validation losses of the epochs run before a
    resume (read from the run's log when training begins)."""

    def __init__(self, patience: int, earlier_losses: Callable[[], list[float]] = list, latest_epoch: int = 0):
        super().__init__()
        self.patience = patience
        self.latest_epoch = latest_epoch
        self.earlier_losses = earlier_losses
        self.losses: list[float] = []
        self._training_weights: list[np.ndarray] | None = None

    def on_train_begin(self, logs=None):
        self.losses = [float(loss) for loss in self.earlier_losses()]

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or "val_loss" not in logs:
            return
        self.losses.append(float(logs["val_loss"]))
        optimizer = self.model.optimizer
        logs["averaging"] = float(optimizer.is_averaging)
        due = bool(self.latest_epoch) and epoch + 1 >= self.latest_epoch
        if not optimizer.is_averaging and (due or should_trigger(self.losses, self.patience)):
            optimizer.start_averaging()

    def on_test_begin(self, logs=None):
        optimizer = self.model.optimizer
        if getattr(optimizer, "is_averaging", False):
            self._training_weights = [ops.convert_to_numpy(v) for v in self.model.trainable_variables]
            for variable, value in zip(self.model.trainable_variables, optimizer.average_values()):
                variable.assign(value)

    def on_test_end(self, logs=None):
        if self._training_weights is not None:
            for variable, value in zip(self.model.trainable_variables, self._training_weights):
                variable.assign(value)
            self._training_weights = None


def should_trigger(losses: list[float], patience: int) -> bool:
    """AWD-LSTM's rule on the losses so far, the latest last: more than `patience` earlier epochs,
    and the latest loss above the lowest of the earlier ones but their last `patience`."""
    earlier = losses[:-1]
    return len(earlier) > patience and losses[-1] > min(earlier[:-patience])
