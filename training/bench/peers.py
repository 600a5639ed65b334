"""python -m training.bench.peers [--quick]: the zoo's train steps beside the same models in PyTorch.

Needs the optional `peers` extra (PyTorch, CPU build; `make bench-peers` installs it). For
ResNet-20, cnn_mnist and lstm_ptb: the PyTorch model built from the same config (same layer
shapes and parameter counts: `parameter_count` here equals Keras' count_params, which
tests/test_bench_peers.py checks), the same batch, loss, optimizer and peak learning rate, float32,
PyTorch pinned to TensorFlow's thread count; for lstm_ptb also the zoo's step with Keras' own
recurrent loop (zoo.models.recurrent) and with XLA, and the recurrent layers alone in both
frameworks. One process alternates rounds (zoo, then each variant), so a load change on a shared
machine falls on both sides of a round's ratio.
Writes the figures under "peers" in reports/bench.json and the table in bench.md.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, cast

import numpy as np
import tensorflow as tf
import torch
import torch.nn.functional as F
from torch import nn

from training import cards
from training.bench.measure import image_train_step, language_train_step, recurrent_train_step
from training.bench.render import REPORTS, markdown, write_reports
from training.readme import read_report
from training.recipes import Recipe, resolve
from zoo import convert, registry
from zoo.models.cnn import CNNConfig
from zoo.models.language import LanguageModelConfig
from zoo.models.resnet import ResNetConfig

MODELS = ("resnet20_cifar10", "cnn_mnist", "lstm_ptb")
# Keras' BatchNormalization defaults (momentum 0.99 of the old statistics = PyTorch's 0.01 of the new).
BN_EPSILON, BN_MOMENTUM = 1e-3, 0.01


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


class ScalePixels(nn.Module):
    """uint8 [N, C, H, W] -> float32 x / 255, or (x / 255 - mean) / std per channel (zoo's Rescaling)."""

    def __init__(self, mean: tuple[float, ...] | None, std: tuple[float, ...] | None, channels: int):
        super().__init__()
        mean, std = mean or (0.0,) * channels, std or (1.0,) * channels
        self.register_buffer("scale", torch.tensor([1 / (255 * s) for s in std]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("offset", torch.tensor([-m / s for m, s in zip(mean, std)]).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, image):
        return image.float() * self.scale + self.offset


class BasicBlock(nn.Module):
    """zoo.models.resnet's block: conv-BN-ReLU, conv-BN, + shortcut (option A: subsample, zero channels), ReLU."""

    def __init__(self, in_channels: int, filters: int, stride: int, residual: bool):
        super().__init__()
        self.conv_a = nn.Conv2d(in_channels, filters, 3, stride, 1, bias=False)
        self.bn_a = _batch_norm(filters)
        self.conv_b = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
        self.bn_b = _batch_norm(filters)
        self.residual, self.stride, self.extra = residual, stride, filters - in_channels

    def forward(self, x):  # [N, C, H, W]
        y = self.bn_b(self.conv_b(F.relu(self.bn_a(self.conv_a(x)))))
        if self.residual:
            shortcut = x[:, :, ::2, ::2] if self.stride != 1 else x
            if self.extra:
                shortcut = F.pad(shortcut, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
            y = y + shortcut
        return F.relu(y)


def resnet(config: ResNetConfig) -> nn.Module:
    blocks_per_stage = (config.depth - 2) // 6
    channels = config.input_shape[-1]
    layers: list[nn.Module] = [ScalePixels(config.mean, config.std, channels),
                               nn.Conv2d(channels, config.widths[0], 3, 1, 1, bias=False),
                               _batch_norm(config.widths[0]), nn.ReLU()]
    width = config.widths[0]
    for stage, filters in enumerate(config.widths):
        for block in range(blocks_per_stage):
            layers.append(BasicBlock(width, filters, 2 if stage > 0 and block == 0 else 1, config.residual))
            width = filters
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, config.num_classes)]
    return nn.Sequential(*layers)


def cnn(config: CNNConfig) -> nn.Module:
    height, width, channels = config.input_shape
    layers: list[nn.Module] = [ScalePixels(config.mean, config.std, channels)]
    for stage, filters in enumerate(config.filters):
        for index in range(config.convs_per_stage):
            stride = config.first_stride if stage == index == 0 else 1
            layers += [nn.Conv2d(channels, filters, 3, stride, 1, bias=False), _batch_norm(filters), nn.ReLU()]
            channels = filters
            height, width = -(-height // stride), -(-width // stride)
        layers.append(nn.MaxPool2d(2))
        height, width = height // 2, width // 2
    layers += [nn.Flatten(), nn.Dropout(config.dropout), nn.Linear(channels * height * width, config.dense_units),
               nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(config.dense_units, config.num_classes)]
    return nn.Sequential(*layers)


class LanguageModel(nn.Module):
    """zoo.models.language's tied LSTM model with its config's regularisers as zoo trains it:
    embedding, word dropout (whole words), input dropout, LSTM layers with weight drop on their
    recurrent kernels, dropout after each (locked: one mask per sequence, where the config says
    so), logits through the embedding matrix plus an output bias, and the AR/TAR penalties.
    one_module=True runs the layers as one multi-layer nn.LSTM (its own, unlocked, dropout
    between layers); else one nn.LSTM per layer as zoo does."""

    def __init__(self, config: LanguageModelConfig, one_module: bool = False):
        super().__init__()
        if config.cell != "lstm" or not config.tie_embeddings:
            raise ValueError(f"the peer model is a tied LSTM, got cell={config.cell!r}, tie={config.tie_embeddings}")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.output_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.input_rate = config.dropout if config.input_dropout is None else config.input_dropout
        if one_module:
            self.layers = nn.ModuleList([nn.LSTM(config.embedding_dim, config.hidden_units, config.num_layers,
                                                 batch_first=True, dropout=config.dropout)])
        else:
            self.layers = nn.ModuleList([nn.LSTM(config.embedding_dim if index == 0 else config.hidden_units,
                                                 config.hidden_units, batch_first=True)
                                         for index in range(config.num_layers)])
        # Keras' LSTM has one bias per gate, PyTorch's two (input and hidden): the second is held at
        # zero and not trained, so the parameters and the maths are Keras'.
        for name, parameter in self.layers.named_parameters():
            if "bias_hh" in name:
                parameter.data.zero_()
                parameter.requires_grad_(False)

    def _dropout(self, x, rate: float):
        """Dropout on [N, T, D]: one mask per sequence if the config locks it."""
        if not self.training or not rate:
            return x
        if not self.config.locked_dropout:
            return F.dropout(x, rate)
        return x * torch.bernoulli(x.new_full((x.shape[0], 1, x.shape[2]), 1 - rate)) / (1 - rate)

    def run_layer(self, layer: nn.Module, x, state):
        """The layer with DropConnect on its recurrent kernels in training (as zoo's weight drop:
        one mask per call); functional_call keeps nn.LSTM's fused kernel."""
        if not self.training or not self.config.weight_drop:
            return layer(x, state)
        dropped = {name: F.dropout(parameter, self.config.weight_drop)
                   for name, parameter in layer.named_parameters() if name.startswith("weight_hh")}
        return torch.func.functional_call(layer, dropped, (x, state))

    def forward(self, token_ids, states):
        """token_ids int64 [N, T], states per nn.LSTM (h, c) -> logits [N, T, V], new states,
        the AR + TAR penalty (0 outside training)."""
        config = self.config
        x = self.embedding(token_ids)  # [N, T, E]
        if self.training and config.embedding_dropout:  # whole words: one keep factor per vocabulary entry
            keep = torch.bernoulli(x.new_full((config.vocab_size,), 1 - config.embedding_dropout))
            x = x * (keep / (1 - config.embedding_dropout))[token_ids].unsqueeze(-1)
        x = self._dropout(x, self.input_rate)
        new_states = []
        for layer, state in zip(self.layers, states):
            raw, state = self.run_layer(layer, x, state)
            new_states.append(state)
            x = self._dropout(raw, config.dropout)
        penalty = x.new_zeros(())
        if self.training and config.activation_penalty:
            penalty = penalty + config.activation_penalty * x.square().mean()
        if self.training and config.temporal_activation_penalty:
            penalty = penalty + config.temporal_activation_penalty * (raw[:, 1:] - raw[:, :-1]).square().mean()
        return F.linear(x, self.embedding.weight, self.output_bias), new_states, penalty


def parameter_count(module: nn.Module) -> int:
    """What Keras' count_params counts: trained parameters and batch norm's moving statistics."""
    trained = sum(parameter.numel() for parameter in module.parameters() if parameter.requires_grad)
    statistics = sum(buffer.numel() for name, buffer in module.named_buffers()
                     if name.endswith(("running_mean", "running_var")))
    return trained + statistics


def optimizer(recipe: Recipe, parameters) -> torch.optim.Optimizer:
    """The recipe's optimizer at its peak rate (the schedule's per-step cost is negligible)."""
    trained = [parameter for parameter in parameters if parameter.requires_grad]
    if recipe.optimizer == "adamw":  # Keras' epsilon; decoupled decay in both
        return torch.optim.AdamW(trained, lr=recipe.learning_rate, weight_decay=recipe.weight_decay, eps=1e-7)
    if recipe.optimizer == "sgd":  # L2 through the momentum, as training.loop.CoupledWeightDecaySGD
        return torch.optim.SGD(trained, lr=recipe.learning_rate, momentum=recipe.momentum,
                               nesterov=recipe.momentum > 0, weight_decay=recipe.weight_decay)
    raise ValueError(f"no PyTorch peer for optimizer {recipe.optimizer!r}")


def _clipped_step(model: nn.Module, recipe: Recipe, optimizer_: torch.optim.Optimizer, loss) -> float:
    """Backward, clip (if the recipe does), update; the loss (Keras' train_on_batch returns it too)."""
    optimizer_.zero_grad(set_to_none=True)
    loss.backward()
    if recipe.gradient_clip_norm:
        nn.utils.clip_grad_norm_(model.parameters(), recipe.gradient_clip_norm)
    optimizer_.step()
    return float(loss.detach())


def image_peer_step(spec, model: nn.Module, channels_last: bool) -> Callable[[], float]:
    """One PyTorch train step of `model` (the spec's peer_model) on a fixed synthetic uint8 batch
    [N, C, H, W], with the spec's recipe."""
    recipe = resolve(spec)
    model.train()
    height, width, channels = spec.config.input_shape
    images = torch.randint(0, 256, (recipe.batch_size, channels, height, width), dtype=torch.uint8)
    if channels_last:  # (Module.to's stubs lack memory_format)
        cast(Any, model).to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.arange(recipe.batch_size) % spec.config.num_classes
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    optimizer_ = optimizer(recipe, model.parameters())
    return lambda: _clipped_step(model, recipe, optimizer_, criterion(model(images), labels))


def recurrent_peer_step(spec) -> Callable[[], float]:
    """As training.bench.measure.recurrent_train_step, in PyTorch: the peer's nn.LSTM layers alone
    on random embeddings [batch, sequence_length, E], with weight drop if the config has it,
    mean-square loss, state carried over."""
    recipe = resolve(spec)
    config = spec.config
    model = LanguageModel(config).train()
    layers = model.layers
    generator = torch.Generator().manual_seed(0)
    embedded = torch.randn(recipe.batch_size, recipe.sequence_length, config.embedding_dim, generator=generator)
    states = [[torch.zeros(1, recipe.batch_size, config.hidden_units)] * 2 for _ in layers]
    optimizer_ = optimizer(recipe, layers.parameters())

    def step() -> float:
        x = embedded
        for layer, state in zip(layers, states):
            x, (h, c) = model.run_layer(layer, x, tuple(state))
            state[:] = [h.detach(), c.detach()]
        return _clipped_step(layers, recipe, optimizer_, x.square().mean())
    return step


def language_peer_step(spec, model: LanguageModel) -> Callable[[], float]:
    """One PyTorch truncated-BPTT step of `model` on a fixed window [batch, sequence_length], the
    state carried from the previous step (detached), as the zoo's stateful twin."""
    recipe = resolve(spec)
    config = spec.config
    model.train()
    generator = torch.Generator().manual_seed(0)
    shape = (recipe.batch_size, recipe.sequence_length)
    inputs, targets = (torch.randint(0, config.vocab_size, shape, generator=generator) for _ in range(2))
    depth = config.num_layers // len(model.layers)  # layers per nn.LSTM: 1, or all of them
    states = [[torch.zeros(depth, recipe.batch_size, config.hidden_units)] * 2 for _ in model.layers]
    optimizer_ = optimizer(recipe, model.parameters())

    def step() -> float:
        logits, new_states, penalty = model(inputs, [tuple(state) for state in states])
        loss = F.cross_entropy(logits.reshape(-1, config.vocab_size), targets.reshape(-1)) + penalty
        loss = _clipped_step(model, recipe, optimizer_, loss)
        for state, (h, c) in zip(states, new_states):
            state[:] = [h.detach(), c.detach()]
        return loss
    return step


# name -> (unit, PyTorch variants: label -> step factory); the first variant is plain eager PyTorch.
PEERS: dict[str, tuple[str, dict[str, Callable[[Any], Callable[[], float]]]]] = {
    name: ("images", {"eager (NCHW)": lambda spec: image_peer_step(spec, peer_model(spec), False),
                      "eager, channels_last": lambda spec: image_peer_step(spec, peer_model(spec), True)})
    for name in ("resnet20_cifar10", "cnn_mnist")
}
PEERS["lstm_ptb"] = ("tokens", {
    "eager, an nn.LSTM per layer": lambda spec: language_peer_step(spec, LanguageModel(spec.config)),
    "eager, one multi-layer nn.LSTM": lambda spec: language_peer_step(spec, LanguageModel(spec.config, True))})


def peer_model(spec) -> nn.Module:
    """The PyTorch model of a spec in PEERS (language models with one nn.LSTM per layer)."""
    if isinstance(spec.config, LanguageModelConfig):
        return LanguageModel(spec.config)
    return (resnet if isinstance(spec.config, ResNetConfig) else cnn)(spec.config)


def _rate(step: Callable[[], Any], steps: int, examples: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * examples / (time.perf_counter() - start)


def compare(name: str, steps: int, rounds: int) -> dict:
    """Examples/s of the zoo's train step, its own variants' and each PyTorch variant's, alternating
    round by round; each ratio zoo / variant is the median of the rounds' ratios."""
    spec = registry.get(name)
    unit, variants = PEERS[name]
    recipe = resolve(spec)
    if unit == "tokens":
        zoo_step, examples = language_train_step(spec)
        batch = f"{recipe.batch_size} x {recipe.sequence_length}"
    else:
        zoo_step, examples = image_train_step(spec, spec.build())
        batch = str(recipe.batch_size)
    # The zoo's own alternatives, timed in the same rounds: zoo / alternative is what each buys.
    zoo_variants = {"Keras' recurrent loop (inputs not hoisted)": language_train_step(spec, hoist_inputs=False)[0],
                    "XLA (jit_compile, inputs hoisted)": language_train_step(spec, jit_compile=True)[0],
                    "XLA and Keras' recurrent loop": language_train_step(spec, hoist_inputs=False, jit_compile=True)[0],
                    } if unit == "tokens" else {}
    peer_steps = {label: factory(spec) for label, factory in variants.items()}
    # Where a language model's step goes: its recurrent layers alone, in each framework.
    alone = {"zoo": recurrent_train_step(spec)[0], "PyTorch": recurrent_peer_step(spec)} if unit == "tokens" else {}
    timed_steps = {"": zoo_step, **zoo_variants, **peer_steps, **{f"alone {key}": step for key, step in alone.items()}}
    for step in timed_steps.values():
        step()  # warm-up (PyTorch's first steps allocate and pick kernels)
    rates: dict[str, list[float]] = {label: [] for label in timed_steps}
    for _ in range(rounds):
        for label, step in timed_steps.items():
            rates[label].append(_rate(step, steps, examples))
    entry = {"unit": unit, "batch": batch, "parameter_count": parameter_count(peer_model(spec)),
             "zoo_examples_per_second": float(np.median(rates[""])),
             "zoo_variants": {label: _versus(rates[""], rates[label]) for label in zoo_variants},
             "peers": {label: _versus(rates[""], rates[label]) for label in peer_steps}}
    if alone:
        entry["recurrent_layers_alone"] = {
            "zoo_examples_per_second": float(np.median(rates["alone zoo"])),
            "pytorch": _versus(rates["alone zoo"], rates["alone PyTorch"])}
    return entry


def _versus(zoo_rates: list[float], rates: list[float]) -> dict:
    """A variant's median rate and the median (and range) of the rounds' zoo / variant ratios."""
    ratios = [zoo / other for zoo, other in zip(zoo_rates, rates)]
    return {"examples_per_second": float(np.median(rates)), "zoo_ratio": float(np.median(ratios)),
            "zoo_ratio_range": [float(min(ratios)), float(max(ratios))]}


def tensorflow_threads() -> int:
    """TensorFlow's intra-op thread count (its default, 0, means one per available core)."""
    return tf.config.threading.get_intra_op_parallelism_threads() or convert.available_cores()


def pin_threads() -> int:
    """PyTorch on TensorFlow's thread count, seeded; returns the count."""
    threads = tensorflow_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return threads


def peer_figures(quick: bool, models: tuple[str, ...] = MODELS) -> dict:
    steps, rounds = (2, 2) if quick else (10, 5)
    threads = pin_threads()
    measured = {"created": cards.utc_now(), "hardware": cards.hardware_summary(),
                "load_average": os.getloadavg()[0], "threads": threads, "torch": torch.__version__,
                "tensorflow": tf.__version__, "steps_per_round": steps, "rounds": rounds, "quick": quick}
    figures = {}
    for name in models:
        figures[name] = compare(name, steps, rounds)
        print(name, json.dumps(figures[name]), flush=True)
    return {"peers": {"measured": measured, "models": figures}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 steps (a smoke run, not a measurement)")
    parser.add_argument("--output", default=str(REPORTS), help="folder of bench.json (updated) and bench.md")
    parser.add_argument("--update-readme", action="store_true", help="also quote the tables in README.md")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    args = parser.parse_args()
    path = Path(args.output) / "bench.json"
    results = read_report(path, {})
    if not results.get("training"):
        raise SystemExit(f"{path} holds no `make bench` figures to add the peers to; run `make bench` first "
                         "(with the same ISA= for a limited run)")
    results.update(peer_figures(args.quick, tuple(args.models)))
    write_reports(results, Path(args.output), args.update_readme)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
