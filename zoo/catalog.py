"""Every model of the zoo, registered once. The Makefile, tests, CLI and API read this."""
from __future__ import annotations

from zoo.models import cnn, language
from zoo.registry import ModelSpec, register

MNIST_LABELS = tuple(str(digit) for digit in range(10))
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck")

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
