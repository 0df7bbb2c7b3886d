"""The notebooks match their sources, and the shared helper cells are identical in both notebooks."""
import subprocess
import sys

import nbformat
from conftest import NOTEBOOKS, ROOT


def test_notebooks_built_from_sources():
    proc = subprocess.run([sys.executable, "tools/build_notebooks.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def shared_cells(path):
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source) for c in nb.cells if "shared-helpers" in c.metadata.get("tags", [])]


def test_shared_helpers_identical():
    present = [ROOT / f"{n}.ipynb" for n in NOTEBOOKS.values() if (ROOT / f"{n}.ipynb").exists()]
    assert present, "no notebook found"
    reference = shared_cells(present[0])
    assert len(reference) >= 10, "the shared helper cells are missing"
    for path in present[1:]:
        assert shared_cells(path) == reference, f"{path.name}: shared helper cells differ"


def test_readme_results_match_metrics():
    proc = subprocess.run([sys.executable, "tools/update_readme.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_test_split_only_in_loader_and_seal():
    """No cell but the shared loader and seal names FashionMNIST's test split (t10k, test_images, test_labels):
    the only way to it is a SealedTestSet read by a listed final model."""
    for name in NOTEBOOKS.values():
        nb = nbformat.read(ROOT / f"{name}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code" or "shared-helpers" in cell.metadata.get("tags", []):
                continue
            for word in ("t10k", "test_images", "test_labels", "unseal"):
                assert word not in cell.source, f"{name}: a cell names {word!r}:\n{cell.source[:300]}"
