"""Execute a notebook top to bottom with nbclient, in a clean kernel, under a profile.

    python tools/run_notebook.py homework1_supervised.ipynb --profile quick    # -> build/quick/
    python tools/run_notebook.py homework1_supervised.ipynb --profile full     # -> build/full/, then published

Every run writes into one output folder (`--outputs`, default build/<profile>/): the executed notebook, its
figures under figures/hwN/ and its metrics hwN_metrics.json (the notebook reads HW_OUTPUT_DIR). A failed run
leaves the committed files alone. Only a successful `full` run without --outputs is published: its notebook,
figures and metrics replace the committed ones in the repository. The saved notebook has execution counts
1..N, kernel python3 and no widget state. The environment variables HW_* reach the kernel.
"""
import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from build_notebooks import NOTEBOOKS  # noqa: E402  (the import checks the Python version)

PROFILES = ("smoke", "quick", "full")


def notebook_key(path: Path) -> str:
    """hw1 / hw2 for the project's notebooks (their figure folder and metrics name); the stem otherwise."""
    return next((key for key, name in NOTEBOOKS.items() if name == path.stem), path.stem)


def replace_path(source: Path, target: Path) -> None:
    """Move source onto target, replacing it; a folder is swapped whole so no stale file survives."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        source.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


def execute(notebook: Path, out_dir: Path, cwd: Path, timeout: int) -> tuple[int, Path]:
    """Run the notebook with HW_OUTPUT_DIR=out_dir; write it executed to out_dir; return (status, path)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    key = notebook_key(notebook)
    out_dir.mkdir(parents=True, exist_ok=True)
    # a run starts from an empty output folder, so nothing of an earlier run can be mistaken for this one's
    shutil.rmtree(out_dir / "figures" / key, ignore_errors=True)
    (out_dir / f"{key}_metrics.json").unlink(missing_ok=True)
    os.environ["HW_OUTPUT_DIR"] = str(out_dir.resolve())
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    status = 0
    try:
        client.execute()
    except CellExecutionError as err:
        print(f"error: {notebook.name} failed:\n{err}", file=sys.stderr)
        status = 1
    except DeadKernelError as err:
        print(f"error: the kernel running {notebook.name} died ({err}). If the machine was busy, run again "
              f"with fewer threads (HW_THREADS=1) or when it is idle.", file=sys.stderr)
        status = 1
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = out_dir / (notebook.name if status == 0 else f"{notebook.stem}.failed.ipynb")
    tmp = out.with_name(out.name + ".tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, out)
    return status, out


def publish(notebook: Path, out_dir: Path, root: Path) -> None:
    """Replace the committed notebook, figures and metrics with those of a successful full run."""
    key = notebook_key(notebook)
    replace_path(out_dir / "figures" / key, root / "report" / "figures" / key)
    replace_path(out_dir / f"{key}_metrics.json", root / "report" / f"{key}_metrics.json")
    replace_path(out_dir / notebook.name, root / notebook.name)
    print(f"published to {root / notebook.name}, report/figures/{key}/ and report/{key}_metrics.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--profile", default=os.environ.get("HW_PROFILE", "full"))
    parser.add_argument("--outputs", type=Path, help="output folder (default build/<profile>/)")
    parser.add_argument("--cwd", type=Path, default=ROOT, help="the kernel's working folder")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args()
    if args.profile not in PROFILES:
        print(f"error: unknown profile {args.profile!r}; choose one of {', '.join(PROFILES)}", file=sys.stderr)
        return 2
    if not args.notebook.exists():
        print(f"error: {args.notebook} not found; build it with python tools/build_notebooks.py", file=sys.stderr)
        return 2
    os.environ["HW_PROFILE"] = args.profile
    out_dir = args.outputs or args.cwd / "build" / args.profile
    start = time.perf_counter()
    status, out = execute(args.notebook.resolve(), out_dir, args.cwd, args.timeout)
    print(f"{args.notebook.name} ({args.profile}) {'executed' if status == 0 else 'FAILED'} in "
          f"{time.perf_counter() - start:.0f}s -> {out}")
    if status == 0 and args.profile == "full" and args.outputs is None:
        publish(args.notebook, out_dir, args.notebook.resolve().parent)
    elif status != 0:
        print("the committed notebook, figures and metrics are unchanged", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
