"""The course's claims made executable: one module per experiment, each with
run(quick=False, data_dir=None) -> dict of measured numbers and plot(results, path).
`python -m training.experiments NAME|all` writes reports/<name>/<name>.{json,png}."""

EXPERIMENTS = ("hyperplane", "mistake_bound", "online_vs_batch", "bias_variance",
               "universal_approximation", "activations", "dropout", "receptive_field",
               "vanishing_gradient", "lstm_memory", "residual")
