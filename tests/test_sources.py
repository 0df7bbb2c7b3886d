"""The notebooks match their sources, and the shared helper cells are identical in both notebooks."""
import re
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


MAX_CODE_LINES = 40  # STYLE.md: code cells of 10-20 lines, at most 40
MIN_MARKDOWN_SHARE = 0.40  # STYLE.md: at least 40 % of a notebook's characters are markdown


def test_notebooks_read_like_a_tutorial():
    """Contents with working links near the top, code cells of at most 40 lines (the parameters cell, which holds
    every knob, excepted), and at least 40 % of the characters in markdown; the shares are printed."""
    for name in NOTEBOOKS.values():
        nb = nbformat.read(ROOT / f"{name}.ipynb", as_version=4)
        markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        code_cells = [c for c in nb.cells if c.cell_type == "code"]
        share = len(markdown) / (len(markdown) + sum(len(c.source) for c in code_cells))
        longest = max(code_cells, key=lambda c: len(c.source.splitlines()) * ("parameters" not in c.metadata.get(
            "tags", [])))
        n_longest = len(longest.source.splitlines())
        print(f"{name}: {len(nb.cells)} cells, markdown {100 * share:.1f}% of the characters, longest code cell "
              f"{n_longest} lines ({longest.source.splitlines()[0][:60]!r})")
        contents = next((i for i, c in enumerate(nb.cells[:4]) if c.source.startswith("## Contents")), None)
        assert contents is not None, f"{name}: no '## Contents' cell among the first four"
        links = re.findall(r"\]\(#([\w-]+)\)", nb.cells[contents].source)
        anchors = set(re.findall(r'<a id="([\w-]+)"></a>', markdown))
        assert len(links) >= 10 and not set(links) - anchors, f"{name}: contents links without an anchor: " \
                                                               f"{sorted(set(links) - anchors)}"
        assert n_longest <= MAX_CODE_LINES, f"{name}: a code cell of {n_longest} lines"
        assert share >= MIN_MARKDOWN_SHARE, f"{name}: markdown is {100 * share:.1f}% of the characters"
