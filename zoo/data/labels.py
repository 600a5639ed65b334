"""Each image dataset's class names, known without tfds or the data (the catalog reads them).

CIFAR-10's are the official batches.meta.txt, in order; tfds only learns them from that file, so
its builder (`cifar10.Cifar10`) declares these, and preparing from the raw batches checks the file
agrees.
"""
from __future__ import annotations

MNIST = tuple(str(digit) for digit in range(10))
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
LABEL_NAMES = {"mnist": MNIST, "cifar10": CIFAR10}
