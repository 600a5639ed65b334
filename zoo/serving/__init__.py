"""Serving per task: `image` and `language` (signatures, input handling, predictors)."""
