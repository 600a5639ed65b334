"""The serving bench: `python -m zoo serve` in a subprocess on 127.0.0.1, clients in threads,
one image per request. p50/p99 latency and throughput at 1, 8 and 32 concurrent clients, with and
without dynamic batching; at 1 client the server's time over a direct zoo.load(...).predict and
over an empty route (/v1/ping) of the same server."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator

import numpy as np

from training import REPO_ROOT, cards
from zoo import api

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
    """`requests` requests spread over `clients` threads, each on its own kept-alive connection."""
    latencies: list[float] = []
    errors = []
    lock = threading.Lock()
    share = [requests // clients + (index < requests % clients) for index in range(clients)]

    def client(count: int):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        for _ in range(count):
            start = time.perf_counter()
            connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - start)
            if response.status != 200:
                errors.append(response.status)
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(count,)) for count in share if count]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} of {requests} requests failed (statuses {sorted(set(errors))})")
    milliseconds = np.array(latencies) * 1000
    return {"p50_ms": float(np.percentile(milliseconds, 50)), "p99_ms": float(np.percentile(milliseconds, 99)),
            "requests_per_second": requests / elapsed, "requests": requests}


def direct_predict_ms(name: str, image: np.ndarray, repeats: int) -> float:
    """p50 of zoo.load(name).predict(one image) in this process: what the server wraps."""
    model = api.load(name)
    model.predict(image)  # the first call traces and warms up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(image)
        times.append(time.perf_counter() - start)
    return float(np.percentile(np.array(times) * 1000, 50))


def serving_figures(quick: bool = False, models=MODELS, clients=CLIENTS) -> dict:
    """{"serving": ...} for bench.json (see the module's docstring)."""
    requests = 24 if quick else 400
    rng = np.random.default_rng(0)
    images = {name: rng.integers(0, 256, (1, *api.load(name).input_shape), dtype=np.uint8) for name in models}
    bodies = {name: json.dumps({"instances": image.tolist()}).encode() for name, image in images.items()}
    results: dict = {"measured": {"created": cards.utc_now(), "load_average": os.getloadavg()[0]},
                     "requests_per_level": requests, "models": {}}
    for name in models:
        results["models"][name] = {"direct_predict_p50_ms": direct_predict_ms(name, images[name], requests)}
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
                    entry[f"clients_{count}"] = load(port, "POST", path, bodies[name], count, requests)
                one = entry[f"clients_{min(clients)}"]["p50_ms"]
                entry["overhead_vs_direct_predict"] = one / results["models"][name]["direct_predict_p50_ms"]
                entry["overhead_vs_empty_route"] = one / ping["p50_ms"]
    return {"serving": results}
