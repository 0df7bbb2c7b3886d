"""Execute a notebook top to bottom with nbclient, in a clean kernel, under a profile.

    python tools/run_notebook.py homework1_supervised.ipynb --profile quick    # -> build/quick/
    python tools/run_notebook.py homework1_supervised.ipynb --profile full     # -> build/full/, then published

Every run writes into one output folder (`--outputs`, default build/<profile>/): the executed notebook, its
figures under figures/hwN/, its final models' weights under checkpoints/hwN/ and its metrics hwN_metrics.json
(the notebook reads HW_OUTPUT_DIR). A failed run
leaves the committed files alone. Only a successful `full` run without --outputs is published: its notebook,
figures and metrics replace the committed ones in the repository. The saved notebook has execution counts
1..N, kernel python3 and no widget state. The environment variables HW_* reach the kernel. The terminal shows
a bar over the cells, labelled with the current section, and each section's elapsed time as it ends.
"""
import argparse
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from build_notebooks import NOTEBOOKS  # noqa: E402  (the import checks the Python version)

PROFILES = ("smoke", "quick", "full", "verify")


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


def section_headings(nb) -> list[str]:
    """For each cell, the last markdown heading (## or ###) at or before it: the section it belongs to."""
    heading, headings = "start", []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            titles = [re.sub(r"\s*<a id=.*?</a>", "", ln).lstrip("#").strip()  # without the contents' anchors
                      for ln in cell.source.split("\n") if ln.startswith(("## ", "### "))]
            heading = titles[-1] if titles else heading
        headings.append(heading)
    return headings


class Progress:
    """nbclient hooks: a bar over the code cells in the terminal, labelled with the section being run, and one
    line with the elapsed time of each section as it ends (the line also reaches a log that is not a terminal)."""

    def __init__(self, nb, name: str):
        from tqdm import tqdm

        self.tqdm, self.name, self.headings = tqdm, name, section_headings(nb)
        self.bar = tqdm(total=sum(c.cell_type == "code" for c in nb.cells), unit="cell", file=sys.stderr,
                        disable=not sys.stderr.isatty(), mininterval=1, dynamic_ncols=True)
        self.section, self.section_start, self.start = None, time.perf_counter(), time.perf_counter()

    def end_section(self) -> None:
        if self.section is not None:
            now = time.perf_counter()
            self.tqdm.write(f"[{self.name}] {self.section}: {now - self.section_start:.0f} s "
                            f"(total {(now - self.start) / 60:.1f} min)", file=sys.stderr)
            self.section_start = now

    def on_cell_start(self, cell, cell_index: int) -> None:
        if self.headings[cell_index] != self.section:
            self.end_section()
            self.section = self.headings[cell_index]
            self.bar.set_description(self.section[:40])

    def on_cell_executed(self, cell, cell_index: int, execute_reply) -> None:
        self.bar.update()

    def close(self) -> None:
        self.end_section()
        self.bar.close()


def execute(notebook: Path, out_dir: Path, cwd: Path, timeout: int) -> tuple[int, Path]:
    """Run the notebook with HW_OUTPUT_DIR=out_dir; write it executed to out_dir; return (status, path)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    key = notebook_key(notebook)
    out_dir.mkdir(parents=True, exist_ok=True)
    # a run starts from an empty output folder, so nothing of an earlier run can be mistaken for this one's
    shutil.rmtree(out_dir / "figures" / key, ignore_errors=True)
    shutil.rmtree(out_dir / "checkpoints" / key, ignore_errors=True)
    (out_dir / f"{key}_metrics.json").unlink(missing_ok=True)
    os.environ["HW_OUTPUT_DIR"] = str(out_dir.resolve())
    nb = nbformat.read(notebook, as_version=4)
    progress = Progress(nb, key)
    # coalesce_streams merges each cell's stream outputs and drops the text that a carriage return overwrote,
    # so a progress bar leaves one closing line in the saved notebook
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}},
                            coalesce_streams=True, on_cell_start=progress.on_cell_start,
                            on_cell_executed=progress.on_cell_executed)
    status = 0
    try:
        client.execute()
    except CellExecutionError as err:
        print(f"error: {notebook.name} failed:\n{err}", file=sys.stderr)
        status = 1
    except (DeadKernelError, AssertionError) as err:  # AssertionError: nbclient's second cleanup after a signal
        # nbclient answers SIGINT/SIGTERM by shutting the kernel down at once: the cell in flight then ends with
        # "Kernel died" (the kernel logs "ZMQError: Socket operation on non-socket" as its sockets close)
        print(f"error: the kernel running {notebook.name} was shut down in the middle of a cell "
              f"({type(err).__name__}: {err or 'cleanup after a signal'}). The run was interrupted (Ctrl-C, or "
              f"SIGTERM, e.g. from a time limit of whatever started it) or the kernel process was killed (e.g. out "
              f"of memory). Run it again without the limit; nothing was published.", file=sys.stderr)
        status = 1
    progress.close()
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
    if (out_dir / "checkpoints" / key).exists():  # the final models' weights, which the verify profile loads
        replace_path(out_dir / "checkpoints" / key, root / "checkpoints" / key)
    replace_path(out_dir / notebook.name, root / notebook.name)
    print(f"published to {root / notebook.name}, report/figures/{key}/, report/{key}_metrics.json and "
          f"checkpoints/{key}/")


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
