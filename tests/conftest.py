"""Shared fixtures: a smoke-profile execution of each notebook, done once per test session.

Outputs (figures, metrics) go to a temporary folder so the committed full-run artefacts stay untouched.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from build_notebooks import NOTEBOOKS  # noqa: E402  (key -> notebook name, without .ipynb)


def idx_gz(array, magic: int) -> bytes:
    """A gzipped IDX file (magic 2049: labels, 2051: images) holding `array` as unsigned bytes."""
    import gzip

    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype("uint8").tobytes())


def write_course_files(folder: Path, seed: int = 7) -> None:
    """train_data.csv and test_data.csv in the course's layout (100 rows each, two gaps) for a function that is
    not in the notebook's simulated family."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(-5, 5, 400)
    x = np.sort(x[~(((x > -3) & (x < -1)) | ((x > 1.7) & (x < 3.1)))][:100])
    x_test = np.linspace(-5, 5, 100)
    f = lambda v: 1.5 + 0.3 * v + np.cos(0.8 * v)  # noqa: E731
    for name, xs, noise in (("train_data.csv", x, 0.5), ("test_data.csv", x_test, 0.12)):
        rows = "".join(f"{a:.6f},{b:.6f}\n" for a, b in zip(xs, f(xs) + rng.normal(0, noise, len(xs))))
        (folder / name).write_text("input,label\n" + rows)


def assert_clean_run(nb) -> None:
    """Executed top to bottom in one kernel (counts 1..N) and without an error output."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "not a clean top-to-bottom run"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"], "a cell raised an error"


def notebook_outputs_text(nb) -> str:
    """All text a notebook printed (stream and text/plain outputs)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out and "text/plain" in out["data"]:
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """Execute each existing notebook in the smoke profile; return {key: (notebook, metrics, figure_dir)}."""
    results, env = {}, dict(os.environ)
    # course-like regression files, so that the smoke run takes the course-file path too (the empty-folder test
    # covers running without them)
    course = tmp_path_factory.mktemp("regression")
    write_course_files(course)
    env["HW_REGRESSION_DIR"] = str(course)
    for key, name in NOTEBOOKS.items():
        if not (ROOT / f"{name}.ipynb").exists():
            continue
        out_dir = tmp_path_factory.mktemp(f"smoke_{key}")
        proc = subprocess.run([sys.executable, "tools/run_notebook.py", f"{name}.ipynb", "--profile", "smoke",
                               "--outputs", str(out_dir), "--timeout", "900"],
                              cwd=ROOT, capture_output=True, text=True, env=env)
        # Homework 2 compares with the Homework 1 run just made (the empty-folder test covers running without)
        env["HW_HW1_METRICS_PATH"] = str(out_dir / "hw1_metrics.json")
        assert proc.returncode == 0, f"{name} failed in the smoke profile:\n{proc.stderr[-6000:]}"
        nb = nbformat.read(out_dir / f"{name}.ipynb", as_version=4)
        metrics = json.loads((out_dir / f"{key}_metrics.json").read_text())
        results[key] = (nb, metrics, out_dir / "figures" / key)
    return results


def pytest_collection_modifyitems(config, items):
    """Under `pytest -n 2 --dist loadgroup` (make test) every test that reads the session's smoke runs goes to one
    worker, so that the smoke runs happen once; the other worker meanwhile runs the remaining tests, among them the
    empty-folder and committed-run executions."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if "smoke_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("smoke_runs"))
