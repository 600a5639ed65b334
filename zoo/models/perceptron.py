"""The perceptron, trained by its own mistake-driven rule inside keras (no backpropagation).

Multi-class rule: on a mistake (predicted p != true y), w_y <- w_y + eta x, w_p <- w_p - eta x
(biases alike). Modes:
- "online": one example at a time, each update seen by the next example;
- "minibatch": the summed update of a batch's mistakes, applied once per batch;
- "batch": gradient descent on the perceptron criterion J(w) = -sum_mistakes y w.x over the
  whole training set: the same summed step, with the whole training set as one batch.
With `averaged=True` the classifier is the average of the weights after every example (online)
or every step (minibatch/batch), which generalises better (Freund & Schapire 1999).
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from zoo.models.linear import linear_features

MODES = ("online", "minibatch", "batch")


@dataclasses.dataclass(frozen=True)
class PerceptronConfig:
    input_shape: tuple[int, ...] = (28, 28, 1)
    num_classes: int = 10
    pixel_input: bool = True
    mode: str = "online"
    learning_rate: float = 1.0  # eta; with zero initial weights it only scales w
    averaged: bool = True


@keras.saving.register_keras_serializable(package="zoo")
class Perceptron(keras.Model):
    """A functional linear model whose train_step applies the perceptron rule.

    The layer "scores" holds the classifier used for prediction and export: the working
    weights, or their running average when averaged. Working weights and the average's
    accumulators are extra non-trainable variables (the averaging trick of Daume III:
    average = w - u / c, with u the updates weighted by their example counter c)."""

    def __init__(self, inputs, outputs, config: PerceptronConfig, **kwargs):
        super().__init__(inputs, outputs, **kwargs)
        self.config = config
        self.features = keras.Model(inputs, self.get_layer("scores").input)  # x -> [N, D]
        dimension, classes = self.get_layer("scores").kernel.shape

        def state(name, shape):
            return self.add_weight(shape=shape, initializer="zeros", trainable=False, name=name)

        self.working_kernel = state("working_kernel", (dimension, classes))
        self.working_bias = state("working_bias", (classes,))
        self.update_sum_kernel = state("update_sum_kernel", (dimension, classes))  # sum of c * update
        self.update_sum_bias = state("update_sum_bias", (classes,))
        self.counter = state("counter", ())  # examples (online) or steps seen, c
        self.mistake_tracker = keras.metrics.Mean(name="mistake_rate")  # updates made / examples

    def get_config(self):
        return {"name": self.name, "perceptron": dataclasses.asdict(self.config)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A .keras file's model: rebuilt from its PerceptronConfig (Keras then loads its variables)."""
        settings = dict(config["perceptron"])
        settings["input_shape"] = tuple(settings["input_shape"])
        return _build_perceptron(PerceptronConfig(**settings), name=config["name"])

    def train_step(self, data):
        images, labels = data[0], data[1]
        labels = tf.argmax(labels, axis=-1) if labels.shape.rank == 2 else tf.cast(labels, tf.int64)
        features = tf.cast(self.features(images, training=False), tf.float32)  # [B, D]
        if self.config.mode == "online":
            mistakes = self._online(features, labels)
        else:
            mistakes = self._summed(features, labels)
        self._publish()
        predictions = self(images, training=False)
        self.mistake_tracker.update_state(mistakes / tf.cast(tf.shape(labels)[0], tf.float32))
        # The reported loss: the perceptron criterion of the published classifier (not differentiated).
        criterion = keras.ops.mean(perceptron_criterion(data[1], predictions))
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(criterion)
        results = self.compute_metrics(images, data[1], predictions)
        return {**results, "mistake_rate": self.mistake_tracker.result()}

    def test_step(self, data):
        results = super().test_step(data)
        return {key: value for key, value in results.items() if key != "mistake_rate"}

    def _update(self, features, labels, predicted):
        """eta (onehot(y) - onehot(p)) for each mistake: [B, K]; zero rows where p == y."""
        classes = self.config.num_classes
        delta = tf.one_hot(labels, classes) - tf.one_hot(predicted, classes)
        return self.config.learning_rate * delta

    def _summed(self, features, labels):
        scores = tf.matmul(features, self.working_kernel) + self.working_bias  # [B, K]
        predicted = tf.argmax(scores, axis=-1)
        delta = self._update(features, labels, predicted)  # [B, K]
        kernel_step = tf.matmul(features, delta, transpose_a=True)  # [D, K]
        bias_step = tf.reduce_sum(delta, axis=0)
        self.counter.assign_add(1.0)
        self.working_kernel.assign_add(kernel_step)
        self.working_bias.assign_add(bias_step)
        self.update_sum_kernel.assign_add(self.counter * kernel_step)
        self.update_sum_bias.assign_add(self.counter * bias_step)
        return tf.reduce_sum(tf.cast(predicted != labels, tf.float32))

    def _online(self, features, labels):
        def body(index, kernel, bias, sum_kernel, sum_bias, counter, mistakes):
            x = features[index]  # [D]
            predicted = tf.argmax(tf.linalg.matvec(kernel, x, transpose_a=True) + bias)
            delta = self._update(x, labels[index][None], predicted[None])[0]  # [K]
            kernel_step = x[:, None] * delta[None, :]  # [D, K]
            counter = counter + 1.0
            return (index + 1, kernel + kernel_step, bias + delta, sum_kernel + counter * kernel_step,
                    sum_bias + counter * delta, counter,
                    mistakes + tf.cast(predicted != labels[index], tf.float32))

        start = (tf.constant(0), self.working_kernel.value, self.working_bias.value,
                 self.update_sum_kernel.value, self.update_sum_bias.value, self.counter.value,
                 tf.constant(0.0))
        _, kernel, bias, sum_kernel, sum_bias, counter, mistakes = tf.while_loop(
            lambda index, *rest: index < tf.shape(features)[0], body, start)
        for variable, value in ((self.working_kernel, kernel), (self.working_bias, bias),
                                (self.update_sum_kernel, sum_kernel), (self.update_sum_bias, sum_bias),
                                (self.counter, counter)):
            variable.assign(value)
        return mistakes

    def _publish(self):
        """Copy the classifier (working or averaged weights) into the "scores" layer."""
        layer = self.get_layer("scores")
        kernel, bias = self.working_kernel, self.working_bias
        if self.config.averaged:
            # Average over c + 1 snapshots, w_0 = 0 included: w - u / (c + 1).
            scale = 1.0 / (self.counter + 1.0)
            kernel = kernel - self.update_sum_kernel * scale
            bias = bias - self.update_sum_bias * scale
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)


def perceptron_criterion(labels_one_hot, scores):
    """Multi-class perceptron criterion per example: max_k f_k(x) - f_y(x), zero when right.
    Reported as the loss (the rule, not its gradient, trains the model)."""
    true_scores = keras.ops.sum(scores * keras.ops.cast(labels_one_hot, scores.dtype), axis=-1)
    return keras.ops.max(scores, axis=-1) - true_scores


def build_perceptron_mnist(config: PerceptronConfig = PerceptronConfig()) -> Perceptron:
    return _build_perceptron(config, name="perceptron_mnist")


def build_perceptron(config: PerceptronConfig, name: str = "perceptron") -> Perceptron:
    """A perceptron of any input shape (used by the tests and experiments)."""
    return _build_perceptron(config, name=name)


def _build_perceptron(config: PerceptronConfig, name: str) -> Perceptron:
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {config.mode!r}")
    if config.learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {config.learning_rate!r}")
    inputs, features = linear_features(config)
    scores = keras.layers.Dense(config.num_classes, kernel_initializer="zeros",
                                name="scores")(features)  # f(x) [N, K]
    return Perceptron(inputs, scores, config=config, name=name)
