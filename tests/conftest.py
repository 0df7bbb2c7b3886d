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
NOTEBOOKS = {"hw1": "homework1_supervised.ipynb", "hw2": "homework2_unsupervised.ipynb"}


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
    results = {}
    for key, name in NOTEBOOKS.items():
        if not (ROOT / name).exists():
            continue
        out_dir = tmp_path_factory.mktemp(f"smoke_{key}")
        env = dict(os.environ, HW_PROFILE="smoke", HW_FIGURE_DIR=str(out_dir / "figures"),
                   HW_METRICS_PATH=str(out_dir / "metrics.json"), PYTHONHASHSEED="0", MPLBACKEND="Agg")
        proc = subprocess.run([sys.executable, "tools/run_notebook.py", name, "--profile", "smoke",
                               "--out", str(out_dir / name), "--timeout", "900"],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{name} failed in the smoke profile:\n{proc.stderr[-6000:]}"
        nb = nbformat.read(out_dir / name, as_version=4)
        metrics = json.loads((out_dir / "metrics.json").read_text())
        results[key] = (nb, metrics, out_dir / "figures")
    return results
