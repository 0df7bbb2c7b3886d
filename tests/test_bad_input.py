"""Bad input gets a clear message naming the file and the fix (data files, profiles, paths)."""
import gzip
import os
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def helpers(tmp_path_factory):
    """The notebook's imports, parameters and shared helper cells, executed in a namespace."""
    nb = nbformat.read(ROOT / "homework1_supervised.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = next(c for c in code if "parameters" in c.metadata.get("tags", []))
    ns = {}
    os.environ.setdefault("MPLBACKEND", "Agg")
    exec(code[0].source, ns)
    exec(params.source, ns)
    ns["FIGURE_DIR"] = tmp_path_factory.mktemp("figures")
    for c in code:
        if "shared-helpers" in c.metadata.get("tags", []):
            exec(c.source, ns)
    return ns


def write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_truncated_file_named(helpers, tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(path, np.zeros(100), 2049)
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


def test_wrong_shapes_named(helpers, tmp_path, monkeypatch):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, n in (("train", 60), ("t10k", 10)):
        write_idx(raw / f"{name}-images-idx3-ubyte.gz", np.zeros((n, 28, 28)), 2051)
        write_idx(raw / f"{name}-labels-idx1-ubyte.gz", np.arange(n) % 10, 2049)
    with pytest.raises(ValueError, match=r"train images \(60, 28, 28\).*expected \(60000, 28, 28\)"):
        helpers["load_fashion_mnist"](tmp_path)


def test_missing_data_says_what_to_do(helpers, tmp_path, monkeypatch):
    monkeypatch.setitem(helpers, "DEBIAN_FASHION_DIR", tmp_path / "no-debian-package")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as on a machine without torchvision
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        helpers["load_fashion_mnist"](tmp_path / "empty")


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
