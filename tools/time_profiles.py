"""Measure the wall time of each notebook under the smaller profiles and record it for the README.

    python tools/time_profiles.py                      # smoke and quick for every notebook
    python tools/time_profiles.py --profiles quick
    python tools/time_profiles.py --profiles verify     # after a full run: it loads that run's checkpoints
    python tools/time_profiles.py --notebooks hw2      # only some notebooks; the others keep their times

Outputs go to build/<profile>/ (the runner's default), so the committed full-run figures and metrics are
untouched; the times are written to report/profile_times.json, which tools/update_readme.py reads. The full
profile's time is the one in report/hwN_metrics.json.
"""
import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from build_notebooks import NOTEBOOKS

ROOT = Path(__file__).resolve().parents[1]
TIMES = ROOT / "report" / "profile_times.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["smoke", "quick"],
                        choices=["smoke", "quick", "full", "verify"])
    parser.add_argument("--notebooks", nargs="+", default=list(NOTEBOOKS), choices=list(NOTEBOOKS))
    args = parser.parse_args()
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    for key, name in NOTEBOOKS.items():
        if key not in args.notebooks or not (ROOT / f"{name}.ipynb").exists():
            continue
        for profile in args.profiles:
            out = ROOT / "build" / profile
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "tools/run_notebook.py", f"{name}.ipynb", "--profile", profile,
                                   "--outputs", str(out)], cwd=ROOT)
            if proc.returncode != 0:
                print(f"{name} failed in profile {profile}")
                return 1
            metrics = json.loads((out / f"{key}_metrics.json").read_text())
            times.setdefault(key, {})[profile] = {
                "wall_s": round(time.perf_counter() - start, 1),  # kernel start included
                "notebook_s": metrics["wall_time_s"]["total"],
                "cpu_threads": metrics["environment"]["cpu_threads"], "device": metrics["environment"]["device"],
                "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}
            print(f"{name} {profile}: {times[key][profile]['wall_s']:.0f}s")
    TIMES.write_text(json.dumps(times, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
