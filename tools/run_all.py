"""The main job: build the notebooks, execute both under a profile, update the README, build the reports.

    python tools/run_all.py                    # full: the committed results (report/, README, notebooks)
    python tools/run_all.py --profile quick    # a grader's check: everything under build/quick/
    python tools/run_all.py --profile verify   # the reported test numbers again, from the committed weights

This is what `make all` runs; on a machine without make (Windows) call it directly from the virtual
environment. Only the full profile writes the committed files, and only after a notebook ran without error.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_notebooks import NOTEBOOKS, ROOT  # noqa: E402  (checks the Python version first)


def step(*args: str) -> None:
    print(f"\n$ python {' '.join(args)}", flush=True)
    if subprocess.run([sys.executable, *args], cwd=ROOT).returncode != 0:
        sys.exit(f"error: `python {' '.join(args)}` failed; the committed files are unchanged")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="full", choices=["smoke", "quick", "full", "verify"])
    args = parser.parse_args()
    start = time.perf_counter()
    step("tools/fetch_data.py")
    step("tools/build_notebooks.py")
    for name in NOTEBOOKS.values():
        step("tools/run_notebook.py", f"{name}.ipynb", "--profile", args.profile)
    if args.profile == "full":
        step("tools/update_readme.py")
        step("report/build.py")
    elif args.profile == "verify":  # no report: the verdict is the table that ends each notebook
        for key in NOTEBOOKS:
            metrics = json.loads((ROOT / "build" / "verify" / f"{key}_metrics.json").read_text())
            rows = metrics["verify"]["rows"]
            agree = sum(r["agrees"] is True for r in rows)
            missed = "".join(f"\n  not reproduced: {r['final model']} ({r['weights']})"
                             for r in rows if not r["agrees"])
            print(f"{key}: {agree} of {len(rows)} reported test numbers reproduced from the committed weights{missed}")
    else:
        step("report/build.py", "--root", f"build/{args.profile}")
    where = "the notebooks, report/ and README.md" if args.profile == "full" else f"build/{args.profile}/"
    print(f"\ndone in {(time.perf_counter() - start) / 60:.1f} min: see {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
