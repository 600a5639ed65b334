"""Every model of the zoo, registered once. The Makefile, tests, CLI and API read this."""
from __future__ import annotations

from zoo.models import cnn, language, linear, mlp, perceptron, resnet
from zoo.registry import ModelSpec, register

MNIST_LABELS = tuple(str(digit) for digit in range(10))
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck")

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

_RESNET_RECIPE = {"epochs": 40, "batch_size": 128, "optimizer": "sgd", "learning_rate": 0.1,
                  "weight_decay": 5e-4, "warmup_epochs": 1, "augment": "flip_crop",
                  "label_smoothing": 0.1}

register(ModelSpec(
    name="resnet20_cifar10", task="image", dataset="cifar10",
    builder=resnet.build_resnet20_cifar10, config=resnet.ResNetConfig(depth=20),
    parameter_count=271_098, metric="accuracy", bar=0.9125,
    reference="He et al. 2016, 164 epochs: 0.9125",
    recipe=_RESNET_RECIPE, label_names=CIFAR10_LABELS,
    description="ResNet-20 for CIFAR (He et al. 2016): 3 stages x 3 basic blocks, 16/32/64 filters, "
                "identity shortcuts, BN.",
))

register(ModelSpec(
    name="resnet56_cifar10", task="image", dataset="cifar10",
    builder=resnet.build_resnet56_cifar10, config=resnet.ResNetConfig(depth=56),
    parameter_count=857_082, metric="accuracy", bar=0.93,
    reference="He et al. 2016, 164 epochs: 0.9303",
    recipe=_RESNET_RECIPE, label_names=CIFAR10_LABELS,
    description="ResNet-56 for CIFAR (He et al. 2016): 3 stages x 9 basic blocks, 16/32/64 filters, "
                "identity shortcuts, BN.",
))

# Word-level language models on Penn Treebank. Recipes are sized for ~30 minutes on 2 CPU cores
# (the 10,000-way output layer dominates the cost; ~2-4 min per epoch there).
LANGUAGE_RECIPE = {"batch_size": 32, "sequence_length": 35, "learning_rate": 2e-3,
                   "gradient_clip_norm": 1.0}

register(ModelSpec(
    name="rnn_ptb", task="language", dataset="ptb",
    builder=language.build_rnn_ptb,
    config=language.LanguageModelConfig(cell="rnn", embedding_dim=300, hidden_units=300, num_layers=1,
                                        dropout=0.25, tie_embeddings=True),
    parameter_count=3_190_300, metric="perplexity", bar=140.0,
    reference="Mikolov RNN-LM 124.7, KN5 141.2",
    recipe={**LANGUAGE_RECIPE, "epochs": 12},
    description="Elman network: 300-d word embeddings, one 300-unit SimpleRNN (tanh) layer, dropout "
                "0.25 on its input and output, logits through the tied embedding matrix.",
))

register(ModelSpec(
    name="lstm_ptb", task="language", dataset="ptb",
    builder=language.build_lstm_ptb,
    config=language.LanguageModelConfig(cell="lstm", embedding_dim=256, hidden_units=256, num_layers=2,
                                        dropout=0.3, tie_embeddings=True),
    parameter_count=3_620_624, metric="perplexity", bar=110.0,
    reference="Zaremba et al. 2014 small (2x200, 13 epochs): 114.5; medium (2x650, dropout): 82.7",
    recipe={**LANGUAGE_RECIPE, "epochs": 8},
    description="Two 256-unit LSTM layers over 256-d word embeddings, dropout 0.3 on non-recurrent "
                "connections, logits through the tied embedding matrix.",
))

register(ModelSpec(
    name="gru_ptb", task="language", dataset="ptb",
    builder=language.build_gru_ptb,
    config=language.LanguageModelConfig(cell="gru", embedding_dim=256, hidden_units=256, num_layers=2,
                                        dropout=0.3, tie_embeddings=True),
    parameter_count=3_359_504, metric="perplexity", bar=120.0,
    reference="no standard PTB figure; compare lstm_ptb (same sizes)",
    recipe={**LANGUAGE_RECIPE, "epochs": 8},
    description="Two 256-unit GRU layers over 256-d word embeddings, dropout 0.3 on non-recurrent "
                "connections, logits through the tied embedding matrix.",
))
