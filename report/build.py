"""Build the PDF reports from the notebooks' metrics and figures with Typst (PyPI package `typst`, offline).

    python report/build.py                                   # every report whose metrics exist
    python report/build.py --root build/quick                # a non-full run's folder: metrics, figures, PDFs
    python report/build.py --metrics build/m.json --figures build/fig --out /tmp/r.pdf hw1   # another run

The metrics file's SHA-256 goes into the PDF's keywords and footer, so a test can tell which metrics a
committed PDF was built from. The body must end by page 6: the document itself fails to compile otherwise.
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

import typst

ROOT = Path(__file__).resolve().parents[1]
REPORTS = {"hw1": "homework1_report", "hw2": "homework2_report"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def typst_inputs(metrics: Path, figures: Path) -> dict[str, str]:
    """What a report reads from `sys.inputs`: its metrics file, its figure folder and the metrics' digest."""
    return {"metrics": str(metrics.resolve()), "figures": str(figures.resolve()), "digest": digest(metrics)}


def build(key: str, metrics: Path, figures: Path, out: Path) -> int:
    """Compile one report; return the page on which its body ends."""
    source = ROOT / "report" / f"{REPORTS[key]}.typ"
    inputs = typst_inputs(metrics, figures)
    try:
        typst.compile(str(source), output=str(out), root="/", sys_inputs=inputs)
        body_end = json.loads(typst.query(str(source), "<body-end>", field="value", root="/", sys_inputs=inputs))
    except typst.TypstError as err:
        raise SystemExit(f"{source.name}: Typst failed:\n{err}") from None
    return body_end[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="*", help=f"which reports: {', '.join(REPORTS)} (default: all)")
    parser.add_argument("--root", type=Path, default=ROOT / "report",
                        help="folder with <hw>_metrics.json and figures/<hw>/, where the PDFs go (default report/)")
    parser.add_argument("--metrics", type=Path, help="metrics JSON (default ROOT/<hw>_metrics.json)")
    parser.add_argument("--figures", type=Path, help="figure folder (default report/figures/<hw>)")
    parser.add_argument("--out", type=Path, help="output PDF (default report/<name>.pdf)")
    args = parser.parse_args()
    unknown = sorted(set(args.reports) - set(REPORTS))
    if unknown:
        parser.error(f"unknown report {', '.join(unknown)}; choose from {', '.join(REPORTS)}")
    for key in args.reports or list(REPORTS):
        metrics = args.metrics or args.root / f"{key}_metrics.json"
        source = ROOT / "report" / f"{REPORTS[key]}.typ"
        if not metrics.exists() or not source.exists():
            print(f"{key}: skipped ({metrics.name if not metrics.exists() else source.name} not found)")
            continue
        figures = args.figures or args.root / "figures" / key
        out = args.out or args.root / f"{REPORTS[key]}.pdf"
        page = build(key, metrics, figures, out)
        print(f"{out}: body ends on page {page} (limit 6), metrics {digest(metrics)[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
