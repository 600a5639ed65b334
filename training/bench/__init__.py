"""make bench: throughput, pipeline, inference and generation measured as ratios within one run."""
