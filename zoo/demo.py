"""make demo: every committed model, on inputs the zoo draws itself (and real test data if set)."""
from __future__ import annotations

import numpy as np

from zoo import registry
from zoo.data.common import raw_data_dir

PROMPTS = ("the stock market", "the company said", "in new york")


def draw_digits(size: int = 28) -> np.ndarray:
    """The digits 0-9 drawn with PIL's built-in font, MNIST style: white on black, centred
    by mass in a 20x20 box. uint8 [10, size, size, 1]."""
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.load_default(size=64)
    digits = []
    for digit in range(10):
        canvas = Image.new("L", (96, 96), 0)
        ImageDraw.Draw(canvas).text((48, 48), str(digit), fill=255, font=font, anchor="mm")
        glyph = canvas.crop(canvas.getbbox())
        scale = 20 / max(glyph.size)
        glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                             Image.LANCZOS)
        pixels = np.asarray(glyph, dtype=np.float64)
        # Centre of mass at the image centre, as MNIST was prepared.
        rows, cols = np.indices(pixels.shape)
        centre_row = (rows * pixels).sum() / pixels.sum()
        centre_col = (cols * pixels).sum() / pixels.sum()
        top = min(max(0, int(round(size / 2 - centre_row))), size - glyph.height)
        left = min(max(0, int(round(size / 2 - centre_col))), size - glyph.width)
        image = np.zeros((size, size), dtype=np.uint8)
        image[top:top + glyph.height, left:left + glyph.width] = np.asarray(glyph)
        digits.append(image)
    return np.stack(digits)[..., None]


def _demo_image_model(model, data_dir) -> None:
    if model.input_shape == (28, 28, 1):
        drawn = draw_digits()
        predictions = model.predict(drawn)
        shown = "  ".join(f"{digit}->{p.label}" + (f" {p.probability:.2f}" if p.probability is not None else "")
                          for digit, p in enumerate(predictions))
        correct = sum(p.class_id == digit for digit, p in enumerate(predictions))
        print(f"  drawn digits (font, not MNIST): {correct}/10 right\n    {shown}")
    else:
        print("  (no self-made inputs for natural images; set DATA_DIR to see real test images)")
    if data_dir is not None:
        from zoo.data.images import load_images
        images, labels = next(iter(load_images(model.card["dataset"]["name"], "test", data_dir).batch(8)))
        predictions = model.predict(images.numpy())
        pairs = "  ".join(f"{model.label_names[t]}->{p.label}" for t, p in zip(labels.numpy(), predictions))
        print(f"  real test images (true->predicted): {pairs}")
        accuracy = model.evaluate(data_dir)["test_accuracy"]
        print(f"  test accuracy on {accuracy['examples']:,} images: {accuracy['value']:.4f}")


def _demo_language_model(model) -> None:
    for prompt in PROMPTS:
        words = ", ".join(f"{word} {probability:.2f}" for word, probability in model.next_words(prompt, k=3))
        text = model.generate(prompt, num_words=12, temperature=0.8, top_k=40, seed=0)
        shown = text.replace("\n", " / ")  # a sampled <eos> ends a line
        print(f"  {prompt!r}: next {words}\n    -> {shown}")


def run_demo(data_dir=None) -> int:
    import zoo
    data_dir = raw_data_dir(data_dir)
    shown = 0
    for name in registry.list_models():
        if not registry.get(name).export_dir.is_dir():
            print(f"{name}: not trained (make train-{name})")
            continue
        model = zoo.load(name)
        metrics = model.card["metrics"]
        key = next(iter(metrics))
        print(f"{name}: card {key} {metrics[key]['value']:.4f}")
        if model.card["task"] == "image":
            _demo_image_model(model, data_dir)
        else:
            _demo_language_model(model)
        shown += 1
    if data_dir is None:
        print("(set DATA_DIR=/path/to/raw/data to also run on real test images)")
    return 0 if shown else 1
