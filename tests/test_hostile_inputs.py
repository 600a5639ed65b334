"""Findings of a hostile review, each with its regression test: image decoding bounded before it
starts and every decoder error a one-line ValueError; float, 16-bit and transparent images read as
they look; language-model arguments and text sizes checked by name before anything runs."""
import contextlib
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

import zoo
from tests.test_language import export_tiny, tiny_model, tiny_spec
from zoo import cli
from zoo.data.text import tokenize
from zoo.demo import draw_digits
from zoo.serving import image as image_serving
from zoo.serving import language as language_serving

GREY, RGB = (28, 28, 1), (28, 28, 3)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def crafted_png(width: int, height: int) -> bytes:
    """A greyscale PNG whose header claims width x height, with the pixel data of one row only:
    a few hundred bytes, whatever the size it claims."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + png_chunk(b"IEND", b""))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def corrupted(kind: str) -> bytes:
    """A 28x28 digit PNG, damaged in one way."""
    data = png_bytes(Image.fromarray(draw_digits()[3, ..., 0]))
    idat = data.index(b"IDAT") - 4  # the IDAT chunk's length field
    if kind == "IDAT length too short":  # SyntaxError inside PIL's load()
        return data[:idat] + struct.pack(">I", 5) + data[idat + 4:]
    if kind == "IHDR length":  # OSError inside Image.open
        return data[:8] + struct.pack(">I", 99) + data[12:]
    if kind == "IHDR CRC":
        return data[:29] + bytes([data[29] ^ 0xFF]) + data[30:]
    if kind == "zero width":  # IHDR's width field, its CRC recomputed
        return data[:8] + png_chunk(b"IHDR", b"\x00" * 4 + data[20:29]) + data[33:]
    if kind == "truncated":
        return data[:len(data) // 2]
    if kind == "IDAT not zlib":
        return data[:idat + 8] + b"\xff" * (len(data) - idat - 20) + data[-12:]
    raise AssertionError(kind)


CORRUPTIONS = ["IDAT length too short", "IHDR length", "IHDR CRC", "zero width", "truncated", "IDAT not zlib"]


@pytest.fixture(scope="module")
def language_model(tmp_path_factory):
    spec = tiny_spec("gru", layers=1)
    return zoo.load(export_tiny(spec, tiny_model(spec), tmp_path_factory.mktemp("lm") / "gru_ptb"))


# ---- 1. image files: decoding bounded before it starts; decoder errors are one-line ValueErrors ----

@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_png_is_a_one_line_value_error_naming_the_file(kind, tmp_path):
    path = tmp_path / "corrupt.png"
    path.write_bytes(corrupted(kind))
    for item in (path, str(path), [path]):
        with pytest.raises(ValueError) as caught:
            image_serving.to_uint8_batch(item, GREY)
        assert str(caught.value).startswith(repr(str(path))) and "\n" not in str(caught.value)
    try:
        lazy = Image.open(path)  # a PIL image not decoded yet is decoded inside to_uint8_batch
    except Exception:  # some damage is already seen by Image.open
        return
    with lazy, pytest.raises(ValueError, match=f"PIL image {str(path)!r} is not a readable image"):
        image_serving.to_uint8_batch(lazy, GREY)


@pytest.mark.parametrize("side", [6500, 13000, 30000])  # 42 MP; 169 MP (PIL warns); 900 MP (PIL raises)
def test_huge_png_is_refused_from_its_header_before_decoding(side, tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    path.write_bytes(crafted_png(side, side))
    assert path.stat().st_size < 1000
    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self))
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match=f"MAX_IMAGE_PIXELS = {image_serving.MAX_IMAGE_PIXELS:,}") as caught:
            image_serving.to_uint8_batch(path, GREY)
        if side < 13000:  # a PIL image passed in: its size too is checked before decoding
            with Image.open(path) as lazy, pytest.raises(ValueError, match=f"{side}x{side}.*MAX_IMAGE_PIXELS"):
                image_serving.to_uint8_batch(lazy, GREY)
    assert loads == [] and repr(str(path)) in str(caught.value) and "\n" not in str(caught.value)
    assert not [w for w in shown if issubclass(w.category, Image.DecompressionBombWarning)]


def test_the_pixel_limit_is_the_module_constant_and_a_size_within_it_is_decoded(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    Image.new("L", (29, 28), 0).save(path)
    assert image_serving.to_uint8_batch(path, GREY).shape == (1, 28, 28, 1)  # decoded, then resized to the input
    square = tmp_path / "square.png"
    Image.new("L", (28, 28), 0).save(square)
    monkeypatch.setattr(image_serving, "MAX_IMAGE_PIXELS", 28 * 28 - 1)
    for item in (square, Image.new("L", (28, 28))):
        with pytest.raises(ValueError, match="784 pixels.*MAX_IMAGE_PIXELS = 783"):
            image_serving.to_uint8_batch(item, GREY)


def test_cli_predict_on_a_corrupt_or_huge_png_exits_2_with_one_error_line(fresh_cnn_artifact, tmp_path):
    _, folder = fresh_cnn_artifact
    (tmp_path / "corrupt.png").write_bytes(corrupted("IDAT length too short"))
    (tmp_path / "huge.png").write_bytes(crafted_png(30000, 30000))
    np.save(tmp_path / "claims_huge.npy", np.zeros(4, np.uint8))
    header = (tmp_path / "claims_huge.npy").read_bytes()
    (tmp_path / "claims_huge.npy").write_bytes(header.replace(b"(4,)", b"(99999999999,)"))
    (tmp_path / "empty.npy").write_bytes(b"")
    for name in ("corrupt.png", "huge.png", "claims_huge.npy", "empty.npy"):
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main(["predict", str(folder), str(tmp_path / name)])
        lines = stderr.getvalue().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, stderr.getvalue())
        assert str(tmp_path / name) in lines[0] and stdout.getvalue() == ""


def test_npy_files_are_checked_from_their_header(tmp_path, monkeypatch):
    path = tmp_path / "digits.npy"
    np.save(path, draw_digits()[:2])
    np.testing.assert_array_equal(image_serving.read_npy(str(path)), draw_digits()[:2])
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="truncated.*declares 1,568 bytes.*holds 1,567"):
        image_serving.read_npy(str(truncated))
    monkeypatch.setattr(image_serving, "MAX_NPY_BYTES", 2 * 28 * 28 - 1)
    with pytest.raises(ValueError, match=r"\(1,568 bytes\); the limit is MAX_NPY_BYTES = 1,567"):
        image_serving.read_npy(str(path))
    archive = tmp_path / "digits.npz"
    np.savez(archive, digits=draw_digits())
    for bad in (archive, tmp_path):
        with pytest.raises(ValueError, match="could not read"):
            image_serving.read_npy(str(bad))


# ---- 2. float and 16-bit images read by their range -------------------------------------------

def test_float_and_16_bit_modes_are_scaled_by_their_range(tmp_path):
    digit = draw_digits()[5, ..., 0]  # uint8 [28, 28]
    floats = digit.astype(np.float32) / 255  # [0, 1]
    sixteen = digit.astype(np.uint16) * 257  # 0-65535
    images = {"F": Image.fromarray(floats), "I;16": Image.fromarray(sixteen),
              "I": Image.fromarray(sixteen.astype(np.int32))}
    assert [image.mode for image in images.values()] == list(images)
    tiff, png = tmp_path / "float.tif", tmp_path / "sixteen.png"
    images["F"].save(tiff)
    images["I;16"].save(png)
    for item in [*images.values(), tiff, png]:
        np.testing.assert_array_equal(image_serving.to_uint8_batch(item, GREY), digit[None, ..., None])
        np.testing.assert_array_equal(image_serving.to_uint8_batch(item, RGB), np.repeat(digit[None, ..., None], 3, -1))
    assert image_serving.to_uint8_batch(Image.fromarray(np.full((28, 28), 385, np.uint16)), GREY).max() == 1  # 1.5
    for bad, message in [(floats * 2, r"mode F.*\[0, 1\]"), (np.full((28, 28), np.nan, np.float32), "mode F.*NaN"),
                         (sixteen.astype(np.int32) - 1, "mode I.*0-65535"), (np.full((28, 28), 70000, np.int32), "I")]:
        with pytest.raises(ValueError, match=message):
            image_serving.to_uint8_batch(Image.fromarray(bad), GREY)


# ---- 3. transparency composited on white --------------------------------------------------------

def test_transparent_background_reads_as_white(tmp_path):
    digit = draw_digits()[7, ..., 0]  # white on black, anti-aliased edges
    black_on_white = Image.fromarray(255 - digit)  # what a black digit on a transparent page looks like
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = digit  # black ink, opaque where the digit is; the transparent pixels are black too
    la = np.stack([np.zeros_like(digit), digit], axis=-1)
    palette = Image.frombytes("P", (28, 28), (digit > 127).astype(np.uint8).tobytes())  # 0: transparent, 1: ink
    palette.putpalette([0, 0, 0, 0, 0, 0])
    palette.info["transparency"] = 0
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    cases = [(Image.fromarray(rgba), black_on_white), (path, black_on_white), (Image.fromarray(la), black_on_white),
             (palette, Image.fromarray(np.where(digit > 127, 0, 255).astype(np.uint8)))]
    for item, expected in cases:
        for shape, mode in ((GREY, "L"), (RGB, "RGB")):
            np.testing.assert_array_equal(image_serving.to_uint8_batch(item, shape),
                                          image_serving.to_uint8_batch(expected.convert(mode), shape))
    assert image_serving.to_uint8_batch(Image.fromarray(rgba), GREY).mean() > 128  # not a black field


# ---- 4. language models: arguments by name, text limits before the graph ----------------------

def test_numeric_arguments_accept_numpy_scalars_and_refuse_bools_and_bad_ranges_by_name(language_model):
    lm = language_model
    want = lm.generate("the cat", num_words=8, temperature=float(np.float32(0.8)), top_k=5, seed=3)
    assert lm.generate("the cat", num_words=np.int64(8), temperature=np.float32(0.8), top_k=np.int32(5),
                       seed=np.uint64(3)) == want
    assert lm.next_words("the cat", k=np.int16(3)) == lm.next_words("the cat", k=3)
    for temperature, seed in ((0.01, 0), (100, 2**63 - 1)):  # the ends of both ranges
        assert isinstance(lm.generate("the", num_words=3, temperature=temperature, seed=seed), str)
    refused = [({"temperature": 1e-320}, ValueError, r"temperature.*\[0.01, 100\]"),
               ({"temperature": float("inf")}, ValueError, "temperature"),
               ({"temperature": float("nan")}, ValueError, "temperature"),
               ({"temperature": 101}, ValueError, "temperature"),
               ({"temperature": 10**400}, ValueError, "temperature"),
               ({"temperature": True}, TypeError, "temperature"),
               ({"temperature": "1"}, TypeError, "temperature"),
               ({"seed": -1}, ValueError, r"seed must be None or an int in \[0, 9,223,372,036,854,775,807\]"),
               ({"seed": 2**63}, ValueError, "seed"), ({"seed": "abc"}, TypeError, "seed"),
               ({"seed": 1.0}, TypeError, "seed"), ({"seed": True}, TypeError, "seed"),
               ({"num_words": True}, TypeError, "num_words"),
               ({"num_words": language_serving.MAX_GENERATE_TOKENS + 1}, ValueError, "num_words"),
               ({"top_k": np.bool_(True)}, TypeError, "top_k"), ({"top_k": 0}, ValueError, "top_k")]
    for arguments, error, message in refused:
        with pytest.raises(error, match=message):
            lm.generate("the cat", **arguments)
    with pytest.raises(TypeError, match="k must be an int"):
        lm.next_words("the cat", k=True)


def test_text_limits_are_stated_and_enforced_before_the_graph(language_model, monkeypatch):
    lm = language_model
    # The whole PTB test file must pass as one string: 449,945 characters, 82,430 tokens.
    assert language_serving.MAX_CHARACTERS >= 449_945 and language_serving.MAX_TOKENS >= 82_430
    lines, words = 3_761, 82_430 - 3_761  # as in ptb.test.txt: tokens = words + one <eos> a line
    text = "\n".join(" ".join(["the"] * (words // lines + (i < words % lines))) for i in range(lines))
    text += " " * (449_945 - len(text))
    assert len(text) == 449_945 and len(tokenize(text)) == 82_430
    assert np.isfinite(lm.perplexity(text))

    def graph(**_):
        raise AssertionError("ran in the graph")
    monkeypatch.setattr(lm, "_score", graph)
    monkeypatch.setattr(lm, "_next_word", graph)
    monkeypatch.setattr(lm, "_step", graph)
    too_long = "a" * (language_serving.MAX_CHARACTERS + 1)
    too_many = "a " * language_serving.MAX_TOKENS  # MAX_TOKENS words + one <eos>
    long_prompt = "a " * language_serving.MAX_GENERATE_TOKENS
    calls = [lm.perplexity, lm.next_words, lm.log_probability, lm.unknown_words, lm.generate]
    for call in calls:
        with pytest.raises(ValueError, match=f"{len(too_long):,} characters.*MAX_CHARACTERS = 500,000"):
            call(too_long)
        with pytest.raises(ValueError, match=f"{language_serving.MAX_TOKENS + 1:,} tokens.*MAX_TOKENS = 100,000"):
            call(too_many)
    with pytest.raises(ValueError, match="prompt has 10,001 tokens.*MAX_GENERATE_TOKENS = 10,000"):
        lm.generate(long_prompt)
    assert lm.unknown_words("") == [] and lm.unknown_words("the zebra") == ["zebra"]
