"""Shared fixtures: a smoke-profile execution of each notebook, done once per test session.

Outputs (figures, metrics) go to a temporary folder so the committed full-run artefacts stay untouched.
"""
import json
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
    results = {}
    for key, name in NOTEBOOKS.items():
        if not (ROOT / f"{name}.ipynb").exists():
            continue
        out_dir = tmp_path_factory.mktemp(f"smoke_{key}")
        proc = subprocess.run([sys.executable, "tools/run_notebook.py", f"{name}.ipynb", "--profile", "smoke",
                               "--outputs", str(out_dir), "--timeout", "900"],
                              cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, f"{name} failed in the smoke profile:\n{proc.stderr[-6000:]}"
        nb = nbformat.read(out_dir / f"{name}.ipynb", as_version=4)
        metrics = json.loads((out_dir / f"{key}_metrics.json").read_text())
        results[key] = (nb, metrics, out_dir / "figures" / key)
    return results
