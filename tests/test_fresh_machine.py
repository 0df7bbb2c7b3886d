"""First contact: each notebook alone in an empty folder (as in Colab or a download), without the optional
packages; and a failed run that must leave the committed files alone."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import nbformat
import pytest
from conftest import NOTEBOOKS, ROOT, assert_clean_run, notebook_outputs_text

# imported by every Python started with this folder on PYTHONPATH, the notebook's kernel included
BLOCKER = '''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("optuna", "torchvision"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
sys.meta_path.insert(0, Block())
'''


@pytest.mark.parametrize("key", sorted(NOTEBOOKS))
def test_notebook_alone_in_an_empty_folder(key, tmp_path):
    name = NOTEBOOKS[key]
    folder, blocker = tmp_path / "alone", tmp_path / "blocker"
    folder.mkdir()
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    shutil.copy(ROOT / f"{name}.ipynb", folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW_")}
    env["PYTHONPATH"] = str(blocker)
    if (ROOT / "data" / "FashionMNIST" / "raw").exists():  # data fetched by `make data` rather than apt
        env["HW_DATA_DIR"] = str(ROOT / "data")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "run_notebook.py"), str(folder / f"{name}.ipynb"),
                           "--profile", "smoke", "--cwd", str(folder), "--timeout", "900"],
                          cwd=folder, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-6000:]
    out = folder / "build" / "smoke"
    nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
    assert_clean_run(nb)
    assert (out / f"{key}_metrics.json").exists() and list((out / "figures" / key).glob("*.png"))
    assert {p.name for p in folder.iterdir()} <= {"build", "data", f"{name}.ipynb"}
    text = notebook_outputs_text(nb)
    if key == "hw2":
        assert "optuna is not installed" in text and "importances skipped" in text
        assert "Homework 1's metrics are not here" in text and "HW1 CNN recipe (shared default)" in text
        metrics = json.loads((out / "hw2_metrics.json").read_text())
        assert metrics["hw1_source"] is None and [r["search"] for r in metrics["search"]["rows"]] == ["random"]


def digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "build" not in p.parts}


def tiny_notebook(fail: bool):
    """Writes a figure and metrics where the runner says, like the real notebooks, then fails if asked."""
    cells = [nbformat.v4.new_code_cell(
        "import os, pathlib\n"
        "out = pathlib.Path(os.environ['HW_OUTPUT_DIR'])\n"
        "(out / 'figures' / 'hw1').mkdir(parents=True, exist_ok=True)\n"
        "(out / 'figures' / 'hw1' / 'new.png').write_bytes(b'new figure')\n"
        "(out / 'hw1_metrics.json').write_text('{\"profile\": \"full\", \"new\": true}')")]
    if fail:
        cells.append(nbformat.v4.new_code_cell("raise RuntimeError('a cell fails')"))
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    return nb


def test_interrupted_run_is_named(tmp_path):
    """SIGTERM to the runner (a time limit, say) shuts the kernel down mid-cell, as the "kernel deaths" under load
    were: the runner says so, exits non-zero and publishes nothing."""
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "hw1_metrics.json").write_text('{"profile": "full", "committed": true}')
    notebook = tmp_path / "homework1_supervised.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import pathlib, time\npathlib.Path('started').touch()\ntime.sleep(120)")]
    nbformat.write(nb, notebook)
    before = digests(tmp_path)
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "run_notebook.py"), str(notebook), "--profile",
                             "full", "--cwd", str(tmp_path)], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "started").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert (tmp_path / "started").exists(), "the kernel did not start the cell"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "was shut down in the middle of a cell" in stderr and "interrupted" in stderr
    assert "committed notebook, figures and metrics are unchanged" in stderr
    (tmp_path / "started").unlink()
    assert digests(tmp_path) == before


@pytest.mark.parametrize("fail", [True, False])
def test_full_run_publishes_only_on_success(tmp_path, fail):
    (tmp_path / "report" / "figures" / "hw1").mkdir(parents=True)
    (tmp_path / "report" / "figures" / "hw1" / "old.png").write_bytes(b"committed figure")
    (tmp_path / "report" / "hw1_metrics.json").write_text('{"profile": "full", "committed": true}')
    notebook = tmp_path / "homework1_supervised.ipynb"
    nbformat.write(tiny_notebook(fail), notebook)
    before = digests(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "run_notebook.py"), str(notebook), "--profile",
                           "full", "--cwd", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True)
    after = digests(tmp_path)
    if fail:
        assert proc.returncode == 1 and "a cell fails" in proc.stderr
        assert "committed notebook, figures and metrics are unchanged" in proc.stderr
        assert after == before
        assert (tmp_path / "build" / "full" / "homework1_supervised.failed.ipynb").exists()
    else:
        assert proc.returncode == 0, proc.stderr
        assert json.loads((tmp_path / "report" / "hw1_metrics.json").read_text())["new"] is True
        assert sorted(p.name for p in (tmp_path / "report" / "figures" / "hw1").iterdir()) == ["new.png"]
        assert nbformat.read(notebook, as_version=4).cells[0].execution_count == 1
