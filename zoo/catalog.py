"""Every model of the zoo, registered once. The Makefile, tests, CLI and API read this."""
from __future__ import annotations

from zoo.data import labels
from zoo.models import airbench, allconv, cnn, language, linear, mlp, perceptron, resnet
from zoo.registry import ModelSpec, register

MNIST_LABELS = labels.MNIST
CIFAR10_LABELS = labels.CIFAR10

register(ModelSpec(
    name="linear_mnist", task="image", dataset="mnist",
    builder=linear.build_linear_mnist, config=linear.LinearConfig(),
    parameter_count=7_850, metric="accuracy", bar=0.925,
    reference="~0.92 (classic TF softmax-regression tutorial)",
    recipe={"epochs": 20, "learning_rate": 2e-3, "weight_decay": 0.0},
    label_names=MNIST_LABELS, hyperplane_distance=True,
    description="Multinomial logistic regression: f(x) = W^T x + b on the 784 scaled pixels, softmax.",
))

register(ModelSpec(
    name="perceptron_mnist", task="image", dataset="mnist",
    builder=perceptron.build_perceptron_mnist, config=perceptron.PerceptronConfig(),
    # 7,850 classifier weights + 15,701 of training state (working weights, averaging sums, counter).
    parameter_count=23_551, metric="accuracy", bar=0.91,
    reference="classic rule, 5 epochs, numpy: plain 0.898, averaged 0.927",
    recipe={"epochs": 5, "batch_size": 1000, "optimizer": "perceptron"},
    label_names=MNIST_LABELS, probabilistic=False, hyperplane_distance=True,
    description="Multi-class perceptron trained online by the mistake-driven rule "
                "(w_y += x, w_pred -= x on a mistake), with weight averaging.",
))

register(ModelSpec(
    name="mlp_mnist", task="image", dataset="mnist",
    builder=mlp.build_mlp_mnist, config=mlp.MLPConfig(),
    parameter_count=814_090, metric="accuracy", bar=0.985,
    reference="keras MLP example: 0.9840",
    recipe={"epochs": 30, "learning_rate": 1e-3, "augment": "shift", "label_smoothing": 0.1},
    label_names=MNIST_LABELS,
    description="Three-layer network: 784 inputs, 1024 ReLU hidden units with dropout 0.3, 10 outputs.",
))

register(ModelSpec(
    name="cnn_mnist", task="image", dataset="mnist",
    builder=cnn.build_cnn_mnist, config=cnn.CNNConfig(),
    parameter_count=468_394, metric="accuracy", bar=0.995,
    reference="keras-io simple MNIST convnet: 0.9922",
    recipe={"epochs": 15, "batch_size": 128, "learning_rate": 2e-3, "warmup_epochs": 1,
            "augment": "shift", "label_smoothing": 0.1},
    label_names=MNIST_LABELS,
    description="Conv + pooling network: two stages of two 3x3 conv-BN-ReLU layers and a "
                "max-pool (32, 64 filters), dropout, a 128-unit dense layer, 10 outputs.",
))

register(ModelSpec(
    name="allconv_mnist", task="image", dataset="mnist",
    builder=allconv.build_allconv_mnist, config=allconv.AllConvConfig(),
    parameter_count=326_826, metric="accuracy", bar=0.997,
    reference="An et al. 2020, 150 epochs: 0.9970 (mean of 30 seeds)",
    # Chosen on the last 5,000 training images (reports/ablation/allconv_mnist.md): the best of the
    # variants tried there (affine and elastic distortions, 40 epochs), in bfloat16 mixed precision.
    recipe={"epochs": 40, "batch_size": 128, "learning_rate": 2e-3, "warmup_epochs": 1,
            "augment": "affine", "affine_rotation": 10.0, "elastic_alpha": 36.0, "elastic_sigma": 6.0,
            "label_smoothing": 0.1, "validation": "none", "precision": "mixed_bfloat16"},
    label_names=MNIST_LABELS,
    description="All-convolutional network: two stages of two 3x3 'valid' conv-BN-ReLU layers and a "
                "5x5 stride-2 conv-BN-ReLU (32, 64 filters), no pooling, dropout, a 4x4 conv to 128 "
                "features, 10 outputs.",
))

register(ModelSpec(
    name="cnn_cifar10", task="image", dataset="cifar10",
    builder=cnn.build_cnn_cifar10, config=cnn.CIFAR10_CONFIG,
    parameter_count=815_466, metric="accuracy", bar=0.85,
    reference="",
    recipe={"epochs": 12, "batch_size": 128, "learning_rate": 2e-3, "warmup_epochs": 1,
            "weight_decay": 5e-4, "augment": "flip_crop", "label_smoothing": 0.1},
    label_names=CIFAR10_LABELS,
    description="Conv + pooling network for 32x32 RGB: three stages of two 3x3 conv-BN-ReLU "
                "layers and a max-pool (32, 64, 128 filters), dropout, 256-unit dense layer.",
))

# SGD with the papers' L2 through the momentum (training.loop.CoupledWeightDecaySGD); README "Recipe notes".
_RESNET_RECIPE = {"epochs": 60, "batch_size": 128, "optimizer": "sgd", "learning_rate": 0.1,
                  "weight_decay": 5e-4, "warmup_epochs": 1, "augment": "flip_crop",
                  "label_smoothing": 0.1}


def _register_resnet(depth: int, builder, parameter_count: int, bar: float, paper_accuracy: str,
                     recipe_overrides: dict | None = None) -> None:
    blocks = (depth - 2) // 6
    register(ModelSpec(
        name=f"resnet{depth}_cifar10", task="image", dataset="cifar10",
        builder=builder, config=resnet.ResNetConfig(depth=depth),
        parameter_count=parameter_count, metric="accuracy", bar=bar,
        reference=f"He et al. 2016, 164 epochs: {paper_accuracy}",
        recipe={**_RESNET_RECIPE, **(recipe_overrides or {})}, label_names=CIFAR10_LABELS,
        description=f"ResNet-{depth} for CIFAR (He et al. 2016): 3 stages x {blocks} basic blocks, "
                    "16/32/64 filters, identity shortcuts, BN.",
    ))


_register_resnet(20, resnet.build_resnet20_cifar10, 271_098, bar=0.9125, paper_accuracy="0.9125")
# Trained in bfloat16 mixed precision (float32 weights exported; the bench's speed-up) on all
# 50,000 training images, the test split read once at the end.
_register_resnet(56, resnet.build_resnet56_cifar10, 857_082, bar=0.93, paper_accuracy="0.9303",
                 recipe_overrides={"precision": "mixed_bfloat16", "validation": "none"})

# airbench94's hyperparameters in Keras' terms (training.loop.CoupledWeightDecaySGD; README "Recipe
# notes"). Its PyTorch SGD (Nesterov, momentum 0.85, batch 1024, loss summed over the batch) runs
# lr = 11.5 / k and weight_decay = 0.0153 x 1024 / k / lr per parameter, k = 1024 (1 + 1 / (1 - 0.85)),
# and 64x that lr with the decay / 64 for batch-norm offsets. On the mean loss Keras' gradient is the
# sum's / 1024, so rate = 1024 lr = 11.5 / 7.667 = 1.5 and l2 = weight_decay / 1024 = 0.0153 / 11.5.
# 10 epochs of 48 steps (airbench: 9.9 epochs, 476 steps), the rate's peak at 23% of them.
_AIRBENCH_RECIPE = {"epochs": 10, "batch_size": 1024, "optimizer": "sgd", "learning_rate": 1.5,
                    "momentum": 0.85, "weight_decay": 0.0153 / 11.5, "batch_norm_rate_factor": 64.0,
                    "schedule": "triangular", "label_smoothing": 0.2,
                    "augment": "alternating_flip_translate", "lookahead_every": 5,
                    "freeze_whitening_bias_after": 3, "validation": "none"}

register(ModelSpec(
    name="airbench_cifar10", task="image", dataset="cifar10",
    builder=airbench.build_airbench_cifar10, config=airbench.AirbenchConfig(),
    parameter_count=1_973_944, metric="accuracy", bar=0.94,
    reference="airbench94: 94.01% mean over 1,000 runs, 9.9 epochs (Jordan 2024)",
    recipe=_AIRBENCH_RECIPE, label_names=CIFAR10_LABELS,
    description="airbench94 (Jordan 2024): a frozen 2x2 patch-whitening conv, three groups of "
                "conv-pool-BN-GELU and conv-BN-GELU (64/256/256 filters, identity-initialised, BN "
                "offsets only), max-pool, linear logits x 1/9; the exported model averages the "
                "probabilities of 6 views (mirror, one-pixel shifts).",
))

# Word-level language models on Penn Treebank: plain SGD on the per-token mean loss, rate 20,
# gradient clipped to global norm 0.25 (each step moves the weights by at most 5), as PyTorch's
# word_language_model example; Adam did worse on ordered text (README "Recipe notes").
LANGUAGE_RECIPE = {"optimizer": "sgd", "momentum": 0.0, "learning_rate": 20.0, "weight_decay": 0.0,
                   "gradient_clip_norm": 0.25, "batch_size": 32, "sequence_length": 35}
_CELL_NAMES = {"rnn": "SimpleRNN (tanh)", "lstm": "LSTM", "gru": "GRU"}


def _regularisation(config) -> str:
    """The config's dropouts and penalties, in words (the card's description)."""
    kind = "locked dropout" if config.locked_dropout else "dropout"
    words = f"{kind} {config.dropout} on non-recurrent connections"
    if config.input_dropout is not None and config.input_dropout != config.dropout:
        words += f" ({config.input_dropout} on the embeddings)"
    extras = [f"{label} {value:g}" for label, value in (
        ("embedding (word) dropout", config.embedding_dropout), ("weight drop", config.weight_drop),
        ("AR", config.activation_penalty), ("TAR", config.temporal_activation_penalty)) if value]
    return ", ".join([words, *extras])


def _register_language_model(builder, config, *, parameter_count: int, bar: float, reference: str,
                             epochs: int, recipe_overrides: dict | None = None) -> None:
    """A tied-embedding model: embeddings and recurrent layers of the same width."""
    layers = {1: "One", 2: "Two", 3: "Three"}.get(config.num_layers, str(config.num_layers))
    register(ModelSpec(
        name=f"{config.cell}_ptb", task="language", dataset="ptb", builder=builder, config=config,
        parameter_count=parameter_count, metric="perplexity", bar=bar, reference=reference,
        recipe={**LANGUAGE_RECIPE, "epochs": epochs, **(recipe_overrides or {})},
        description=f"{layers} {config.hidden_units}-unit {_CELL_NAMES[config.cell]} "
                    f"layer{'s' if config.num_layers > 1 else ''} over {config.embedding_dim}-d word embeddings, "
                    f"{_regularisation(config)}, logits through the tied embedding matrix.",
    ))


# The ungated tanh RNN diverges with SGD at rate 20 and crawls at stable rates: Adam, dropout 0.5
# (README "Recipe notes").
_RNN_RECIPE = {"optimizer": "adamw", "learning_rate": 2e-3, "weight_decay": 0.0}
_register_language_model(language.build_rnn_ptb, language.RNN_PTB_CONFIG, parameter_count=3_190_300,
                         bar=140.0, epochs=20, recipe_overrides=_RNN_RECIPE,
                         reference="Mikolov RNN-LM 124.7, KN5 141.2")
# AWD-LSTM's optimisation (Merity et al. 2017): SGD at rate 30 until the validation perplexity
# stalls, then averaged SGD (the average is exported); 35-token windows, batches of 64.
_AWD_RECIPE = {"learning_rate": 30.0, "weight_decay": 1.2e-6, "schedule": "constant", "batch_size": 64,
               "sequence_length": 35, "averaging": "nt_asgd", "averaging_start_epoch": 38,
               "precision": "mixed_bfloat16", "time_limit_minutes": 170.0}
_register_language_model(language.build_lstm_ptb, language.LSTM_PTB_CONFIG, parameter_count=4_850_960,
                         bar=110.0, epochs=55, recipe_overrides=_AWD_RECIPE,
                         reference="Zaremba et al. 2014 small (2x200, 13 epochs): 114.5; "
                                   "medium (2x650, dropout): 82.7")
_register_language_model(language.build_gru_ptb, language.GRU_PTB_CONFIG, parameter_count=3_359_504,
                         bar=120.0, epochs=20,
                         reference="no standard PTB figure; compare lstm_ptb (same sizes)")
