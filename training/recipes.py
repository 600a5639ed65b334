"""Training settings. Each registry entry's `recipe` overrides only what differs from Recipe()."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from zoo.data.images import AUGMENTATIONS, EPOCH_AUGMENTATIONS, Affine
from zoo.registry import ModelSpec


@dataclasses.dataclass(frozen=True)
class Recipe:
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adamw"  # adamw | sgd | perceptron (the model's own update rule)
    learning_rate: float = 1e-3  # peak rate, reached after warmup
    # adamw: decoupled decay (AdamW); sgd: L2 on the gradient, through the momentum (the papers'
    # and PyTorch's weight_decay).
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    # sgd: batch-norm offsets (beta) step this many times faster, their decay per step unchanged
    # (airbench's bias_scaler: PyTorch's lr x factor with weight_decay / factor).
    batch_norm_rate_factor: float = 1.0
    # triangular: linear from 0.2 x the rate up to the rate at triangle_peak (a fraction of all
    # steps), then down to 0.07 x at the end (airbench's).
    schedule: str = "cosine"  # constant | cosine | steps | triangular
    triangle_peak: float = 0.23
    step_epochs: tuple[int, ...] = ()  # steps: multiply the rate by step_factor at each of these epochs
    step_factor: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    augment: str = "none"  # none | shift | flip_crop | affine | alternating_flip_translate (zoo.data.images)
    # affine: per image, rotation within +-affine_rotation degrees, translation within
    # +-affine_translation pixels, scale within 1 +- affine_scale
    affine_rotation: float = 15.0
    affine_translation: float = 3.0
    affine_scale: float = 0.1
    # affine with elastic_alpha > 0: also an elastic distortion (Simard et al. 2003), a smoothed
    # random displacement field (zoo.data.images.Affine)
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0
    # An exponential moving average of the weights (Keras' use_ema), which the model gets at the
    # end of training; None: the last weights.
    ema_momentum: float | None = None
    # Every this many steps the weights (and batch-norm statistics) move to an exponential average
    # of themselves at those steps, which is kept (airbench's lookahead; 0: off).
    lookahead_every: int = 0
    # Models with a PatchWhitening layer: its bias trains for this many epochs, then stays (0: always trains).
    freeze_whitening_bias_after: int = 0
    # Image models. test: per-epoch validation on the test split; none: the test split is read once,
    # after training; holdout (python -m training.ablation sets it): trains on all but the last
    # HOLDOUT_EXAMPLES training images and measures on those; the test split is never read.
    validation: str = "test"
    # mixed_bfloat16: the training model computes in bfloat16 with float32 weights (Keras' mixed
    # precision; CPUs with AVX512_BF16 or AMX run it faster); the exported model is float32.
    precision: str = "float32"
    # XLA for the train step (Keras' jit_compile). Off by default: on these CPUs it made image train
    # steps slower (README "Recipe notes"); `make bench-peers` times lstm_ptb's step with it.
    jit_compile: bool = False
    gradient_clip_norm: float | None = None
    sequence_length: int = 35  # language models: truncated-BPTT window, in tokens
    seed: int = 0
    time_limit_minutes: float | None = None  # stop after the first epoch ending past this much training time
    # nt_asgd (language models): non-monotonically triggered averaging (Merity et al. 2017): once
    # the validation loss is above the best of all but the last `averaging_patience` epochs, the
    # weights are averaged over every later step; validation and the export use the average.
    averaging: str = "none"  # none | nt_asgd
    averaging_patience: int = 5
    # nt_asgd: averaging starts at the end of this epoch at the latest, triggered or not (0: only
    # the trigger), so a run with a time budget still ends on an average.
    averaging_start_epoch: int = 0

    def __post_init__(self):
        if not isinstance(self.jit_compile, bool):
            raise ValueError(f"recipe jit_compile must be true or false, got {self.jit_compile!r}")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"recipe {name} must be one of {choices}, got {getattr(self, name)!r}")
        for name in ("lookahead_every", "freeze_whitening_bias_after", "averaging_start_epoch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"recipe {name} must be an int >= 0, got {value!r}")
        for name in ("epochs", "batch_size", "sequence_length", "averaging_patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"recipe {name} must be a positive int, got {value!r}")
        for name in ("learning_rate", "step_factor", "gradient_clip_norm", "time_limit_minutes",
                     "batch_norm_rate_factor"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"recipe {name} must be a positive number, got {value!r}")
        if not (isinstance(self.warmup_epochs, (int, float)) and 0 <= self.warmup_epochs <= self.epochs):
            raise ValueError(f"recipe warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs!r}")
        for name, low, high in (("weight_decay", 0, None), ("momentum", 0, 1), ("label_smoothing", 0, 1),
                                ("affine_rotation", 0, 180), ("affine_translation", 0, None), ("affine_scale", 0, 1),
                                ("triangle_peak", 0, 1)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < low or (high is not None and value >= high):
                bounds = f"in [{low}, {high})" if high is not None else f">= {low}"
                raise ValueError(f"recipe {name} must be a number {bounds}, got {value!r}")
        if not (isinstance(self.elastic_alpha, (int, float)) and 0 <= self.elastic_alpha <= 100):
            raise ValueError(f"recipe elastic_alpha must be a number in [0, 100] pixels, got {self.elastic_alpha!r}")
        if not (isinstance(self.elastic_sigma, (int, float)) and 0.5 <= self.elastic_sigma <= 16):
            raise ValueError(f"recipe elastic_sigma must be a number in [0.5, 16] pixels, got {self.elastic_sigma!r}")
        if self.elastic_alpha > 0 and self.augment != "affine":
            raise ValueError(f"recipe elastic_alpha distorts the affine augmentation; augment is {self.augment!r}")
        if self.ema_momentum is not None and not (isinstance(self.ema_momentum, float) and 0 < self.ema_momentum < 1):
            raise ValueError(f"recipe ema_momentum must be None or in (0, 1), got {self.ema_momentum!r}")
        if self.averaging == "nt_asgd" and self.ema_momentum is not None:
            raise ValueError("recipe averaging nt_asgd keeps its own average of the weights; ema_momentum must be None")
        if self.averaging == "nt_asgd" and self.optimizer != "sgd":
            raise ValueError(f"recipe averaging nt_asgd averages SGD's steps; the optimizer is {self.optimizer!r}")
        if not all(isinstance(epoch, int) and epoch > 0 for epoch in self.step_epochs):
            raise ValueError(f"recipe step_epochs must be positive epoch numbers, got {self.step_epochs!r}")

    def affine(self) -> Affine:
        """The 'affine' augmentation's ranges (with its elastic distortion) that this recipe sets."""
        return Affine(self.affine_rotation, self.affine_translation, self.affine_scale, self.elastic_alpha,
                      self.elastic_sigma)


CHOICES = {"optimizer": ("adamw", "sgd", "perceptron"), "schedule": ("constant", "cosine", "steps", "triangular"),
           "augment": AUGMENTATIONS + EPOCH_AUGMENTATIONS, "averaging": ("none", "nt_asgd"),
           "validation": ("test", "none", "holdout"), "precision": ("float32", "mixed_bfloat16")}
HOLDOUT_EXAMPLES = 5000  # validation="holdout": the last this many training examples


def resolve(spec: ModelSpec, overrides: Mapping[str, Any] | None = None) -> Recipe:
    """Recipe() <- the registry's recipe for `spec` <- command-line overrides."""
    merged = {**spec.recipe, **(overrides or {})}
    fields = {field.name: field for field in dataclasses.fields(Recipe)}
    unknown = sorted(set(merged) - set(fields))
    if unknown:
        raise ValueError(f"unknown recipe settings {unknown}; known: {sorted(fields)}")
    return Recipe(**merged)


_KINDS = {bool: "true or false", int: "an int", str: "a word"}


def parse_override(text: str, settings: type = Recipe, flag: str = "--set") -> tuple[str, Any]:
    """'key=value' from the command line, the value typed like the default of `settings`' field
    (a frozen dataclass: Recipe, or a model's config)."""
    key, separator, raw = text.partition("=")
    defaults = {field.name: field.default for field in dataclasses.fields(settings)}
    if not separator or key not in defaults:
        raise ValueError(f"{flag} takes key=value with key one of {sorted(defaults)}, got {text!r}")
    default = defaults[key]
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            return key, raw.lower() == "true"
        if isinstance(default, tuple):
            return key, tuple(int(part) for part in raw.split(",") if part)
        if default is None or isinstance(default, float):
            return key, None if raw.lower() == "none" else float(raw)
        return key, int(raw) if isinstance(default, int) else str(raw)
    except ValueError:
        raise ValueError(f"{flag} {key} takes {_KINDS.get(type(default), 'a number')}"
                         f"{' (comma-separated ints)' if isinstance(default, tuple) else ''}, got {raw!r}") from None
