"""Bad input gets a clear message naming the file and the fix (data files, profiles, paths)."""
import gzip
import os
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from build_notebooks import shared_helpers_namespace
from conftest import ROOT, idx_gz


@pytest.fixture(scope="module")
def helpers():
    """The notebooks' shared helper cells, executed in a namespace (as tools/fetch_data.py uses them)."""
    return shared_helpers_namespace()


def test_truncated_file_named(helpers, tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(idx_gz(np.zeros(100), 2049))
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz: truncated.*Fix"):
        helpers["read_idx"](path)


def test_not_idx_or_not_gzip(helpers, tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"hello world, not an IDX file"))
    with pytest.raises(ValueError, match="not an IDX file"):
        helpers["read_idx"](path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cannot be read"):
        helpers["read_idx"](path)


def test_wrong_content_named(helpers, tmp_path, monkeypatch):
    """A valid IDX file with other data fails its checksum, is named, and is fetched again (here: no mirror)."""
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, n in (("train", 60), ("t10k", 10)):
        (raw / f"{name}-images-idx3-ubyte.gz").write_bytes(idx_gz(np.zeros((n, 28, 28)), 2051))
        (raw / f"{name}-labels-idx1-ubyte.gz").write_bytes(idx_gz(np.arange(n) % 10, 2049))
    monkeypatch.setitem(helpers, "DEBIAN_FASHION_DIR", tmp_path / "no-debian-package")
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.gz: could not be downloaded"):
        helpers["load_fashion_mnist"](tmp_path, mirrors=("http://127.0.0.1:9/",))
    assert not (raw / "train-images-idx3-ubyte.gz").exists(), "a file with the wrong content was kept"


def test_missing_data_says_what_to_do(helpers, tmp_path, monkeypatch):
    monkeypatch.setitem(helpers, "DEBIAN_FASHION_DIR", tmp_path / "no-debian-package")
    with pytest.raises(FileNotFoundError, match=r"(?s)could not be downloaded.*127\.0\.0\.1:9.*make data"):
        helpers["load_fashion_mnist"](tmp_path / "empty", mirrors=("http://127.0.0.1:9/",))


def test_unknown_profile_rejected():
    proc = subprocess.run([sys.executable, "tools/run_notebook.py", "homework1_supervised.ipynb",
                           "--profile", "huge"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown profile 'huge'" in proc.stderr


def test_unknown_profile_in_notebook():
    nb = nbformat.read(ROOT / "homework1_supervised.ipynb", as_version=4)
    check = next(c.source for c in nb.cells if c.cell_type == "code" and "PROFILE not in PROFILES" in c.source)
    with pytest.raises(ValueError, match="HW_PROFILE"):
        exec(check, {"PROFILE": "huge", "PROFILES": {"smoke": {}, "quick": {}, "full": {}}})


def test_missing_notebook_path():
    proc = subprocess.run([sys.executable, "tools/run_notebook.py", "nope.ipynb", "--profile", "smoke"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "nope.ipynb not found" in proc.stderr


def test_old_python_named_by_the_tools():
    """The tools stop with a message on a Python older than 3.10 (simulated: the check reads sys.version_info)."""
    code = ("import sys; sys.version_info = (3, 9, 18, 'final', 0); sys.path.insert(0, 'tools'); "
            "import build_notebooks")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and "Python 3.10 or newer is needed" in proc.stderr, proc.stderr


def test_old_python_named_by_install(tmp_path):
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Python 3.9.18'\nexit 1\n")
    fake.chmod(0o755)
    proc = subprocess.run(["bash", "tools/install.sh"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHON_FOR_VENV": str(fake)})
    assert proc.returncode == 1 and "Python 3.10 or newer is needed; '" in proc.stderr
    assert "Python 3.9.18" in proc.stderr


def test_old_python_named_by_the_notebooks(monkeypatch):
    for name in ("homework1_supervised", "homework2_unsupervised"):
        nb = nbformat.read(ROOT / f"{name}.ipynb", as_version=4)
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        check = next(i for i, source in enumerate(code) if "sys.version_info < (3, 10)" in source)
        assert check <= 1, f"{name}: the Python version check comes late (code cell {check})"
        monkeypatch.setattr(sys, "version_info", (3, 9, 18, "final", 0))
        namespace = {}
        with pytest.raises(RuntimeError, match="needs Python 3.10 or newer"):
            for source in code[:check + 1]:  # the imports work on 3.9; the check stops before the optional parts
                exec(source, namespace)
        monkeypatch.undo()


def test_busy_cores_is_a_core_count(helpers):
    busy = helpers["busy_cores"](0.05)
    assert 0 <= busy <= os.cpu_count() + 1e-6
