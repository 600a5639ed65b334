"""The datasets. Raw official files come from a data directory when one is set (`common`).

`labels` (class names) and `text` (the language models' word rules) are pure Python, for serving;
`images`, `cifar10`, `ptb` and `prepare` load data through tfds, the `data` extra, which inference
never imports.
"""
