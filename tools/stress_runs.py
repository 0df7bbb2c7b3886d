"""Run each notebook alone in an empty folder, in the smoke profile, several times while another PyTorch job
keeps the cores busy: a busy machine must make a run slow, never fatal.

    python tools/stress_runs.py --runs 10                   # both notebooks, 10 runs each
    python tools/stress_runs.py --runs 3 --notebooks hw2

Prints one line per run (pass/fail, seconds) and a summary; the stderr of a failed run is kept under
build/stress/. The competing job is a bounded loop of 2-thread matrix multiplies that stops by itself.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_notebooks import NOTEBOOKS, ROOT  # noqa: E402

LOAD = """
import os, time, torch
torch.set_num_threads(2)
a = torch.randn(1024, 1024)
end, parent = time.time() + {seconds}, os.getppid()
while time.time() < end and os.getppid() == parent:  # stops when the stress run ends, even if it was killed
    a = torch.tanh(a @ a / 32)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--notebooks", nargs="+", default=list(NOTEBOOKS), choices=list(NOTEBOOKS))
    parser.add_argument("--max-minutes", type=float, default=120, help="the load job stops after this long")
    args = parser.parse_args()
    load = subprocess.Popen([sys.executable, "-c", LOAD.format(seconds=args.max_minutes * 60)])
    keep = ROOT / "build" / "stress"
    keep.mkdir(parents=True, exist_ok=True)
    results = {key: [] for key in args.notebooks}
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW_")}
    try:
        for run in range(1, args.runs + 1):
            for key in args.notebooks:
                name = NOTEBOOKS[key]
                with tempfile.TemporaryDirectory() as tmp:
                    shutil.copy(ROOT / f"{name}.ipynb", tmp)
                    start = time.perf_counter()
                    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "run_notebook.py"),
                                           f"{name}.ipynb", "--profile", "smoke", "--cwd", tmp],
                                          cwd=tmp, capture_output=True, text=True, env=env)
                    seconds = time.perf_counter() - start
                ok = proc.returncode == 0
                results[key].append((ok, seconds))
                if not ok:
                    (keep / f"{key}_run{run}.stderr.txt").write_text(proc.stderr)
                print(f"{key} run {run:2d}: {'pass' if ok else 'FAIL'} in {seconds:5.0f} s", flush=True)
    finally:
        load.kill()
    for key, rows in results.items():
        passed = sum(ok for ok, _ in rows)
        print(f"{key}: {passed} of {len(rows)} passed under load; "
              f"{min(s for _, s in rows):.0f}-{max(s for _, s in rows):.0f} s per run")
    return 0 if all(ok for rows in results.values() for ok, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
