import numpy as np

from zoo.demo import draw_digits


def test_drawn_digits_look_like_mnist():
    digits = draw_digits()
    assert digits.shape == (10, 28, 28, 1) and digits.dtype == np.uint8
    for digit in digits[..., 0]:
        rows, cols = np.nonzero(digit)
        assert rows.max() - rows.min() < 20 and cols.max() - cols.min() < 20  # a 20x20 box, like MNIST
        assert digit.max() > 200
    assert len({d.tobytes() for d in digits}) == 10
