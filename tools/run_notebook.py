"""Execute a notebook top to bottom with nbclient, in a clean kernel, under a profile.

    python tools/run_notebook.py homework1_supervised.ipynb --profile full            # in place
    python tools/run_notebook.py homework1_supervised.ipynb --profile smoke --outputs build/smoke

The environment variables HW_* are passed to the kernel (see the notebook's parameters cell). With
--outputs DIR, the executed notebook, its figures and its metrics all go to DIR, and the committed ones
stay untouched. The saved notebook has execution counts 1..N, kernel python3 and no widget state.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

PROFILES = ("smoke", "quick", "full")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--profile", default=os.environ.get("HW_PROFILE", "full"))
    parser.add_argument("--outputs", type=Path, help="write the notebook, figures/ and metrics.json to this folder")
    parser.add_argument("--cwd", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args()
    if args.profile not in PROFILES:
        print(f"error: unknown profile {args.profile!r}; choose one of {', '.join(PROFILES)}", file=sys.stderr)
        return 2
    if not args.notebook.exists():
        print(f"error: {args.notebook} not found; build it with python tools/build_notebooks.py", file=sys.stderr)
        return 2
    os.environ["HW_PROFILE"] = args.profile
    out = args.notebook
    if args.outputs is not None:
        args.outputs.mkdir(parents=True, exist_ok=True)
        os.environ["HW_FIGURE_DIR"] = str((args.outputs / "figures").resolve())
        os.environ["HW_METRICS_PATH"] = str((args.outputs / "metrics.json").resolve())
        out = args.outputs / args.notebook.name
    nb = nbformat.read(args.notebook, as_version=4)
    client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(args.cwd)}})
    start = time.perf_counter()
    try:
        client.execute()
        status = 0
    except CellExecutionError as err:
        print(f"error: {args.notebook} failed in profile {args.profile}:\n{err}", file=sys.stderr)
        status = 1
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, out)
    print(f"{args.notebook} ({args.profile}) executed in {time.perf_counter() - start:.0f}s -> {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
