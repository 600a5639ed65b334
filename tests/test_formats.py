"""make formats (training/formats.py): the report is rendered from its JSON alone, int8 goals
are judged per row, and the measurement runs end to end on a small model."""
import json

import numpy as np
import pytest

from tests.conftest import export_fresh
from training import REPO_ROOT, formats
from training.readme import README

REPORT = REPO_ROOT / "reports" / "formats.json"


def test_committed_report_and_readme_are_rendered_from_the_json():
    if not REPORT.exists():
        pytest.skip("reports/formats.json is not measured yet (make formats DATA_DIR=...)")
    results = json.loads(REPORT.read_text())
    assert REPORT.with_suffix(".md").read_text() == formats.markdown(results)
    readme = README.read_text()
    assert f"<!-- formats:start -->\n{formats.tables(results)}\n<!-- formats:end -->" in readme


def row(format, runtime, precision, size, metric, p50, throughput=1000.0):
    return {"format": format, "runtime": runtime, "precision": precision, "bytes": size, "metric": metric,
            "examples": 10000, "agreement": 1.0, "p50_ms": p50, "examples_per_second": throughput}


def synthetic_results():
    image = {"metric": "accuracy", "measured": "2026-01-01T00:00:00+00:00", "rows": [
        row("savedmodel", "tensorflow", "float32", 2_000_000, 0.9900, 1.0),
        row("tflite", "litert", "float32", 1_000_000, 0.9900, 0.5),
        row("tflite_int8", "litert", "int8", 250_000, 0.9875, 0.2),  # -0.25 points, 0.25x, 0.4x: all met
        row("onnx", "onnxruntime", "float32", 1_000_000, 0.9900, 0.4),
        row("onnx_int8", "onnxruntime", "int8", 400_000, 0.9860, 0.3)]}  # -0.4 points, 0.4x, 0.75x: none
    language = {"metric": "perplexity", "measured": "2026-01-02T00:00:00+00:00", "rows": [
        row("savedmodel", "tensorflow", "float32", 4_000_000, 100.0, 2.0),
        row("tflite", "litert", "float32", 4_000_000, 100.0, 0.5),
        row("tflite_int8_dynamic", "litert", "int8-dynamic", 1_800_000, 101.9, 0.1)]}  # +1.9%, 0.45x, 0.2x
    return {"hardware": {"summary": "2 CPU cores (test)"}, "models": {"a_mnist": image, "b_ptb": language}}


def test_int8_goals_are_judged_against_the_savedmodel_and_the_float32_file():
    results = synthetic_results()
    image, language = results["models"]["a_mnist"], results["models"]["b_ptb"]
    judged = {r["format"]: formats.goals(image, r) for r in image["rows"]}
    assert judged["savedmodel"] is None and judged["tflite"] is None and judged["onnx"] is None
    met = {name: {key: ok for key, (_, ok) in judged[name].items()} for name in ("tflite_int8", "onnx_int8")}
    assert met == {"tflite_int8": {"metric": True, "size": True, "latency": True},
                   "onnx_int8": {"metric": False, "size": False, "latency": False}}
    assert judged["onnx_int8"]["metric"][0] == pytest.approx(0.4)
    dynamic = formats.goals(language, language["rows"][2])
    assert dynamic["metric"] == (pytest.approx(0.019), True) and dynamic["size"] == (pytest.approx(0.45), False)
    text = formats.markdown(results)
    assert text.count("**not met**") == 4 and "| `a_mnist` | onnx_int8 | 0.40 MB | 0.40x **not met** |" in text
    assert "+1.90% met" in text and "2 CPU cores (test)" in text and "2026-01-01, 2026-01-02" in text


def test_formats_measures_an_image_model_in_every_format(tmp_path, monkeypatch):
    """A fresh linear_mnist through the whole measurement on tfds' mock data (random images)."""
    import tensorflow_datasets as tfds

    folder = tmp_path / "linear_mnist"
    export_fresh("linear_mnist", folder)
    with tfds.testing.mock_data(num_examples=1000):
        entry = formats.measure("linear_mnist", quick=True, limit=300, folder=folder)
    rows = {r["format"]: r for r in entry["rows"]}
    assert list(rows) == ["savedmodel", "onnx", "onnx_int8", "tflite", "tflite_int8_dynamic", "tflite_int8"]
    assert all(r["examples"] == 300 and 0 <= r["metric"] <= 1 and r["p50_ms"] > 0 for r in rows.values())
    assert rows["tflite"]["agreement"] == rows["onnx"]["agreement"] == 1.0
    assert rows["tflite_int8"]["bytes"] < rows["tflite"]["bytes"] and rows["savedmodel"]["bytes"] > 0
    results = {"hardware": {"summary": "here"}, "models": {"linear_mnist": entry}}
    formats.write(results, tmp_path / "reports")
    assert (tmp_path / "reports" / "formats.md").read_text() == formats.markdown(
        json.loads((tmp_path / "reports" / "formats.json").read_text()))
    assert np.isfinite(entry["load_average"])


def test_each_models_rows_name_the_machine_they_were_measured_on():
    """A partial re-measurement keeps the other models' rows: they keep their own machine."""
    results = synthetic_results()
    assert "Measured by `make formats` on 2 CPU cores (test);" in formats.tables(results)
    results["models"]["a_mnist"]["hardware"] = "8 CPU cores (elsewhere)"
    results["models"]["b_ptb"]["hardware"] = "2 CPU cores (here)"
    results["hardware"] = {"summary": "2 CPU cores (here)"}  # the latest run's, which measured b_ptb only
    assert ("on several machines (`a_mnist` on 8 CPU cores (elsewhere); `b_ptb` on 2 CPU cores (here));"
            in formats.tables(results))


def test_throughput_counts_the_examples_in_the_batch_call(monkeypatch):
    """A test split limited below BATCH times a smaller batch: examples/s counts what was run."""
    monkeypatch.setattr(formats, "timed", lambda function, count: [0.5] * count)
    measured = formats.speeds({"savedmodel": (lambda: None, lambda: None)}, 100, rounds=2, per_round=3)
    assert measured["savedmodel"] == {"p50_ms": 500.0, "examples_per_second": 200.0}
