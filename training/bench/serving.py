"""The serving bench: `python -m zoo serve` in a subprocess on 127.0.0.1, clients as coroutines,
one image per request. p50/p99 latency and throughput at 1, 8 and 32 concurrent clients, with and
without dynamic batching; at 1 client the server's time over a direct zoo.load(...).predict and
over an empty route (/v1/ping) of the same server."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from typing import Iterator

import numpy as np

from training import REPO_ROOT, cards
from zoo import api
from zoo.serving.http import BatchingOptions

MODELS = ("cnn_mnist", "resnet20_cifar10")
CLIENTS = (1, 8, 32)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_server(models, batching: bool, timeout_s: float = 300) -> Iterator[int]:
    """A `python -m zoo serve` subprocess on a free 127.0.0.1 port, ended by SIGTERM afterwards."""
    port = _free_port()
    command = [sys.executable, "-m", "zoo", "serve", "--port", str(port), "--models", *models]
    process = subprocess.Popen(command + ([] if batching else ["--no-batching"]), cwd=REPO_ROOT,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"`{' '.join(command)}` exited with {process.returncode} before serving")
            try:
                if _get(port, "/v1/ping") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer within {timeout_s:.0f} s")
            time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _get(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def load(port: int, method: str, path: str, body: bytes | None, clients: int, requests: int) -> dict:
    """`requests` requests spread over `clients` concurrent clients, each on its own kept-alive
    connection. The clients are coroutines writing prepared HTTP/1.1 bytes: cheap next to the
    server, whose cores they share (threads with http.client cost several times as much)."""
    return asyncio.run(_load(port, method, path, body, clients, requests))


async def _load(port: int, method: str, path: str, body: bytes | None, clients: int, requests: int) -> dict:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body or b'')}\r\n\r\n").encode()
    message = head + (body or b"")
    latencies: list[float] = []
    statuses: list[int] = []
    share = [requests // clients + (index < requests % clients) for index in range(clients)]

    async def client(count: int):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(count):
                start = time.perf_counter()
                writer.write(message)
                header = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
                lines = header.decode("latin-1").split("\r\n")
                fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
                lengths = [value for key, value in fields.items() if key.strip().lower() == "content-length"]
                await reader.readexactly(int(lengths[0]))
                latencies.append(time.perf_counter() - start)
                statuses.append(int(lines[0].split()[1]))
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(count) for count in share if count))
    elapsed = time.perf_counter() - start
    errors = [status for status in statuses if status != 200]
    if errors:
        raise RuntimeError(f"{len(errors)} of {requests} requests failed (statuses {sorted(set(errors))})")
    milliseconds = np.array(latencies) * 1000
    return {"p50_ms": float(np.percentile(milliseconds, 50)), "p99_ms": float(np.percentile(milliseconds, 99)),
            "requests_per_second": requests / elapsed, "requests": requests}


def direct_predict_ms(name: str, images: np.ndarray, repeats: int) -> float:
    """p50 of zoo.load(name).predict(images) in this process, one call: what the server wraps."""
    model = api.load(name)
    model.predict(images)  # the first call warms up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(images)
        times.append(time.perf_counter() - start)
    return float(np.percentile(np.array(times) * 1000, 50))


def serving_figures(quick: bool = False, models=MODELS, clients=CLIENTS) -> dict:
    """{"serving": ...} for bench.json (see the module's docstring)."""
    requests = 24 if quick else 400
    rng = np.random.default_rng(0)
    images = {name: rng.integers(0, 256, (1, *api.load(name).input_shape), dtype=np.uint8) for name in models}
    bodies = {name: json.dumps({"instances": image.tolist()}).encode() for name, image in images.items()}
    results: dict = {"measured": {"created": cards.utc_now(), "load_average": os.getloadavg()[0],
                                  "hardware": cards.hardware_summary()["summary"]},
                     "requests_per_level": requests, "models": {}}
    batch = BatchingOptions().max_batch_size
    for name in models:
        one = direct_predict_ms(name, images[name], requests)
        many = direct_predict_ms(name, np.repeat(images[name], batch, axis=0), max(4, requests // batch))
        # The most batching can give: a call of one image over one image's share of a full batch.
        results["models"][name] = {"direct_predict_p50_ms": one, "direct_batch_per_image_ms": many / batch,
                                   "batching_ceiling": one / (many / batch)}
    gc.freeze()  # the loaded models' objects: the clients' allocations would make the GC walk them
    try:
        for batching in (True, False):
            mode = "batching" if batching else "no_batching"
            with running_server(models, batching) as port:
                load(port, "GET", "/v1/ping", None, 1, 10)  # warm-up: connections, first calls
                ping = load(port, "GET", "/v1/ping", None, 1, requests)
                for name in models:
                    path = f"/v1/models/{name}:predict"
                    load(port, "POST", path, bodies[name], 1, 10)
                    entry = results["models"][name].setdefault(mode, {"ping_p50_ms": ping["p50_ms"]})
                    for count in clients:
                        load(port, "POST", path, bodies[name], count, 4 * count)  # warm-up: this level's batches
                        entry[f"clients_{count}"] = load(port, "POST", path, bodies[name], count, requests)
                    one = entry[f"clients_{min(clients)}"]["p50_ms"]
                    entry["overhead_vs_direct_predict"] = one / results["models"][name]["direct_predict_p50_ms"]
                    entry["overhead_vs_empty_route"] = one / ping["p50_ms"]
    finally:
        gc.unfreeze()
    for name, entry in results["models"].items():
        top = f"clients_{max(clients)}"
        if top in entry.get("batching", {}) and top in entry.get("no_batching", {}):
            entry["batching_gain"] = (entry["batching"][top]["requests_per_second"] /
                                      entry["no_batching"][top]["requests_per_second"])
    return {"serving": results}
