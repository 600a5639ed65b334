"""All-convolutional networks: no pooling; each stage's 3x3 'valid' conv-BN-ReLU layers end in a
strided k x k conv-BN-ReLU that halves H and W (learned downsampling, Springenberg et al. 2015),
then dropout; a conv as large as the last feature map, and a linear classifier. As in the strongest
single MNIST CNNs (Deotte's Kaggle study; An et al. 2020): batch norm after every conv, no pooling."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import keras

from zoo.models.common import (
    BatchNormalization,
    MergeViews,
    TestTimeViews,
    check_settings,
    check_views,
    image_input,
    scale_pixels,
)


@dataclasses.dataclass(frozen=True)
class AllConvConfig:
    input_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10
    filters: tuple[int, ...] = (32, 64)  # one entry per stage (Deotte's widths)
    convs_per_stage: int = 2  # 3x3 'valid' convs before the stage's strided conv (each trims 2 pixels)
    downsample_kernel: int = 5  # the stage's last conv: k x k, stride 2, 'same'
    head_filters: int = 128  # a 'valid' conv over the whole last feature map -> [N, 1, 1, head_filters]
    dropout: float = 0.4  # after each stage and before the classifier
    # 1: at inference, also score the four one-pixel shifts (common.VIEW_WEIGHTS["shift"]); 0: none
    tta_level: int = 0
    views: ClassVar[str] = "shift"


def build_allconv_mnist(config: AllConvConfig = AllConvConfig()) -> keras.Model:
    return _build_allconv(config, name="allconv_mnist")


def _build_allconv(config: AllConvConfig, name: str) -> keras.Model:
    if not config.filters:
        raise ValueError("filters must name at least one stage, got ()")
    check_settings(config, ("num_classes", "convs_per_stage", "downsample_kernel", "head_filters"), ("dropout",))
    check_views(config.tta_level, config.views)
    if min(_final_size(side, config) for side in config.input_shape[:2]) < 1:
        raise ValueError(f"input_shape {config.input_shape} is too small for {len(config.filters)} stages "
                         f"of {config.convs_per_stage} 'valid' 3x3 convs")
    image = image_input(config.input_shape)
    x = scale_pixels(image)
    x = TestTimeViews(config.tta_level, config.views, name="views")(x)  # inference: [V * N, H, W, C]
    for stage, filters in enumerate(config.filters):
        for index in range(config.convs_per_stage):
            x = _conv_bn_relu(x, filters, 3, 1, "valid", f"stage{stage}_conv{index}")  # H, W shrink by 2
        x = _conv_bn_relu(x, filters, config.downsample_kernel, 2, "same", f"stage{stage}_down")  # H, W halve
        x = keras.layers.Dropout(config.dropout, name=f"stage{stage}_dropout")(x)
    x = _conv_bn_relu(x, config.head_filters, (x.shape[1], x.shape[2]), 1, "valid", "head")  # [N, 1, 1, head_filters]
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
    # The Dense keeps the name "scores" it had before views existed, so committed weights files
    # (matched by layer name) still load; airbench names its MergeViews "scores" instead.
    logits = keras.layers.Dense(config.num_classes, name="scores")(x)  # [N, K] ([V * N, K] with views)
    scores = MergeViews(config.tta_level, config.views, name="merged_views")(logits)  # [N, K]
    return keras.Model(image, scores, name=name)


def _final_size(side: int, config: AllConvConfig) -> int:
    """The last feature map's height (or width) for an input side of `side`; < 1: too small."""
    for _ in config.filters:
        side -= 2 * config.convs_per_stage
        if side < 1:
            return side
        side = (side + 1) // 2  # stride 2, 'same'
    return side


def _conv_bn_relu(x, filters: int, kernel_size, strides: int, padding: str, name: str):
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=False, name=name)(x)
    x = BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)
