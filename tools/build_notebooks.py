"""Build the notebooks from their percent-format sources in src/.

    python tools/build_notebooks.py            # write homework*.ipynb (outputs dropped)
    python tools/build_notebooks.py --check    # exit 1 if a notebook's cells differ from its source

Cell markers: `# %%` starts a code cell, `# %% [markdown]` a markdown cell (lines lose their leading
"# "), `# %% tags=["a", "b"]` adds tags, and `# %% include: FILE` inserts the cells of src/FILE: both notebooks
include src/shared_helpers.py (its cells tagged "shared-helpers"), and Homework 1 its appendices, one file each.
"""
import argparse
import json
import re
import sys
from pathlib import Path

MIN_PYTHON = (3, 10)


def check_python() -> None:
    """Stop with a clear message on a Python that is too old for the notebooks (they use 3.10 syntax)."""
    if sys.version_info < MIN_PYTHON:
        sys.exit(f"error: Python {'.'.join(map(str, MIN_PYTHON))} or newer is needed; {sys.executable} is "
                 f"{sys.version.split()[0]}. Install a newer Python and run again "
                 f"(with make: PYTHON_FOR_VENV=python3.11 make ...).")


check_python()  # every tool imports this module first

import nbformat  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# the project's notebooks: key -> name; the notebook is NAME.ipynb, its source src/NAME.py
NOTEBOOKS = {"hw1": "homework1_supervised", "hw2": "homework2_unsupervised"}
MARKER = re.compile(r"^# %%(?P<rest>.*)$")
SHARED = "shared_helpers.py"  # included by both notebooks; its cells are tagged "shared-helpers"


def parse_cells(path: Path, extra_tags: tuple = ()) -> list:
    cells, kind, tags, lines = [], None, [], []

    def flush():
        if kind is None:
            return
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            text = "\n".join(re.sub(r"^# ?", "", ln) for ln in text.split("\n"))
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            cell = nbformat.v4.new_code_cell(text)
        if tags or extra_tags:
            cell.metadata["tags"] = list(extra_tags) + tags
        cells.append(cell)

    for line in path.read_text().split("\n"):
        match = MARKER.match(line)
        if not match:
            lines.append(line)
            continue
        flush()
        rest = match["rest"].strip()
        lines, tags = [], []
        if rest.startswith("include:"):
            included = rest.split(":", 1)[1].strip()
            cells.extend(parse_cells(path.parent / included, ("shared-helpers",) if included == SHARED else ()))
            kind = None
            continue
        kind = "markdown" if rest.startswith("[markdown]") else "code"
        tag_match = re.search(r"tags=(\[.*\])", rest)
        tags = json.loads(tag_match.group(1)) if tag_match else []
    flush()
    return cells


def shared_helpers_namespace(params: dict | None = None) -> dict:
    """The shared helper cells of src/shared_helpers.py, executed after Homework 1's setup and parameters
    cells (with `params` overriding parameters), as a dict: how tools and tests use the notebooks' helpers."""
    import os

    os.environ.setdefault("MPLBACKEND", "Agg")
    cells = [c for c in parse_cells(ROOT / "src" / f"{NOTEBOOKS['hw1']}.py") if c.cell_type == "code"]
    namespace: dict = {}
    exec(cells[0].source, namespace)  # the setup cell: imports
    exec(next(c for c in cells if "parameters" in c.metadata.get("tags", [])).source, namespace)
    namespace.update(params or {})
    for cell in cells:
        if "shared-helpers" in cell.metadata.get("tags", []):
            exec(cell.source, namespace)
    return namespace


def build(name: str, source: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = parse_cells(ROOT / source)
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    return nb


def same_cells(a: nbformat.NotebookNode, b: nbformat.NotebookNode) -> bool:
    key = lambda nb: [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]  # noqa: E731
    return key(a) == key(b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    status = 0
    for name in NOTEBOOKS.values():
        source = f"src/{name}.py"
        if not (ROOT / source).exists():
            continue
        built, target = build(name, source), ROOT / f"{name}.ipynb"
        if args.check:
            if not target.exists() or not same_cells(built, nbformat.read(target, as_version=4)):
                print(f"{target.name} differs from {source}: run python tools/build_notebooks.py")
                status = 1
            continue
        if target.exists():
            old = nbformat.read(target, as_version=4)
            if same_cells(built, old):
                print(f"{target.name}: up to date")
                continue
            # a prose-only edit keeps the run's outputs; any code change drops them all, so that no
            # output can survive that the current code did not produce
            code = lambda nb: [c.source for c in nb.cells if c.cell_type == "code"]  # noqa: E731
            if code(built) == code(old):
                outputs = iter([c for c in old.cells if c.cell_type == "code"])
                for cell in built.cells:
                    if cell.cell_type == "code":
                        prev = next(outputs)
                        cell.outputs, cell.execution_count = prev.outputs, prev.execution_count
                built.metadata = old.metadata
        nbformat.write(built, target)
        print(f"{target.name}: built from {source}")
    return status


if __name__ == "__main__":
    sys.exit(main())
