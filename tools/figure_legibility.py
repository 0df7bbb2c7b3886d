"""How large the smallest text of each report figure prints: it must be at least 7 pt on paper.

    python tools/figure_legibility.py                  # both reports, from the committed metrics and figures
    python tools/figure_legibility.py hw1 --min-pt 8 --check   # exit status 1 if some text prints too small
    python tools/figure_legibility.py --root build/quick   # a non-full run's metrics and figures

For every figure a report places, four numbers:

  printed  the width at which the report prints it, in pt. Typst says it: the report is compiled with a show rule
           that wraps each image in `layout` and emits the image's laid-out width as metadata, which `typst.query`
           reads back; the report's source is not changed (the rule lives in a temporary file that includes it).
  own      the figure's own width in pt: the width of its PDF's MediaBox (matplotlib saves the tight bounding box).
  font     the smallest text in the figure, in pt at its own size: the font size of every non-blank string the
           PDF's page draws, scaled by the text and transformation matrices (tick labels, legends, titles, mathtext
           superscripts all count).
  on paper font × printed / own: the size at which that smallest text prints.

A figure with fonts of 10 pt (matplotlib's default) prints them at 7 pt or more when its own width is at most
printed / 0.7; the table's 'max in@10' column gives that width in inches (the saved, tight width, close to
figsize's). Mathtext superscripts (the exponent of a log axis's 10^k) are drawn at 0.7 x the label's size, so a
figure with them needs its own width at most the printed width, or tick labels without exponents.
"""
import argparse
import importlib.util
import json
import logging
import math
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import typst
from pypdf import PdfReader

ROOT = Path(__file__).resolve().parents[1]
# report/build.py is the one place that names the reports and builds what they read from sys.inputs
_spec = importlib.util.spec_from_file_location("report_build", ROOT / "report" / "build.py")
report_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report_build)
REPORTS, typst_inputs = report_build.REPORTS, report_build.typst_inputs
MIN_PT = 7.0
DEFAULT_FONT_PT = 10.0  # matplotlib's default font size

# Included around the report: every image emits its name (source path) and the width it is laid out at.
MEASURE = """#show image: it => layout(size => {
  let source = it.at("source", default: it.at("path", default: none))
  let width = measure(it, width: size.width).width
  [#metadata((source: if type(source) == str { source } else { none }, width: width.pt())) <figwidth>]
  it
})
#include "REPORT"
"""


class FigureMissing(FileNotFoundError):
    """A figure the report places is not in the figure folder."""


@dataclass(frozen=True)
class Row:
    report: str
    figure: str  # the figure's name: its file name without .pdf
    printed_pt: float  # width at which the report prints it
    own_pt: float  # width of its PDF's MediaBox
    font_pt: float | None  # smallest text at the figure's own size; None when it has no text
    font_text: str  # that smallest text

    @property
    def printed_font_pt(self) -> float | None:
        return None if self.font_pt is None else self.font_pt * self.printed_pt / self.own_pt

    def ok(self, min_pt: float = MIN_PT) -> bool:
        return self.printed_font_pt is None or self.printed_font_pt >= min_pt - 1e-6

    def max_own_width_in(self, font_pt: float = DEFAULT_FONT_PT, min_pt: float = MIN_PT) -> float:
        """The widest the figure may be saved, in inches, for text of font_pt to print at min_pt."""
        return self.printed_pt * font_pt / min_pt / 72


def printed_widths(source: Path, inputs: dict) -> list[tuple[Path, float]]:
    """(figure file, printed width in pt) of every image the Typst report `source` places, in document order."""
    with tempfile.TemporaryDirectory() as tmp:
        wrapper = Path(tmp) / "measure.typ"
        wrapper.write_text(MEASURE.replace("REPORT", str(source.resolve())))
        try:
            found = json.loads(typst.query(str(wrapper), "<figwidth>", field="value", root="/", sys_inputs=inputs))
        except RuntimeError as err:  # typst.TypstError, or a RuntimeError from typst.query
            missing = re.search(r"file not found \(searched at (.+?)\)", str(err))
            if missing:
                raise FigureMissing(missing.group(1)) from None
            raise RuntimeError(f"{source.name}: Typst failed:\n{err}") from None
    return [(Path(item["source"]), item["width"]) for item in found if item["source"]]


def _vertical_scale(*matrices) -> float:
    """How much the product of PDF matrices [a b c d e f] stretches the text's vertical direction (0, 1)."""
    c, d = 0.0, 1.0
    for a, b, mc, md, *_ in matrices:
        c, d = c * a + d * mc, c * b + d * md
    return math.hypot(c, d)


def text_sizes(pdf: Path) -> list[tuple[float, str]]:
    """(size in pt at the figure's own size, text) of every non-blank string drawn on the PDF's first page."""
    sizes = []

    def visit(text, cm, tm, font, font_size):
        if not text.strip():
            return
        # A Type 3 font's glyph space is its own FontMatrix (matplotlib's: 0.001, as for every other font type).
        glyph_scale = 1.0
        if font is not None and font.get("/Subtype") == "/Type3" and "/FontMatrix" in font:
            glyph_scale = _vertical_scale([float(v) for v in font["/FontMatrix"]]) / 0.001
        sizes.append((font_size * glyph_scale * _vertical_scale(tm, cm), text.strip()))

    PdfReader(pdf).pages[0].extract_text(visitor_text=visit)
    return sizes


def figure_row(report: str, figure: Path, printed_pt: float) -> Row:
    page = PdfReader(figure).pages[0]
    sizes = text_sizes(figure)
    if not sizes:
        return Row(report, figure.stem, printed_pt, float(page.mediabox.width), None, "")
    font_pt = min(size for size, _ in sizes)
    # pypdf hands over a label in pieces (a minus sign, a mathtext superscript): show the longest few at that size
    smallest = sorted({text for size, text in sizes if size <= font_pt + 0.01}, key=lambda t: (-len(t), t))
    sample = " | ".join(text[:24] for text in smallest[:3])
    return Row(report, figure.stem, printed_pt, float(page.mediabox.width), font_pt, sample)


def report_rows(key: str, metrics: Path, figures: Path, source: Path | None = None) -> list[Row]:
    """The rows of one report, compiled with the given metrics and figure folder (as report/build.py does)."""
    source = source or ROOT / "report" / f"{REPORTS[key]}.typ"
    if not figures.is_dir():
        raise FigureMissing(str(figures))
    inputs = typst_inputs(metrics, figures)
    rows = []
    for path, width in printed_widths(source, inputs):
        if path.suffix.lower() != ".pdf":
            continue  # only vector figures carry their fonts; the reports place PDFs only
        rows.append(figure_row(key, path if path.is_absolute() else figures / path.name, width))
    return rows


def format_table(rows: list[Row], min_pt: float = MIN_PT) -> str:
    head = (f"{'figure':32} {'printed pt':>10} {'own pt':>8} {'font pt':>7} {'on paper':>8}  {'status':10} "
            f"{'max in@10':>9}  smallest text")
    lines = [head, "-" * len(head)]
    for r in rows:
        font = "-" if r.font_pt is None else f"{r.font_pt:.1f}"
        paper = "-" if r.printed_font_pt is None else f"{r.printed_font_pt:.2f}"
        status = "OK" if r.ok(min_pt) else "TOO SMALL"
        lines.append(f"{r.figure:32} {r.printed_pt:10.1f} {r.own_pt:8.1f} {font:>7} {paper:>8}  {status:10} "
                     f"{r.max_own_width_in(min_pt=min_pt):9.2f}  {r.font_text}")
    bad = [r for r in rows if not r.ok(min_pt)]
    lines.append(f"{len(bad)} of {len(rows)} figures print text smaller than {min_pt:g} pt")
    return "\n".join(lines)


def print_table(key: str, rows: list[Row], min_pt: float = MIN_PT) -> None:
    print(f"\n{REPORTS[key]}: text must print at >= {min_pt:g} pt; 'max in@10' is the widest the figure may be "
          f"saved, in inches, for 10 pt fonts to print at {min_pt:g} pt")
    print(format_table(rows, min_pt))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="*", help=f"which reports: {', '.join(REPORTS)} (default: all)")
    parser.add_argument("--root", type=Path, default=ROOT / "report",
                        help="folder with <hw>_metrics.json and figures/<hw>/ (default report/)")
    parser.add_argument("--min-pt", type=float, default=MIN_PT, help="smallest legible printed size (default 7)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a figure's text is too small")
    args = parser.parse_args()
    unknown = sorted(set(args.reports) - set(REPORTS))
    if unknown:
        parser.error(f"unknown report {', '.join(unknown)}; choose from {', '.join(REPORTS)}")
    # pypdf warns when a figure invokes over 5000 form XObjects (scatter markers) and skips the rest: matplotlib
    # draws no text inside form XObjects, so nothing is lost.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    status = 0
    for key in args.reports or list(REPORTS):
        metrics = args.root / f"{key}_metrics.json"
        if not metrics.exists():
            print(f"\n{key}: skipped ({metrics} not found)")
            continue
        try:
            rows = report_rows(key, metrics, args.root / "figures" / key)
        except FigureMissing as err:
            print(f"\n{key}: figure not found: {err}")
            status = 1
            continue
        except RuntimeError as err:
            print(f"\n{key}: {err}")
            status = 1
            continue
        print_table(key, rows, args.min_pt)
        if args.check and not all(r.ok(args.min_pt) for r in rows):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
