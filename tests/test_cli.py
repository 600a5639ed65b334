import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zoo import artifact, cli, registry

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args):
    """`python -m zoo ARGS` in this process (zoo.cli.main): returncode, stdout, stderr. An
    exception escaping main() would be a traceback for the user, and fails the test here."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(list(args))
    return subprocess.CompletedProcess(["python", "-m", "zoo", *args], code, stdout.getvalue(), stderr.getvalue())


@pytest.mark.slow
def test_python_dash_m_zoo_runs_as_a_program(tmp_path):
    """The real entry point, in a subprocess: exit codes and messages as in-process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for args, code in ((["list"], 0), (["predict", "no_such_model", "x.png"], 2), (["info", str(tmp_path)], 2)):
        result = subprocess.run([sys.executable, "-m", "zoo", *args], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == code, result.stderr
        assert "Traceback" not in result.stderr


def test_list_shows_every_model_and_metric_or_not_trained():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    for name in registry.list_models():
        line = next(line for line in result.stdout.splitlines() if line.startswith(name + " "))
        spec = registry.get(name)
        metrics = (artifact.committed_card(spec.name) or {}).get("metrics")
        if metrics is None:
            assert "not trained" in line
        else:
            value = metrics[f"test_{spec.metric}"]["value"]  # accuracy to 4 places, perplexity to 1
            assert (f"{value:.4f}" if spec.metric == "accuracy" else f"{value:.1f}") in line


def test_predict_on_a_png(fresh_cnn_artifact, tmp_path):
    from PIL import Image

    from zoo.demo import draw_digits
    _, folder = fresh_cnn_artifact
    path = tmp_path / "seven.png"
    Image.fromarray(draw_digits()[7, ..., 0]).save(path)
    result = run_cli("predict", str(folder), str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: ") and "(" in result.stdout
    import numpy as np
    batch = tmp_path / "digits.npy"
    np.save(batch, draw_digits()[:3])
    result = run_cli("predict", str(folder), str(batch), str(path))
    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        f"{batch}[0]", f"{batch}[1]", f"{batch}[2]", str(path)]  # each image named by file and index
    result = run_cli("predict", str(folder), str(tmp_path / "missing.npy"))
    assert result.returncode == 2 and "could not read" in result.stderr and "Traceback" not in result.stderr


def test_bad_requests_exit_with_a_message_not_a_trace(tmp_path):
    result = run_cli("predict", "no_such_model", "x.png")
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("info", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.skipif(not artifact.is_trained("cnn_mnist"), reason="cnn_mnist not trained")
def test_info_and_predict_with_committed_model(tmp_path):
    from PIL import Image

    from zoo.demo import draw_digits
    result = run_cli("info", "cnn_mnist")
    assert result.returncode == 0 and '"test_accuracy"' in result.stdout
    paths = []
    for digit in (3, 8):
        paths.append(tmp_path / f"{digit}.png")
        Image.fromarray(draw_digits()[digit, ..., 0]).save(paths[-1])
    result = run_cli("predict", "cnn_mnist", *map(str, paths))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 2


def test_verify_passes_on_committed_artifacts():
    result = run_cli("verify")
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_model_table_is_current():
    from training.readme import readme_with_table
    readme = (ROOT / "README.md").read_text()
    assert readme_with_table(readme) == readme, "run `make readme-table` (python -m training.readme)"
