"""The benchmark measurements: `run` returns the figures that render.py turns into bench.md."""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import onnxruntime
import tensorflow as tf

import zoo
from training import cards, loop
from training import tasks as training_tasks
from training.bench.flops import forward_flops, language_forward_flops
from training.image_task import compile_image_model
from training.language_task import compiled_twin
from training.paper import REPORT_DIR
from training.recipes import resolve
from zoo import artifact, registry, tasks
from zoo.convert import to_onnx
from zoo.data import ptb
from zoo.data.images import EPOCH_AUGMENTATIONS, alternating_flip_pipeline, image_pipeline
from zoo.models import language
from zoo.models.common import BatchNormalization, image_input, scale_pixels


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


# 2048: here 1024 ran ~15% below the 2048 and 4096 rates (187 vs 216 and 223 GFLOP/s), which
# would inflate every fraction of the matmul rate.
MATMUL_SIZE = 2048


def matmul_rate(size: int = MATMUL_SIZE, seconds: float = 3.0) -> float:
    """The machine's dense float32 matmul rate (FLOP/s), measured now."""
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    step = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    step()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step().numpy()
        count += 1
    return 2 * size ** 3 * count / (time.perf_counter() - start)


def training_throughput(spec, steps: int, rounds: int = 3, jit_compile: bool = False,
                        model: keras.Model | None = None) -> dict:
    """Examples/s of train steps on synthetic uint8 batches (the recipe's batch size); with
    jit_compile, through XLA (Keras' default, which the recipes turn off); `model` replaces the
    spec's architecture (the limit probes below)."""
    model = model or spec.build()
    train_step, batch_size = image_train_step(spec, model, jit_compile)
    entry = _rounds(train_step, steps, rounds, batch_size, 3 * forward_flops(model))
    return {**entry, "batch_size": batch_size}


def image_train_step(spec, model: keras.Model, jit_compile: bool = False) -> tuple[Callable[[], Any], int]:
    """(one train step of `model` compiled with the spec's recipe on a fixed synthetic uint8
    batch, already traced; the batch size)."""
    recipe = resolve(spec)
    compile_image_model(model, recipe, steps_per_epoch=100)
    model.jit_compile = jit_compile
    shape = model.input_shape[1:]
    images = np.random.default_rng(0).integers(0, 256, (recipe.batch_size, *shape), dtype=np.uint8)
    labels = np.eye(len(spec.label_names), dtype=np.float32)[np.arange(recipe.batch_size) % len(spec.label_names)]
    model.train_on_batch(images, labels)  # trace and build
    return (lambda: model.train_on_batch(images, labels)), recipe.batch_size


def _rounds(train_step, steps: int, rounds: int, examples_per_step: int, flops_per_example: float) -> dict:
    """Median over `rounds` of (matmul rate, then `steps` train steps): the two alternate, so a
    load change on a shared machine moves both sides of each round's fraction together."""
    rates, fractions = [], []
    for _ in range(rounds):
        matmul = matmul_rate(seconds=1.0)
        rate = steps * examples_per_step / sum(timed(train_step, steps))
        rates.append(rate)
        fractions.append(rate * flops_per_example / matmul)
    return {"examples_per_second": float(np.median(rates)), "training_flops_per_example": flops_per_example,
            "fraction_of_matmul_rate": float(np.median(fractions)),
            "fraction_of_matmul_rate_range": [float(min(fractions)), float(max(fractions))], "rounds": rounds}


def pipeline_throughput(spec, batches: int) -> float:
    """Examples/s of the training input pipeline alone (shuffle, augment, batch), on
    synthetic images of the dataset's shape held in memory like the cached tfds split."""
    recipe = resolve(spec)
    shape = spec.build().input_shape[1:]
    images = np.random.default_rng(0).integers(0, 256, (10_000, *shape), dtype=np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(10_000, np.int64)))
    if recipe.augment in EPOCH_AUGMENTATIONS:  # one stream over epochs; `batches` epochs are plenty
        pipeline = alternating_flip_pipeline(dataset, recipe.batch_size, 0, 0, batches)
    else:
        pipeline = image_pipeline(dataset, recipe.batch_size, True, recipe.augment, 0, recipe.affine())
    return _batches_per_second(pipeline, batches) * recipe.batch_size


def language_training_throughput(spec, steps: int, rounds: int = 3) -> dict:
    """Tokens/s of train steps of the stateful training twin on random token windows."""
    train_step, tokens = language_train_step(spec)
    entry = _rounds(train_step, steps, rounds, tokens, 3 * language_forward_flops(spec.config))
    return {**entry, "unit": "tokens", "batch_size": resolve(spec).batch_size}


def language_train_step(spec, precision: str = "float32", hoist_inputs: bool = True,
                        jit_compile: bool | None = None) -> tuple[Callable[[], Any], int]:
    """(one train step of the stateful training twin on a fixed window of random token ids
    [batch, sequence_length], already traced; tokens per step). hoist_inputs=False: with Keras'
    own recurrent loop (zoo.models.recurrent); jit_compile: XLA on or off (default: the recipe's)."""
    _, step, tokens = language_twin_step(spec, precision, hoist_inputs, jit_compile)
    return step, tokens


def language_twin_step(spec, precision: str = "float32", hoist_inputs: bool = True,
                       jit_compile: bool | None = None) -> tuple[keras.Model, Callable[[], Any], int]:
    """language_train_step's (the training twin it steps, the step, tokens per step)."""
    recipe = resolve(spec, {"precision": precision, **({} if jit_compile is None else {"jit_compile": jit_compile})})
    twin = compiled_twin(spec, recipe, steps_per_epoch=100, hoist_inputs=hoist_inputs)
    shape = (recipe.batch_size, recipe.sequence_length)
    rng = np.random.default_rng(0)
    inputs, targets = (rng.integers(0, spec.config.vocab_size, shape, dtype=np.int32) for _ in range(2))
    twin.train_on_batch(inputs, targets)  # trace and build
    return twin, (lambda: twin.train_on_batch(inputs, targets)), inputs.size


def recurrent_train_step(spec) -> tuple[Callable[[], Any], int]:
    """(one train step of the training twin's recurrent layers alone, float32: random embeddings
    [batch, sequence_length, E] in, mean-square loss on the top layer's outputs, the recipe's
    optimizer; tokens per step). With language_train_step it splits the step's time between
    the recurrent layers and the rest (embedding, dropout, output layer, loss)."""
    recipe = resolve(spec, {"precision": "float32"})
    twin = language.build_stateful(spec.config, recipe.batch_size, spec.name)  # for its layers' configs
    x = inputs = keras.Input(batch_shape=(recipe.batch_size, None, spec.config.embedding_dim))
    for layer in language.recurrent_layers(twin):
        x = type(layer).from_config(layer.get_config())(x)[0]  # [N, T, H]
    model = keras.Model(inputs, x)
    model.compile(optimizer=loop.make_optimizer(recipe, 100), loss="mean_squared_error")
    rng = np.random.default_rng(0)
    embedded = rng.normal(size=(recipe.batch_size, recipe.sequence_length, spec.config.embedding_dim))
    embedded = embedded.astype(np.float32)
    targets = np.zeros((*embedded.shape[:2], spec.config.hidden_units), np.float32)
    model.train_on_batch(embedded, targets)  # trace and build
    return (lambda: model.train_on_batch(embedded, targets)), embedded.shape[0] * embedded.shape[1]


def language_pipeline_throughput(spec, batches: int) -> float:
    """Tokens/s of the training input pipeline alone (a PTB-sized stream of windows)."""
    recipe = resolve(spec)
    ids = np.random.default_rng(0).integers(0, spec.config.vocab_size, 929_589, dtype=np.int32)
    pipeline = ptb.stream_batches(ids, recipe.batch_size, recipe.sequence_length).prefetch(tf.data.AUTOTUNE)
    return _batches_per_second(pipeline, batches) * recipe.batch_size * recipe.sequence_length


def _batches_per_second(dataset: tf.data.Dataset, batches: int) -> float:
    """Batches/s drawn from `dataset` (repeated) inside a tf.function, as Keras' fit draws them
    (a Python-side next() would add its own per-batch cost), after a warm-up draw."""
    iterator = iter(dataset.repeat())

    @tf.function
    def draw(count):
        examples = tf.constant(0, tf.int64)
        for _ in tf.range(count):  # each batch's size is used, so no draw can be pruned
            examples += tf.shape(tf.nest.flatten(next(iterator))[0], out_type=tf.int64)[0]
        return examples

    draw(tf.constant(2))
    start = time.perf_counter()
    draw(tf.constant(batches))
    return batches / (time.perf_counter() - start)


def latency_and_throughput(call_one, call_batch, repeats: int) -> dict:
    call_one()
    call_batch()
    single = np.array(timed(call_one, repeats)) * 1000
    batch = timed(call_batch, max(3, repeats // 20))
    return {"p50_ms": float(np.percentile(single, 50)), "p99_ms": float(np.percentile(single, 99)),
            "batch256_examples_per_second": 256 / float(np.median(batch))}


def inference(name: str, repeats: int, work_dir) -> dict:
    """One example and batches of 256 through zoo.load(...).predict (both runtimes), the
    artifact's signature alone, keras model.predict, and onnxruntime on the same ONNX file."""
    model = zoo.load(name)
    fast = zoo.load(name, runtime="onnxruntime")
    keras_model = zoo.get_model(name, pretrained=True)
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, *model.input_shape), dtype=np.uint8)
    batch = rng.integers(0, 256, (256, *model.input_shape), dtype=np.uint8)
    session = onnxruntime.InferenceSession(str(to_onnx(artifact.committed_dir(name), work_dir / f"{name}.onnx")))
    # The artifact's own signature, called straight: what zoo adds on top of TensorFlow.
    signature = tf.saved_model.load(str(artifact.committed_dir(name))).signatures["serving_default"]
    one_tensor, batch_tensor = tf.constant(one), tf.constant(batch)
    return {
        "zoo": latency_and_throughput(lambda: model.predict(one), lambda: model.predict(batch), repeats),
        "zoo_onnxruntime": latency_and_throughput(lambda: fast.predict(one), lambda: fast.predict(batch), repeats),
        "signature": latency_and_throughput(lambda: signature(image=one_tensor),
                                            lambda: signature(image=batch_tensor), repeats),
        "keras_predict": latency_and_throughput(lambda: keras_model.predict(one, verbose=0),
                                                lambda: keras_model.predict(batch, verbose=0), repeats),
        "onnxruntime": latency_and_throughput(lambda: session.run(None, {"image": one}),
                                              lambda: session.run(None, {"image": batch}), repeats),
    }


def function_call_floor(repeats: int) -> float:
    """p50 milliseconds of calling a tf.function that returns its uint8 [1, 28, 28, 1] input:
    the least any SavedModel signature costs per call here."""
    identity = tf.function(lambda image: tf.identity(image),
                           input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.uint8)])
    image = tf.zeros([1, 28, 28, 1], tf.uint8)
    identity(image)
    return float(np.percentile(np.array(timed(lambda: identity(image), repeats)) * 1000, 50))


def generation(name: str, tokens: int = 1101, pairs: int = 200) -> dict:
    """Tokens/s through the `step` signature (greedy generation), and the cost of one step at
    position 1,000 relative to position 10."""
    folder = artifact.committed_dir(name)
    step = tf.saved_model.load(str(folder)).signatures["step"]
    state = tf.zeros([1, artifact.read_card(folder)["state_size"]])
    token = tf.constant([0], tf.int32)
    times, inputs = [], {}
    for position in range(tokens):
        if position in (10, 1000):
            inputs[position] = {"token_id": token, "state": state}
        start = time.perf_counter()
        outputs = step(token_id=token, state=state)
        token = tf.cast(tf.argmax(outputs["logits"], axis=-1), tf.int32)
        state = outputs["state"]
        times.append(time.perf_counter() - start)
    # Steps at the two positions timed alternately, so that drift in the machine's speed (other
    # processes) falls on both alike; medians, since single timings are noisy.
    early: list[float] = []
    late: list[float] = []
    for _ in range(pairs):
        for position, record in ((10, early), (1000, late)):
            start = time.perf_counter()
            step(**inputs[position])
            record.append(time.perf_counter() - start)
    return {"tokens_per_second": float(1 / np.median(times[1:])),  # the first call traces
            "cost_ratio_position_1000_vs_10": float(np.median(late) / np.median(early))}


def time_to_target(history: dict, key: str, target: float, lower_is_better: bool,
                   missing: str = "not run") -> dict:
    """Minutes until a per-epoch validation metric in `history` (columns: epoch,
    elapsed_seconds, key) first reached `target`; status `missing` when there is no history."""
    if not history.get("epoch"):
        return {"status": missing}
    for epoch, value, seconds in zip(history["epoch"], history.get(key, []), history["elapsed_seconds"]):
        if (value <= target) if lower_is_better else (value >= target):
            return {"status": "reached", "epoch": epoch, "minutes": seconds / 60, "value": value}
    return {"status": "not reached", "best": (min if lower_is_better else max)(history.get(key, [np.nan])),
            "epochs": history["epoch"][-1], "minutes": history["elapsed_seconds"][-1] / 60}


def card_history(name: str) -> dict:
    """The committed recipe's training history, from the artifact's card (not retrained here)."""
    card = artifact.committed_card(name)
    return card["training"]["history"] if card else {}


def paper_history(name: str) -> tuple[dict, str]:
    """The paper schedule's log written by `make paper-NAME` (training/paper.py), and the status
    when there is none to time: not run, or run on another architecture than the registry's now
    (its summary's model_config)."""
    log = REPORT_DIR / f"{name}_paper_schedule.csv"
    if not log.is_file():
        return {}, f"not run (`make paper-{name}`)"
    try:
        config = json.loads(log.with_suffix(".json").read_text()).get("model_config")
    except (OSError, ValueError, AttributeError):
        config = None
    if config != json.loads(json.dumps(dataclasses.asdict(registry.get(name).config), default=list)):
        return {}, f"run on another architecture than the registry's (rerun `make paper-{name}`)"
    return loop.read_history(log), ""


XLA_COMPARED = ("resnet20_cifar10", "mlp_mnist")  # a convolutional and a dropout model
LIMITS_PROBED = ("resnet20_cifar10",)  # the model with a training-rate goal


def training_limits(spec, steps: int, rounds: int) -> dict:
    """What holds a convolutional model below the goal: the fraction it trains at with Keras' own
    (unfused) batch norm, and the fraction its convolutions reach alone (the same Conv2D layers in
    a chain: no batch norm, ReLU or shortcuts), the ceiling the convolution kernels allow here."""
    unfused = keras.models.clone_model(spec.build(), clone_function=_keras_batch_norm)
    convolutions = _convolutions_alone(spec.build())
    return {"keras_batch_norm_fraction_of_matmul_rate":
            training_throughput(spec, steps, rounds, model=unfused)["fraction_of_matmul_rate"],
            "convolutions_alone_fraction_of_matmul_rate":
            training_throughput(spec, steps, rounds, model=convolutions)["fraction_of_matmul_rate"]}


def _keras_batch_norm(layer):
    """clone_model's layer map: zoo's fused batch norm -> Keras' own; every other layer shared."""
    if isinstance(layer, BatchNormalization):
        return keras.layers.BatchNormalization.from_config(layer.get_config())
    return layer


def _convolutions_alone(model: keras.Model) -> keras.Model:
    image = image_input(model.input_shape[1:])
    x = scale_pixels(image)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            x = keras.layers.Conv2D.from_config(layer.get_config())(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    scores = keras.layers.Dense(model.output_shape[-1])(x)
    return keras.Model(image, scores, name=f"{model.name}_convolutions")


def image_train_step_at(spec, precision: str) -> tuple[Callable[[], Any], int]:
    """image_train_step of the spec's model built under `precision` (a recipe.precision)."""
    with loop.precision(precision):
        model = spec.build()
    return image_train_step(spec, model)


PRECISION_COMPARED = ("resnet20_cifar10", "allconv_mnist", "lstm_ptb")
# task -> (a train step at a precision, what its examples are)
TRAIN_STEPS = {"image": (image_train_step_at, "images"), "language": (language_train_step, "tokens")}


def precision_speedups(steps: int, rounds: int) -> dict:
    """Train steps of each PRECISION_COMPARED model in float32 and in mixed_bfloat16, alternating
    rounds in one process: the median examples (or tokens) per second of each and their ratio."""
    results: dict[str, Any] = {"hardware": cards.hardware_summary()["summary"], "created": cards.utc_now(),
                               "load_average": os.getloadavg()[0], "models": {}}
    for name in PRECISION_COMPARED:
        spec = registry.get(name)
        make_step, unit = TRAIN_STEPS[spec.task]
        train_steps = {precision: make_step(spec, precision) for precision in ("float32", "mixed_bfloat16")}
        rates: dict[str, list[float]] = {precision: [] for precision in train_steps}
        for _ in range(rounds):
            for precision, (train_step, examples) in train_steps.items():
                rates[precision].append(steps * examples / sum(timed(train_step, steps)))
        medians = {precision: float(np.median(values)) for precision, values in rates.items()}
        results["models"][name] = {**medians, "speedup": medians["mixed_bfloat16"] / medians["float32"],
                                   "rounds": rounds, "unit": unit}
    return results


# task -> (training throughput, input pipeline throughput) measurements
THROUGHPUT = {"image": (training_throughput, pipeline_throughput),
              "language": (language_training_throughput, language_pipeline_throughput)}


def _train_steps(quick: bool) -> int:
    """Train steps a round of the training and precision tables times."""
    return 3 if quick else 20


def run(quick: bool) -> dict:
    steps, repeats = _train_steps(quick), 20 if quick else 200
    results = training_figures(quick)
    results["function_call_floor_ms"] = function_call_floor(repeats)
    with tempfile.TemporaryDirectory() as work_dir:  # the ONNX conversions
        results["inference"] = {name: inference(name, repeats, Path(work_dir)) for name in registry.list_models()
                                if artifact.is_trained(name) and "onnxruntime" in _task(name).runtimes}
    results.update(language_figures())
    results["precision"] = precision_speedups(steps, 1 if quick else 3)
    results["time_to_accuracy"] = time_to_accuracy()
    return results


def training_figures(quick: bool, names: list[str] | None = None) -> dict:
    """The machine, the matmul rate and the training table (`names`, default every model)."""
    steps = _train_steps(quick)
    results: dict[str, Any] = {"hardware": cards.hardware_summary(), "versions": cards.library_versions(),
               "created": cards.utc_now(), "quick": quick, "matmul_size": MATMUL_SIZE,
               "matmul_flops_per_second": matmul_rate()}
    results["training"] = {}
    for name in names or registry.list_models():
        spec = registry.get(name)
        train_rate, pipeline_rate = THROUGHPUT[spec.task]
        entry = train_rate(spec, steps, 1 if quick else 3)
        entry["pipeline_examples_per_second"] = pipeline_rate(spec, 20 if quick else 100)
        entry["pipeline_ratio"] = entry["pipeline_examples_per_second"] / entry["examples_per_second"]
        if name in XLA_COMPARED:
            entry["xla_fraction_of_matmul_rate"] = training_throughput(
                spec, steps, 1 if quick else 3, jit_compile=True)["fraction_of_matmul_rate"]
        if name in LIMITS_PROBED:
            entry.update(training_limits(spec, steps, 1 if quick else 3))
        results["training"][name] = entry
        print(name, json.dumps(entry), flush=True)
    return results


def _task(name: str) -> tasks.Task:
    return tasks.get(registry.get(name).task)


def language_figures() -> dict:
    """Generation through `step` (cheap; `--language-only` reruns it)."""
    # When and under what load: `--language-only` reruns these apart from the rest of the bench.
    results = {"generation_measured": {"created": cards.utc_now(), "load_average": os.getloadavg()[0]}}
    results["generation"] = {name: generation(name) for name in registry.list_models()
                             if artifact.is_trained(name) and "step" in _task(name).signatures}
    return results


# Issue 7's targets, the papers' figures, judged on the per-epoch validation metric of the committed
# recipe and of the paper's own schedule (make paper-NAME): (history key, value, what it is).
PAPER_TARGETS = {"resnet20_cifar10": ("val_accuracy", 0.9125, "test accuracy"),
                 "lstm_ptb": ("val_perplexity", 114.5, "validation perplexity")}
# Newer models -> the artifact each improves on: timed to their bar and to that artifact's figure.
SUCCESSORS = {"allconv_mnist": "cnn_mnist", "airbench_cifar10": "resnet20_cifar10",
              "resnet56_cifar10": "resnet20_cifar10"}


def time_to_accuracy() -> dict:
    """Minutes to each target from the committed cards and paper-schedule logs (no timing here;
    `--time-to-accuracy-only` reruns it)."""
    results = {}
    for name, (key, value, what) in PAPER_TARGETS.items():
        lower_is_better = not registry.get(name).higher_is_better
        runs = (("committed recipe", card_history(name), "no committed artifact"),
                ("paper schedule", *paper_history(name)))
        for schedule, history, missing in runs:
            results[f"{name} to {value:g} {what}, {schedule}"] = time_to_target(
                history, key, value, lower_is_better, missing)
    for name, previous in SUCCESSORS.items():
        figure = artifact.committed_value(registry.get(previous))
        results.update(_bar_and_figure(name, "test", *test_history(name), figure, f"{previous}'s"))
    for name in registry.list_models():
        results.update(retrained_targets(name))
    return results


def retrained_targets(name: str) -> dict:
    """A retrained model (its card names the artifact it replaced, `previous`): minutes to its bar
    and to the replaced artifact's figure. Judged on the validation split where the run read it
    each epoch (PTB; the old artifact's validation figure, and the test bar on validation), else
    on the test split as test_history reads it (each epoch, or once after training)."""
    card = artifact.committed_card(name)
    previous = (card or {}).get("previous")
    if not card or not previous:
        return {}
    spec = registry.get(name)
    if training_tasks.EPOCH_VALIDATION_SPLIT[spec.task](card["recipe"]) == "validation":
        split, history, key, how = "validation", card["training"]["history"], f"val_{spec.metric}", "read each epoch"
    else:
        split, (history, key, how) = "test", test_history(name)
    figure = previous["metrics"].get(f"{split}_{spec.metric}")
    return _bar_and_figure(name, split, history, key, how, figure, f"version {previous['version']}'s")


def _bar_and_figure(name: str, split: str, history: dict, key: str, how: str, figure: float | None,
                    whose: str) -> dict:
    """Minutes to `name`'s bar and to another artifact's figure (when there is one) in `history`."""
    spec = registry.get(name)
    bar = "its bar" if split == "test" else "its test bar"
    targets = [(spec.bar, bar), *([(figure, whose)] if figure is not None else [])]
    return {f"{name} to {value:.4g} {split} {spec.metric} ({label}; {how})":
            time_to_target(history, key, value, not spec.higher_is_better, "no committed artifact")
            for value, label in targets}


def test_history(name: str) -> tuple[dict, str, str]:
    """(history, its test-metric column, how the test split was read) of the committed artifact:
    the card's per-epoch history where the recipe validated on the test split each epoch (recipes
    from before the `validation` setting did), else one row from the final figure."""
    card = artifact.committed_card(name)
    spec = registry.get(name)
    if not card:
        return {}, spec.metric_key, "not trained yet"
    if training_tasks.EPOCH_VALIDATION_SPLIT[spec.task](card["recipe"]) == "test":
        return card["training"]["history"], f"val_{spec.metric}", "test split read each epoch"
    return final_history(name), spec.metric_key, "test split read once, after training"


def final_history(name: str) -> dict:
    """A one-row history from the committed card's final test metric, for a recipe that does not
    read the test split every epoch: the epochs run, the training minutes, the metric."""
    card = artifact.committed_card(name)
    if not card:
        return {}
    training = card["training"]
    spec = registry.get(name)
    return {"epoch": [training["epochs_run"]], "elapsed_seconds": [training["wall_time_seconds"]],
            spec.metric_key: [artifact.card_value(spec, card)]}
