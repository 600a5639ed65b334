"""`python -m zoo serve`: the zoo over HTTP, with TF Serving's REST conventions, dynamic
batching, and a model gallery. Starlette app, served by uvicorn.

    GET  /v1/models/<name>                 status and version (TF Serving's GetModelStatus; every
                                           route also as /v1/models/<name>/versions/1...)
    GET  /v1/models/<name>/metadata        signature defs: input and output names, dtypes, shapes
    POST /v1/models/<name>:predict         {"signature_name": ..., "instances": [...]} -> {"predictions": [...]}
                                           {"signature_name": ..., "inputs": ...}      -> {"outputs": ...}
    POST /v1/models/<name>:generate        {"prompt", "words", "temperature", "top_k", "seed"} -> {"text": ...}
    GET  /                                 the gallery; /models/<name> a model's page with a live widget

Images are nested lists of uint8 pixels or {"b64": "<base64 PNG/JPEG>"} (decoded, then resized
to the model's input); `"normalize": true` prepares MNIST-style digits (zoo's extension). Text is
strings. Errors are {"error": "..."} with 400 (bad input), 404 (unknown model or route), 413
(body too large), 503 (batch queue full) or 500 (a failure, logged here, never sent).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import gc
import html
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tensorflow.core.framework import types_pb2

from zoo import api, artifact, registry, tasks

try:  # the `serve` extra; `python -m zoo serve` says so when it is missing
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route
    SERVER_MISSING = ""
except ImportError as missing:
    SERVER_MISSING = f"python -m zoo serve needs the `serve` extra (starlette, uvicorn): {missing}"

LOG = logging.getLogger("zoo.serve")
GALLERY = Path(__file__).resolve().parent / "gallery"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501  # TF Serving's REST port
MAX_BODY_BYTES = 8 * 2**20  # 8 MiB: a 256-image CIFAR batch as JSON lists is ~3 MB
# Requests up to this size are decoded on the event loop (JSON pixels of a few images: well under
# a millisecond); larger ones, and any with encoded images, on the worker threads.
INLINE_PREPARE_BYTES = 64 * 1024
MAX_INSTANCES = 256  # instances per request (image.MAX_BATCH)
MAX_GENERATE_WORDS = 500  # per :generate request (~0.5 s of `step` calls)
MAX_PROMPT_WORDS = 1000  # a :generate prompt is fed one token at a time too (~1 s)
VERSION = "1"  # one version per model: the committed artifact


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """Like TF Serving's batching parameters: one model's signature runs one call at a time;
    the requests that queued meanwhile run together as the next call, of at most max_batch_size
    instances (a larger request runs on its own), after waiting up to batch_timeout_s for more
    (0 by default: a lone request does not wait, and under load batches form while calls run);
    at most max_enqueued instances wait (then 503)."""
    max_batch_size: int = 32
    batch_timeout_s: float = 0.0
    max_enqueued: int = 1024

    def __post_init__(self):
        if self.max_batch_size < 1 or self.max_enqueued < 1 or not 0 <= self.batch_timeout_s <= 1:
            raise ValueError(f"batching needs max_batch_size >= 1, max_enqueued >= 1 and batch_timeout_s in "
                             f"[0, 1], got {self}")


class RequestError(Exception):
    """An answer other than 200: its HTTP status and one line for {"error": ...}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Batcher:
    """Groups concurrent requests for one model's signature into one call (see BatchingOptions)."""

    def __init__(self, run: Callable[[dict], dict], options: BatchingOptions, executor):
        self.run, self.options, self.executor = run, options, executor
        self.queue: asyncio.Queue = asyncio.Queue()
        self.arrived = asyncio.Event()
        self.waiting = 0  # instances queued, not yet running
        self.worker: asyncio.Task | None = None
        self.batches = 0  # calls made, for tests and the bench

    async def submit(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        count = len(next(iter(inputs.values())))
        if self.waiting + count > self.options.max_enqueued:
            raise RequestError(503, f"the batch queue is full ({self.waiting} instances waiting, max_enqueued = "
                                    f"{self.options.max_enqueued}); retry later")
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._work())
        future = asyncio.get_running_loop().create_future()
        self.waiting += count
        self.queue.put_nowait((inputs, count, future))
        self.arrived.set()
        return await future

    async def _work(self):
        carried = None
        loop = asyncio.get_running_loop()
        while True:
            first = carried or await self.queue.get()
            carried = None
            group, size = [first], first[1]
            deadline = loop.time() + self.options.batch_timeout_s
            while size < self.options.max_batch_size:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    # Waiting on an event, not on queue.get(): a timed-out get could drop an item.
                    self.arrived.clear()
                    try:
                        await asyncio.wait_for(self.arrived.wait(), remaining)
                    except TimeoutError:
                        pass
                    continue
                if size + item[1] > self.options.max_batch_size:
                    carried = item  # first in the next call: order is kept
                    break
                group.append(item)
                size += item[1]
            self.waiting -= size
            merged = {key: np.concatenate([inputs[key] for inputs, _, _ in group]) for key in first[0]}
            try:
                outputs = await loop.run_in_executor(self.executor, self.run, merged)
            except Exception as error:  # every request of the group gets the failure
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.batches += 1
            start = 0
            for _, count, future in group:
                if not future.done():  # a client gone away cancels its future
                    future.set_result({key: value[start:start + count] for key, value in outputs.items()})
                start += count

    def close(self):
        if self.worker is not None:
            self.worker.cancel()


class ModelServer:
    """The loaded models and their batchers; the routes' logic, independent of the HTTP library."""

    def __init__(self, models: dict[str, Any], batching: BatchingOptions | None = BatchingOptions(),
                 max_body_bytes: int = MAX_BODY_BYTES, workers: int | None = None):
        self.models = models
        self.batching = batching
        self.max_body_bytes = max_body_bytes
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2,
                                                              thread_name_prefix="zoo-serve")
        self.batchers: dict[tuple[str, str], Batcher] = {}

    def model(self, name: str):
        """A served model by registry name; 404 for any other text (no URL reaches a path)."""
        if name not in self.models:
            raise RequestError(404, f"unknown model {name!r}; served: {sorted(self.models)}")
        return self.models[name]

    def signature(self, model, name: str | None) -> tuple[str, Any]:
        signatures = model.serving_signatures()
        name = "serving_default" if name in (None, "") else name
        if not isinstance(name, str) or name not in signatures:
            raise RequestError(400, f"signature_name must be one of {sorted(signatures)}, got {name!r}")
        return name, signatures[name]

    def status(self, name: str) -> dict:
        self.model(name)
        return {"model_version_status": [{"version": VERSION, "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(self, name: str) -> dict:
        model = self.model(name)
        defs = {key: signature_def(function) for key, function in model.serving_signatures().items()}
        return {"model_spec": {"name": name, "signature_name": "", "version": VERSION},
                "metadata": {"signature_def": {"signature_def": defs}}}

    async def predict(self, name: str, body, body_bytes: int = MAX_BODY_BYTES) -> dict:
        model = self.model(name)
        if not isinstance(body, dict):
            raise RequestError(400, f"expected a JSON object with `instances` or `inputs`, got {type(body).__name__}")
        unknown = set(body) - {"signature_name", "instances", "inputs", "normalize"}
        if unknown or ("instances" in body) == ("inputs" in body):
            raise RequestError(400, f"expected exactly one of `instances` (row form) or `inputs` (column form), "
                                    f"with optional `signature_name` and `normalize`; got keys {sorted(body)}")
        signature_name, function = self.signature(model, body.get("signature_name"))
        input_names = sorted(function.structured_input_signature[1])
        row_form = "instances" in body
        columns = to_columns(body["instances"] if row_form else body["inputs"], input_names, row_form)
        normalize = body.get("normalize", False)
        if not isinstance(normalize, bool):
            raise RequestError(400, f"normalize must be true or false, got {normalize!r}")
        if body_bytes <= INLINE_PREPARE_BYTES and not _has_encoded_images(columns):
            inputs = model.prepare(signature_name, columns, normalize)  # a fraction of a thread hop's cost
        else:
            inputs = await self.call(model.prepare, signature_name, columns, normalize)
        key = (name, signature_name)
        if self.batching is None:
            outputs = await self.call(model.run_signature, signature_name, inputs)
        else:
            if key not in self.batchers:
                self.batchers[key] = Batcher(functools.partial(model.run_signature, signature_name),
                                             self.batching, self.executor)
            outputs = await self.batchers[key].submit(inputs)
        return from_outputs(outputs, row_form)

    async def generate(self, name: str, body) -> dict:
        model = self.model(name)
        if not hasattr(model, "generate"):
            raise RequestError(400, f"{name} does not generate text (:generate is for language models)")
        if not isinstance(body, dict) or "prompt" not in body or set(body) - {"prompt", "words", "temperature",
                                                                              "top_k", "seed"}:
            raise RequestError(400, "expected an object with `prompt` (a string) and optional `words`, "
                                    f"`temperature`, `top_k`, `seed`; got {_shown(body)}")
        words = body.get("words", 30)
        if isinstance(words, int) and not isinstance(words, bool) and words > MAX_GENERATE_WORDS:
            raise RequestError(400, f"words must be at most MAX_GENERATE_WORDS = {MAX_GENERATE_WORDS}, got {words}")
        if not isinstance(body["prompt"], str):
            raise RequestError(400, f"prompt must be a string, got {type(body['prompt']).__name__}")
        if len(body["prompt"].split()) > MAX_PROMPT_WORDS:
            raise RequestError(400, f"the prompt has {len(body['prompt'].split()):,} words; the limit is "
                                    f"MAX_PROMPT_WORDS = {MAX_PROMPT_WORDS}")
        text = await self.call(model.generate, body["prompt"], num_words=words,
                               temperature=body.get("temperature", 1.0), top_k=body.get("top_k"),
                               seed=body.get("seed"))
        return {"text": text}

    async def call(self, function, *args, **kwargs):
        """Runs `function` on the worker threads: model calls and input decoding never block the loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: function(*args, **kwargs))

    def close(self):
        for batcher in self.batchers.values():
            batcher.close()
        self.executor.shutdown(wait=True)


def signature_def(function) -> dict:
    """A signature as TF Serving's metadata shows it (SignatureDef as JSON)."""
    def tensor(spec, name) -> dict:
        dims = [{"size": str(-1 if size is None else size), "name": ""} for size in spec.shape.as_list()]
        return {"dtype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum),
                "tensor_shape": {"dim": dims, "unknown_rank": False}, "name": name}
    inputs = function.structured_input_signature[1]
    return {"inputs": {key: tensor(spec, spec.name or key) for key, spec in sorted(inputs.items())},
            "outputs": {key: tensor(spec, key) for key, spec in sorted(function.structured_outputs.items())},
            "method_name": "tensorflow/serving/predict"}


def to_columns(value, input_names: list[str], row_form: bool) -> dict[str, list]:
    """TF Serving's two request forms -> input name -> list over instances. Row form: a list of
    instances, each the value of the one input or an object naming every input; column form: the
    batch of the one input, or an object of batches by input name. {"b64": ...} is a value."""
    def named(item) -> bool:
        return isinstance(item, dict) and set(item) != {"b64"}

    if row_form:
        if not isinstance(value, list) or not value:
            raise RequestError(400, f"instances must be a non-empty list, got {_shown(value)}")
        if any(named(item) for item in value):
            if not all(named(item) and sorted(item) == input_names for item in value):
                raise RequestError(400, f"every instance must name the inputs {input_names}")
            columns = {key: [item[key] for item in value] for key in input_names}
        elif len(input_names) == 1:
            columns = {input_names[0]: value}
        else:
            raise RequestError(400, f"the signature has inputs {input_names}: each instance must name them")
    else:
        if named(value):
            if sorted(value) != input_names:
                raise RequestError(400, f"inputs must name {input_names}, got {sorted(value)}")
            columns = dict(value)
        elif len(input_names) == 1:
            columns = {input_names[0]: value}
        else:
            raise RequestError(400, f"the signature has inputs {input_names}: `inputs` must name them")
        for key, batch in columns.items():
            if not isinstance(batch, list) or not batch:
                raise RequestError(400, f"input {key!r} must be a non-empty list (a batch), got {_shown(batch)}")
    counts = {len(batch) for batch in columns.values()}
    if len(counts) != 1:
        raise RequestError(400, f"every input needs the same number of instances, got {sorted(counts)}")
    count = counts.pop()
    if count > MAX_INSTANCES:
        raise RequestError(400, f"{count} instances in one request; the limit is MAX_INSTANCES = {MAX_INSTANCES}")
    return columns


def from_outputs(outputs: dict[str, np.ndarray], row_form: bool) -> dict:
    """Signature outputs -> TF Serving's answer: row form {"predictions": [per instance]}, column
    form {"outputs": ...}; a lone output is given bare, as TF Serving does."""
    plain = {key: json_value(value) for key, value in sorted(outputs.items())}
    if not row_form:
        return {"outputs": plain[next(iter(plain))] if len(plain) == 1 else plain}
    count = len(next(iter(plain.values())))
    if len(plain) == 1:
        return {"predictions": next(iter(plain.values()))}
    return {"predictions": [{key: value[index] for key, value in plain.items()} for index in range(count)]}


def json_value(array: np.ndarray):
    """Numbers as JSON numbers (float32 values exactly), strings decoded from UTF-8."""
    if array.dtype.kind in "SO":
        return np.vectorize(lambda item: item.decode("utf-8", "replace") if isinstance(item, bytes) else item,
                            otypes=[object])(array).tolist()
    return array.tolist()


def _shown(value) -> str:
    text = json.dumps(value)[:80] if isinstance(value, (dict, list, str, int, float, bool)) else type(value).__name__
    return text


# The gallery.


def metric_cell(name: str) -> tuple[str, str]:
    """(metric text, bar text) for a registry model."""
    spec = registry.get(name)
    card = artifact.committed_card(name)
    if card is None:
        return "not trained", spec.bar_text
    value = card["metrics"][spec.metric_key]["value"]
    return f"{spec.metric} {value:.4f}" if spec.metric == "accuracy" else f"{spec.metric} {value:.1f}", spec.bar_text


def page(title: str, body: str) -> str:
    return (GALLERY / "page.html").read_text().replace("{{title}}", html.escape(title)).replace("{{body}}", body)


def gallery_index(models: dict[str, Any]) -> str:
    rows = []
    for name in registry.list_models():
        metric, bar = metric_cell(name)
        spec = registry.get(name)
        link = f'<a href="/models/{name}">{name}</a>' if name in models else html.escape(name)
        rows.append(f"<tr><td>{link}</td><td>{html.escape(spec.task)}</td><td>{html.escape(metric)}</td>"
                    f"<td>{html.escape(bar)}</td><td>{html.escape(spec.reference)}</td></tr>")
    return page("zoo", "<h1>zoo</h1><p>Every registered model; served ones link to their page.</p>"
                "<table><tr><th>model</th><th>task</th><th>test metric</th><th>bar</th><th>reference</th></tr>"
                + "".join(rows) + "</table>")


def model_page(name: str, model) -> str:
    card = model.card
    metric, bar = metric_cell(name)
    facts = {"task": card.get("task"), "dataset": (card.get("dataset") or {}).get("name"), "test metric": metric,
             "bar": bar, "reference": registry.get(name).reference,
             "parameters": f"{card.get('parameter_count', registry.get(name).parameter_count):,}",
             "description": card.get("description"),
             "preprocessing": card.get("preprocessing")}
    table = "".join(f"<tr><th>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>"
                    for key, value in facts.items() if value is not None)
    widget = (GALLERY / f"{tasks.get(card['task']).gallery_widget}.html").read_text()
    # Read by gallery.js; in a <script> element entities are not decoded, so "<" is JSON's \u003c.
    config = {"name": name, "labels": card.get("label_names"),
              "mnist": model.normalizable}
    config_json = json.dumps(config).replace("<", "\\u003c")
    body = (f'<p><a href="/">all models</a></p><h1>{html.escape(name)}</h1><table>{table}</table>'
            f'<h2>Try it</h2>{widget}<script id="config" type="application/json">'
            f'{config_json}</script><script src="/static/gallery.js"></script>'
            f'<h2>Training curve</h2><img id="curve" alt="training curve" src="/models/{name}/training_curve.png">')
    return page(name, body)


def create_app(server: ModelServer) -> "Starlette":
    """The ASGI app over `server` (routes above)."""
    if SERVER_MISSING:
        raise RuntimeError(SERVER_MISSING)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def read_json(request: Request):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > server.max_body_bytes):
            raise RequestError(413, f"the request body is {length} bytes; the limit is {server.max_body_bytes:,}")
        chunks, size = [], 0
        async for chunk in request.stream():  # counted as it arrives: chunked bodies have no length
            size += len(chunk)
            if size > server.max_body_bytes:
                raise RequestError(413, f"the request body exceeds the limit of {server.max_body_bytes:,} bytes")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks), parse_constant=_no_constant), size
        except (ValueError, RecursionError) as failure:
            raise RequestError(400, f"the body is not valid JSON: {' '.join(str(failure).split())[:200]}") from None

    def guarded(handler):
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestError as failure:
                return error(failure.status, str(failure))
            except (ValueError, TypeError) as failure:  # the model's own input checks
                return error(400, " ".join(str(failure).split()))
            except Exception:  # logged here with its traceback; the client gets one line
                LOG.exception("request %s %s failed", request.method, request.url.path)
                return error(500, "internal error (logged by the server)")
        return endpoint

    def check_version(request: Request, version: str | None = None):
        """TF Serving's /versions/<v> forms: the one version served is VERSION."""
        version = request.path_params.get("version") if version is None else version
        if version is not None and version != VERSION:
            server.model(request.path_params["name"].partition(":")[0])
            raise RequestError(404, f"version {version!r} is not served; the version is {VERSION}")

    async def model_get(request: Request) -> Response:
        check_version(request)
        return JSONResponse(server.status(request.path_params["name"]))

    async def model_metadata(request: Request) -> Response:
        check_version(request)
        return JSONResponse(server.metadata(request.path_params["name"]))

    async def model_post(request: Request) -> Response:
        if "version" in request.path_params:  # /v1/models/<name>/versions/<v>:predict
            version, _, method = request.path_params["version"].partition(":")
            check_version(request, version)
            name = request.path_params["name"]
        else:
            name, _, method = request.path_params["name"].partition(":")
        if method not in ("predict", "generate"):
            server.model(name)
            raise RequestError(404, f"unknown method {method!r}; POST /v1/models/<name>:predict or :generate")
        server.model(name)  # 404 before the body is read
        body, size = await read_json(request)
        if method == "predict":
            return JSONResponse(await server.predict(name, body, size))
        return JSONResponse(await server.generate(name, body))

    async def ping(request: Request) -> Response:
        return JSONResponse({})

    async def index(request: Request) -> Response:
        return HTMLResponse(gallery_index(server.models))

    async def gallery_page(request: Request) -> Response:
        name = request.path_params["name"]
        return HTMLResponse(model_page(name, server.model(name)))

    async def training_curve(request: Request) -> Response:
        model = server.model(request.path_params["name"])
        curve = Path(model.path) / "training_curve.png"  # the loaded artifact's own file, not the URL's
        if not curve.is_file():
            raise RequestError(404, f"{model.name} has no training curve")
        return FileResponse(curve, media_type="image/png")

    async def static(request: Request) -> Response:
        files = {"gallery.js": "text/javascript", "gallery.css": "text/css"}
        name = request.path_params["file"]
        if name not in files:
            raise RequestError(404, f"no static file {name!r}")
        return FileResponse(GALLERY / name, media_type=files[name])

    async def not_found(request: Request, exc) -> Response:
        return error(getattr(exc, "status_code", 404), f"no route {request.method} {request.url.path}")

    routes = [Route("/v1/models/{name}", guarded(model_get), methods=["GET"]),
              Route("/v1/models/{name}/metadata", guarded(model_metadata), methods=["GET"]),
              Route("/v1/models/{name}", guarded(model_post), methods=["POST"]),
              Route("/v1/models/{name}/versions/{version}", guarded(model_get), methods=["GET"]),
              Route("/v1/models/{name}/versions/{version}/metadata", guarded(model_metadata), methods=["GET"]),
              Route("/v1/models/{name}/versions/{version}", guarded(model_post), methods=["POST"]),
              Route("/v1/ping", guarded(ping), methods=["GET"]),  # an empty route: the server's own overhead
              Route("/", guarded(index), methods=["GET"]),
              Route("/models/{name}", guarded(gallery_page), methods=["GET"]),
              Route("/models/{name}/training_curve.png", guarded(training_curve), methods=["GET"]),
              Route("/static/{file}", guarded(static), methods=["GET"])]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.server = server
    return app


def _has_encoded_images(columns: dict[str, list]) -> bool:
    """Any {"b64": ...} value (PNG/JPEG bytes to decode, and maybe resize)?"""
    return any(isinstance(item, dict) for batch in columns.values() for item in batch)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def load_models(names: list[str] | None) -> dict[str, Any]:
    """The named registry models (default: every trained one), loaded and verified by zoo.load."""
    known = registry.list_models()
    unknown = [name for name in names or [] if name not in known]
    if unknown:
        raise ValueError(f"--models must be registry names {known}, got {unknown}")
    chosen = names or [name for name in known if artifact.is_trained(name)]
    untrained = [name for name in chosen if not artifact.is_trained(name)]
    if untrained:
        raise ValueError(f"{untrained} have no trained artifact to serve")
    return {name: api.load(name) for name in chosen}


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, models: list[str] | None = None,
          batching: BatchingOptions | None = BatchingOptions(), max_body_bytes: int = MAX_BODY_BYTES) -> int:
    """Loads the models, then serves until SIGINT or SIGTERM (in-flight requests finish first,
    up to 30 s)."""
    if SERVER_MISSING:
        raise RuntimeError(SERVER_MISSING)
    server = ModelServer(load_models(models), batching, max_body_bytes)
    # The loaded models are a few hundred thousand long-lived Python objects; frozen, the garbage
    # collector stops walking them every few requests (a request allocates thousands: JSON pixels).
    gc.freeze()
    if host not in ("127.0.0.1", "localhost", "::1"):
        LOG.warning("binding %s: every served model is open to the network, without authentication", host)
    LOG.info("serving %s on http://%s:%d", sorted(server.models), host, port)
    config = uvicorn.Config(create_app(server), host=host, port=port, timeout_graceful_shutdown=30,
                            log_level="info", access_log=False, server_header=False)
    try:
        uvicorn.Server(config).run()
    finally:
        server.close()
    return 0

