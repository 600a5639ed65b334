"""python -m zoo serve: TF Serving's REST conventions over HTTP on 127.0.0.1, answers equal to
zoo.load's, dynamic batching, bounded inputs, and the gallery. One server (cnn_mnist, lstm_ptb:
the committed artifacts) runs in a thread for the module; each test calls it over HTTP."""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import html
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.serving_helpers import RunningServer, drawn_digit
from zoo import api, registry
from zoo.demo import draw_digits
from zoo.serving import http as serving_http
from zoo.serving import image as image_serving

ROOT = Path(__file__).resolve().parent.parent
DIGITS = draw_digits()  # uint8 [10, 28, 28, 1]


def png_b64(image: Image.Image, kind: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def models():
    return {name: api.load(name) for name in ("cnn_mnist", "lstm_ptb")}


@pytest.fixture(scope="module")
def served(models):
    running = RunningServer(serving_http.ModelServer(models))
    yield running
    running.stop()


@pytest.fixture
def small_server(models):
    """Tight limits: 10 kB bodies, no batching."""
    running = RunningServer(serving_http.ModelServer(models, batching=None, max_body_bytes=10_000))
    yield running
    running.stop()


def test_status_and_metadata_follow_tf_serving(served):
    for name in ("cnn_mnist", "lstm_ptb"):
        status, body, _ = served.request("GET", f"/v1/models/{name}")
        assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    status, body, _ = served.request("GET", "/v1/models/cnn_mnist/metadata")
    assert status == 200 and body["model_spec"] == {"name": "cnn_mnist", "signature_name": "", "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    image = signature["inputs"]["image"]
    assert image["dtype"] == "DT_UINT8" and [d["size"] for d in image["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]
    assert {key: value["dtype"] for key, value in signature["outputs"].items()} == \
        {"class_id": "DT_INT64", "probabilities": "DT_FLOAT", "scores": "DT_FLOAT"}
    status, body, _ = served.request("GET", "/v1/models/lstm_ptb/metadata")
    defs = body["metadata"]["signature_def"]["signature_def"]
    assert set(defs) == {"next_word", "serving_default", "score"}
    assert defs["score"]["inputs"]["text"]["dtype"] == "DT_STRING"
    assert defs["score"]["outputs"]["token_count"]["dtype"] == "DT_INT64"


def test_the_versions_forms_of_the_routes(served):
    assert served.request("GET", "/v1/models/cnn_mnist/versions/1")[0] == 200
    assert served.request("GET", "/v1/models/cnn_mnist/versions/1/metadata")[1]["model_spec"]["version"] == "1"
    status, body, _ = served.request("POST", "/v1/models/cnn_mnist/versions/1:predict",
                                     {"instances": [DIGITS[6].tolist()]})
    assert status == 200 and body["predictions"][0]["class_id"] == 6
    for method, path in (("GET", "/v1/models/cnn_mnist/versions/2"), ("GET", "/v1/models/nope/versions/1"),
                         ("POST", "/v1/models/cnn_mnist/versions/2:predict")):
        request = {"instances": [DIGITS[6].tolist()]} if method == "POST" else None
        status, body, _ = served.request(method, path, request)
        assert status == 404 and "error" in body, path


def test_image_predict_row_and_column_forms_equal_zoo_load(served, models):
    expected = models["cnn_mnist"].predict(DIGITS[:3])
    status, body, _ = served.request("POST", "/v1/models/cnn_mnist:predict",
                                     {"instances": DIGITS[:3].tolist()})
    assert status == 200 and len(body["predictions"]) == 3
    rows = body["predictions"]
    assert [row["class_id"] for row in rows] == expected.class_id.tolist()
    np.testing.assert_array_equal(np.array([row["scores"] for row in rows], np.float32), expected.scores)
    np.testing.assert_array_equal(np.array([row["probabilities"] for row in rows], np.float32),
                                  expected.probabilities)
    for inputs in (DIGITS[:3].tolist(), {"image": DIGITS[:3].tolist()}):
        status, body, _ = served.request("POST", "/v1/models/cnn_mnist:predict",
                                         {"signature_name": "serving_default", "inputs": inputs})
        assert status == 200 and body["outputs"]["class_id"] == expected.class_id.tolist()
        np.testing.assert_array_equal(np.array(body["outputs"]["scores"], np.float32), expected.scores)
    # (28, 28) greyscale instances and named-input instances are accepted as TF Serving does.
    status, body, _ = served.request("POST", "/v1/models/cnn_mnist:predict",
                                     {"instances": [{"image": DIGITS[4, ..., 0].tolist()}]})
    expected_four = int(models["cnn_mnist"].predict(DIGITS[4]).class_id[0])
    assert status == 200 and body["predictions"][0]["class_id"] == expected_four


def test_b64_images_png_and_jpeg_any_size(served, models):
    digit = Image.fromarray(DIGITS[7, ..., 0])
    expected = models["cnn_mnist"].predict(DIGITS[7:8])
    status, body, _ = served.request("POST", "/v1/models/cnn_mnist:predict", {"instances": [{"b64": png_b64(digit)}]})
    assert status == 200
    np.testing.assert_array_equal(np.array(body["predictions"][0]["scores"], np.float32), expected.scores[0])
    big = digit.resize((112, 112), Image.Resampling.NEAREST)  # resized back to 28x28 by the server
    status, body, _ = served.request("POST", "/v1/models/cnn_mnist:predict",
                                     {"instances": [{"b64": png_b64(big, "JPEG")}, {"b64": png_b64(big)}]})
    assert status == 200 and [row["class_id"] for row in body["predictions"]] == [7, 7]
    alone = served.request("POST", "/v1/models/cnn_mnist:predict", {"inputs": [{"b64": png_b64(big)}]})[1]["outputs"]
    # Batches of 2 and 1 may round differently in the last bits (oneDNN picks kernels by batch size).
    np.testing.assert_allclose(body["predictions"][1]["scores"], alone["scores"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(alone["scores"], models["cnn_mnist"].predict(big).scores)


def test_language_signatures_and_generate_equal_zoo_load(served, models):
    lm = models["lstm_ptb"]
    texts = ["the stock market", "the company said it expects"]
    for body_signature in ({}, {"signature_name": "next_word"}, {"signature_name": "serving_default"}):
        status, body, _ = served.request("POST", "/v1/models/lstm_ptb:predict", {**body_signature, "instances": texts})
        assert status == 200
        for text, row in zip(texts, body["predictions"]):
            words = lm.next_words(text, k=5)
            assert row["top_words"][:5] == [word for word, _ in words]
            np.testing.assert_allclose(row["top_probabilities"][:5], [p for _, p in words], rtol=1e-5)
    status, body, _ = served.request("POST", "/v1/models/lstm_ptb:predict",
                                     {"signature_name": "score", "inputs": {"text": texts}})
    assert status == 200
    for index, text in enumerate(texts):
        log_probability, count = lm.log_probability(text)
        assert body["outputs"]["token_count"][index] == count
        assert body["outputs"]["log_probability"][index] == pytest.approx(log_probability, rel=1e-5)
    arguments = {"prompt": "the company said", "words": 12, "temperature": 0.8, "top_k": 40, "seed": 3}
    status, body, _ = served.request("POST", "/v1/models/lstm_ptb:generate", arguments)
    assert status == 200 and body == {"text": lm.generate("the company said", num_words=12, temperature=0.8,
                                                          top_k=40, seed=3)}


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/models/cnn_mnist:predict", {"instances": [[[0] * 28] * 27]}, 400, "shape"),
    ("/v1/models/cnn_mnist:predict", {"instances": [[[0.5] * 28] * 28]}, 400, "integers 0-255"),
    ("/v1/models/cnn_mnist:predict", {"instances": [[[256] * 28] * 28]}, 400, "integers 0-255"),
    ("/v1/models/cnn_mnist:predict", {"instances": ["a picture"]}, 400, "expected nested lists"),
    ("/v1/models/cnn_mnist:predict", {"instances": [{"b64": "not base64!"}]}, 400, "base64"),
    ("/v1/models/cnn_mnist:predict", {"instances": [{"b64": base64.b64encode(b"not an image").decode()}]}, 400,
     "not a readable image"),
    ("/v1/models/cnn_mnist:predict", {"instances": []}, 400, "non-empty"),
    ("/v1/models/cnn_mnist:predict", {"inputs": [[[0] * 28] * 28], "instances": []}, 400, "exactly one of"),
    ("/v1/models/cnn_mnist:predict", {"instances": [[[0] * 28] * 28], "signature_name": "score"}, 400,
     "signature_name must be one of"),
    ("/v1/models/cnn_mnist:predict", [1, 2], 400, "JSON object"),
    ("/v1/models/cnn_mnist:predict", {"instances": [[[0] * 28] * 28] * 257}, 400, "MAX_INSTANCES"),
    ("/v1/models/lstm_ptb:predict", {"instances": [5]}, 400, "expected a string"),
    ("/v1/models/lstm_ptb:predict", {"instances": ["x" * 500_001]}, 400, "MAX_CHARACTERS"),
    ("/v1/models/lstm_ptb:predict", {"instances": ["the"], "normalize": True}, 400, "normalize"),
    ("/v1/models/lstm_ptb:predict", {"instances": ["the " * 50_000] * 3}, 400, "characters together"),
    ("/v1/models/lstm_ptb:generate", {"prompt": "the " * 1001}, 400, "MAX_PROMPT_WORDS"),
    ("/v1/models/lstm_ptb:generate", {"prompt": "the", "words": 501}, 400, "MAX_GENERATE_WORDS"),
    ("/v1/models/lstm_ptb:generate", {"prompt": "the", "temperature": 0}, 400, "temperature"),
    ("/v1/models/lstm_ptb:generate", {"text": "the"}, 400, "prompt"),
    ("/v1/models/cnn_mnist:generate", {"prompt": "the"}, 400, "does not generate"),
    ("/v1/models/cnn_mnist:classify", {"instances": []}, 404, "unknown method"),
    ("/v1/models/resnet56_cifar10:predict", {"instances": []}, 404, "unknown model"),
    ("/v1/models/..%2F..%2Fetc%2Fpasswd:predict", {"instances": []}, 404, "no route"),
    ("/v1/models/..:predict", {"instances": []}, 404, "unknown model"),
])
def test_bad_requests_get_one_line_json_errors(served, path, body, status, message):
    got, answer, _ = served.request("POST", path, body)
    assert got == status and message in answer["error"], answer
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]


def test_bad_json_unknown_models_and_routes(served):
    for raw in (b"{bad", b"", b"\xff\xfe", b'{"instances": [NaN]}', b"[" * 100_000):
        status, answer, _ = served.request("POST", "/v1/models/cnn_mnist:predict", raw=raw)
        assert status == 400 and "not valid JSON" in answer["error"], (raw[:10], answer)
    for path in ("/v1/models/nope", "/v1/models/nope/metadata", "/models/nope", "/v1/models/..%2Fcnn_mnist",
                 "/models/cnn_mnist%2F..%2F..%2Fpyproject.toml", "/static/..%2Fhttp.py", "/nothing"):
        status, answer, _ = served.request("GET", path)
        assert status == 404 and "error" in answer, path


def test_a_b64_image_over_max_image_pixels_is_refused_before_decoding(served):
    bomb = png_b64(Image.new("L", (7000, 7000), 0))  # 49 MP in a ~50 kB PNG
    status, answer, _ = served.request("POST", "/v1/models/cnn_mnist:predict", {"instances": [{"b64": bomb}]})
    assert status == 400 and f"MAX_IMAGE_PIXELS = {image_serving.MAX_IMAGE_PIXELS:,}" in answer["error"]


def test_oversize_bodies_get_413(small_server):
    body = {"instances": [DIGITS[0].tolist()] * 20}  # ~70 kB of JSON
    status, answer, _ = small_server.request("POST", "/v1/models/cnn_mnist:predict", body)
    assert status == 413 and "10,000" in answer["error"]
    # A body without a length (chunked) is counted as it arrives.
    connection = socket.create_connection(("127.0.0.1", small_server.port), timeout=30)
    chunk = b"[" + b"0," * 10_000 + b"0]"
    connection.sendall(b"POST /v1/models/cnn_mnist:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       b"Content-Type: application/json\r\n\r\n" + f"{len(chunk):x}\r\n".encode() + chunk +
                       b"\r\n0\r\n\r\n")
    assert connection.recv(100).startswith(b"HTTP/1.1 413")
    connection.close()
    # Within the limit and without batching, the same answers.
    status, answer, _ = small_server.request("POST", "/v1/models/cnn_mnist:predict",
                                             {"instances": [DIGITS[2].tolist()]})
    assert status == 200 and answer["predictions"][0]["class_id"] == 2


def test_concurrent_clients_get_the_sequential_answers(served, models):
    images = [DIGITS[index % 10] for index in range(48)]
    texts = [f"the company said {word}" for word in ("it", "the", "that", "a", "in", "mr.", "its", "he")]
    sequential_images = [served.request("POST", "/v1/models/cnn_mnist:predict", {"instances": [image.tolist()]})[1]
                         for image in images[:10]]
    sequential_texts = [served.request("POST", "/v1/models/lstm_ptb:predict",
                                       {"signature_name": "score", "instances": [text]})[1] for text in texts]
    calls_before = sum(batcher.batches for batcher in served.server.batchers.values())

    def image_call(index):
        return served.request("POST", "/v1/models/cnn_mnist:predict", {"instances": [images[index].tolist()]})

    def text_call(index):
        return served.request("POST", "/v1/models/lstm_ptb:predict",
                              {"signature_name": "score", "instances": [texts[index % len(texts)]]})

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        image_answers = list(pool.map(image_call, range(len(images))))
        text_answers = list(pool.map(text_call, range(16)))
    for index, (status, answer, _) in enumerate(image_answers):
        expected = sequential_images[index % 10]["predictions"][0]
        assert status == 200 and answer["predictions"][0]["class_id"] == expected["class_id"]
        np.testing.assert_allclose(answer["predictions"][0]["probabilities"], expected["probabilities"],
                                   rtol=1e-5, atol=1e-7)
    for index, (status, answer, _) in enumerate(text_answers):
        expected = sequential_texts[index % len(texts)]["predictions"][0]
        assert status == 200 and answer["predictions"][0]["token_count"] == expected["token_count"]
        assert answer["predictions"][0]["log_probability"] == pytest.approx(expected["log_probability"], rel=1e-5)
    calls = sum(batcher.batches for batcher in served.server.batchers.values()) - calls_before
    assert calls <= len(images) + 16  # (fewer when requests were grouped; the batcher test proves grouping)


def test_requests_arriving_during_a_call_are_grouped_into_the_next(models):
    """Over HTTP: with each call slowed to 0.3 s, 12 concurrent one-image requests take at most
    a few calls (requests queue while a call runs), each answer that of its own image."""
    calls = []

    class Slow:
        def __init__(self, model):
            self.model = model

        def __getattr__(self, name):
            return getattr(self.model, name)

        def run_signature(self, signature_name, inputs):
            calls.append(len(inputs["image"]))
            time.sleep(0.3)
            return self.model.run_signature(signature_name, inputs)

    running = RunningServer(serving_http.ModelServer({"slow": Slow(models["cnn_mnist"])}))
    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda digit: running.request("POST", "/v1/models/slow:predict",
                                                                  {"instances": [DIGITS[digit % 10].tolist()]}),
                                    range(12)))
    finally:
        running.stop()
    expected = models["cnn_mnist"].predict(DIGITS).class_id.tolist()
    assert [answer[1]["predictions"][0]["class_id"] for answer in answers] == [expected[i % 10] for i in range(12)]
    assert sum(calls) == 12 and len(calls) <= 4 and max(calls) > 1, calls


def test_the_batcher_groups_waiting_requests_bounds_its_queue_and_keeps_order():
    calls = []

    def run(batch):
        calls.append(len(batch["x"]))
        time.sleep(0.05)
        return {"y": batch["x"] * 2}

    async def scenario():
        executor = concurrent.futures.ThreadPoolExecutor(1)
        batcher = serving_http.Batcher(run, serving_http.BatchingOptions(max_batch_size=4, batch_timeout_s=0.2,
                                                                         max_enqueued=10), executor)
        requests = [batcher.submit({"x": np.array([index, index + 100])}) for index in range(5)]
        answers = await asyncio.gather(*requests)
        with pytest.raises(serving_http.RequestError, match="queue is full") as full:
            await batcher.submit({"x": np.arange(11)})
        batcher.close()
        executor.shutdown()
        return answers, full.value.status

    answers, status = asyncio.run(scenario())
    assert [answer["y"].tolist() for answer in answers] == [[2 * i, 2 * i + 200] for i in range(5)]
    assert calls == [4, 4, 2] and status == 503  # two requests of 2 per call (max_batch_size = 4)


def test_a_failing_model_call_answers_500_without_a_traceback_and_the_server_lives_on(models):
    class Broken:
        def __init__(self, model):
            self.model = model

        def __getattr__(self, name):
            return getattr(self.model, name)

        def run_signature(self, signature_name, inputs):
            raise RuntimeError("/secret/path: kernel exploded")

    running = RunningServer(serving_http.ModelServer({**models, "broken": Broken(models["cnn_mnist"])}))
    try:
        status, answer, _ = running.request("POST", "/v1/models/broken:predict", {"instances": [DIGITS[0].tolist()]})
        assert status == 500 and answer == {"error": "internal error (logged by the server)"}
        status, answer, _ = running.request("POST", "/v1/models/cnn_mnist:predict",
                                            {"instances": [DIGITS[5].tolist()]})
        assert status == 200 and answer["predictions"][0]["class_id"] == 5
    finally:
        running.stop()


def test_gallery_lists_every_model_and_serves_pages_without_external_resources(served):
    status, page, headers = served.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    text = page.decode()
    for name in registry.list_models():
        spec = registry.get(name)
        assert name in text and html.escape(spec.bar_text) in text
    # The figures come from the committed cards (read here as plain JSON), not from the registry.
    cnn, lstm = (json.loads((ROOT / "exported_models" / name / "model_card.json").read_text())["metrics"]
                 for name in ("cnn_mnist", "lstm_ptb"))
    assert f"accuracy {cnn['test_accuracy']['value']:.4f}" in text and 'href="/models/cnn_mnist"' in text
    assert f"perplexity {lstm['test_perplexity']['value']:.1f}" in text
    for path in ("/models/cnn_mnist", "/models/lstm_ptb", "/static/gallery.js", "/static/gallery.css"):
        status, body, _ = served.request("GET", path)
        assert status == 200 and b"http://" not in body and b"https://" not in body and b"//cdn" not in body, path
    assert b"<canvas" in served.request("GET", "/models/cnn_mnist")[1]
    assert b'id="text"' in served.request("GET", "/models/lstm_ptb")[1]
    status, curve, headers = served.request("GET", "/models/cnn_mnist/training_curve.png")
    assert status == 200 and curve.startswith(b"\x89PNG")


def test_mnist_normalisation_reads_digits_drawn_on_a_280_page(served, models):
    """Black pen strokes on a white 280x280 page: plain resizing reads them poorly, the
    MNIST-style preparation (API, server and CLI alike) reads at least 9 of 10."""
    pages = [drawn_digit(digit) for digit in range(10)]
    model = models["cnn_mnist"]
    normalised = model.predict(pages, normalize=True).class_id
    assert (normalised == np.arange(10)).sum() >= 9, normalised
    status, answer, _ = served.request("POST", "/v1/models/cnn_mnist:predict",
                                       {"instances": [{"b64": png_b64(page)} for page in pages], "normalize": True})
    assert status == 200 and [row["class_id"] for row in answer["predictions"]] == normalised.tolist()
    arrays = np.stack([np.asarray(page) for page in pages])
    np.testing.assert_array_equal(model.predict(arrays, normalize=True).class_id, normalised)
    assert image_serving.mnist_normalize(np.asarray(pages[3])).shape == (28, 28, 1)
    with pytest.raises(ValueError, match="normalize=True is MNIST"):
        api.load("cnn_cifar10").predict(np.zeros((32, 32, 3), np.uint8), normalize=True)


def test_cli_predict_normalize_and_serve_arguments(tmp_path, capsys):
    from zoo import cli

    path = tmp_path / "four.png"
    drawn_digit(4).save(path)
    assert cli.main(["predict", "cnn_mnist", str(path), "--normalize"]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: 4 (")
    assert cli.main(["serve", "--port", "70000"]) == 2
    assert cli.main(["serve", "--models", "../etc"]) == 2
    assert "--models must be registry names" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_lets_the_request_in_flight_finish(tmp_path):
    """A subprocess `python -m zoo serve`: SIGTERM during a generate request; the answer comes
    whole and the server shuts down cleanly. It binds 127.0.0.1 unless told otherwise."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "zoo", "serve", "--port", str(port), "--models", "lstm_ptb"],
                               cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        running = RunningServerClient(port)
        deadline = time.time() + 180
        while time.time() < deadline and not running.ready():
            assert process.poll() is None, process.stdout.read().decode()[-2000:]
            time.sleep(0.5)
        answers = []
        thread = threading.Thread(target=lambda: answers.append(running.request(
            "POST", "/v1/models/lstm_ptb:generate", {"prompt": "the company said", "words": 400, "seed": 0})))
        thread.start()
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        thread.join(timeout=120)
        # uvicorn re-raises the signal once it has shut down cleanly: exit status -SIGTERM.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        assert answers and answers[0][0] == 200 and len(answers[0][1]["text"].split()) >= 300
        output = process.stdout.read().decode()
        assert "http://127.0.0.1:" in output and "Finished server process" in output and "Traceback" not in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


class RunningServerClient(RunningServer):
    """The HTTP client of RunningServer for a server started elsewhere."""

    def __init__(self, port: int):
        self.port = port

    def ready(self) -> bool:
        try:
            return self.request("GET", "/v1/models/lstm_ptb")[0] == 200
        except OSError:
            return False
