"""The PDF reports compile from the notebooks' metrics, respect the page limit and print the JSON's numbers."""
import functools
import hashlib
import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT
from figure_legibility import MIN_PT, REPORTS, FigureMissing, format_table, report_rows, text_sizes, typst_inputs
from pypdf import PageObject, PdfReader, PdfWriter, Transformation


def headline_numbers(key, m):
    if key == "hw1":
        return [f"{100 * m['mlp']['test_acc']:.2f}%", f"{100 * m['cnn']['test_acc']:.2f}%",
                f"{m['regression']['error_vs_truth']['mean']:.4f}", f"{100 * m['mlp']['cv_acc']['mean']:.2f}%",
                f"{100 * m['appendix']['B']['test_acc']:.2f}%"]
    if key == "hw2":
        return [f"{m['final_ae']['test_mse']:.5f}", f"{100 * m['finetune']['test_acc']['fine-tune']:.2f}%",
                f"{m['vae']['test']['neg_elbo']:.2f}", f"{100 * m['finetune']['cv']['mean']:.2f}%"]
    raise KeyError(key)


def pdf_text(path):
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


@pytest.mark.parametrize("key", sorted(REPORTS))
def test_report_builds_from_smoke_metrics(smoke_run, key, tmp_path):
    if key not in smoke_run:
        pytest.skip(f"{key} notebook not present")
    _, metrics, figures = smoke_run[key]
    metrics_path = tmp_path / "metrics.json"
    metrics_path.write_text(json.dumps(metrics))
    out = tmp_path / f"{REPORTS[key]}.pdf"
    proc = subprocess.run([sys.executable, "report/build.py", key, "--metrics", str(metrics_path),
                           "--figures", str(figures), "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    body_end = int(proc.stdout.split("body ends on page ")[1].split()[0])
    assert 1 <= body_end <= 6
    text = pdf_text(out)
    for section in ("Introduction", "Method", "Results", "Appendix"):
        assert section in text, section
    flat = text.replace("\n", " ")
    for number in headline_numbers(key, metrics):
        assert number in flat, f"{number} from the metrics is not in the report"


@pytest.mark.parametrize("key", sorted(REPORTS))
def test_committed_report_matches_committed_metrics(key):
    pdf, metrics = ROOT / "report" / f"{REPORTS[key]}.pdf", ROOT / "report" / f"{key}_metrics.json"
    assert pdf.exists(), f"{pdf.name} is not committed: run python report/build.py"
    digest = hashlib.sha256(metrics.read_bytes()).hexdigest()
    keywords = str(PdfReader(pdf).metadata.get("/Keywords", ""))
    assert f"metrics-sha256:{digest}" in keywords, f"{pdf.name} was not built from the committed {metrics.name}"
    flat = pdf_text(pdf).replace("\n", " ")
    for number in headline_numbers(key, json.loads(metrics.read_text())):
        assert number in flat


@functools.cache
def legibility_rows(key):
    """figure_legibility's rows for a committed report: Typst's printed width and the PDF's smallest text of each
    figure. Skips the test when a figure the report places has not been drawn."""
    try:
        return report_rows(key, ROOT / "report" / f"{key}_metrics.json", ROOT / "report" / "figures" / key)
    except FigureMissing as err:
        pytest.skip(f"{key}: figure missing ({err}): run the notebook to draw it")


@pytest.mark.parametrize("key", sorted(REPORTS))
def test_legibility_table_covers_every_figure(key):
    rows = legibility_rows(key)
    print(f"\n{REPORTS[key]}\n{format_table(rows)}")
    source = (ROOT / "report" / f"{REPORTS[key]}.typ").read_text()
    assert sorted(r.figure for r in rows) == sorted(re.findall(r'fig\("([^"]+)"', source))
    for r in rows:
        assert 0 < r.printed_pt < 595.3 and r.own_pt > 0, r  # printed within an A4 page's width
    assert any(r.font_pt for r in rows), "no text found in any figure: the PDF text extraction broke"


@pytest.mark.parametrize("key", sorted(REPORTS))
def test_legibility_figure_text_prints_at_least_7pt(key):
    small = [f"{r.figure}: {r.font_pt:g} pt x {r.printed_pt:.0f}/{r.own_pt:.0f} = {r.printed_font_pt:.2f} pt "
             f"({r.font_text})" for r in legibility_rows(key) if not r.ok(MIN_PT)]
    assert not small, f"text printed under {MIN_PT:g} pt:\n" + "\n".join(small)


def test_legibility_font_sizes_follow_the_matrices(tmp_path):
    """A size is the font size scaled by the text and transformation matrices; rotated text and mathtext count."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.set_title("title", fontsize=12)
    ax.set_ylabel("rotated", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.text(0.5, 0.5, r"$10^{3}$", fontsize=10)  # the superscript is drawn at 0.7 x 10 pt
    fig.savefig(tmp_path / "own.pdf")
    own = PdfReader(tmp_path / "own.pdf").pages[0]
    page = PageObject.create_blank_page(width=float(own.mediabox.width), height=float(own.mediabox.height))
    page.merge_transformed_page(own, Transformation().scale(0.5).rotate(90))  # placed at half size, turned
    writer = PdfWriter()
    writer.add_page(page)
    writer.write(tmp_path / "half.pdf")
    for name, scale in (("own.pdf", 1.0), ("half.pdf", 0.5)):
        sizes = text_sizes(tmp_path / name)
        assert {text: size for size, text in sizes if text in ("title", "rotated", "0.0")} == pytest.approx(
            {"title": 12 * scale, "rotated": 9 * scale, "0.0": 8 * scale}), name
        assert min(size for size, _ in sizes) == pytest.approx(7 * scale), name


def typst_query(key, selector, **kwargs):
    """typst.query on a committed report with the inputs report/build.py gives it."""
    import typst

    inputs = typst_inputs(ROOT / "report" / f"{key}_metrics.json", ROOT / "report" / "figures" / key)
    return json.loads(typst.query(str(ROOT / "report" / f"{REPORTS[key]}.typ"), selector, root="/",
                                  sys_inputs=inputs, **kwargs))


@pytest.mark.parametrize("key", sorted(REPORTS))
def test_committed_report_argues(key):
    """The body fills at least five of its six pages and ends with a Conclusion; every figure and table has a
    label, and the text refers to each one."""
    body_end = typst_query(key, "<body-end>", field="value")[0]
    assert body_end >= 5, f"the body ends on page {body_end}: it should fill at least five of the six pages"
    pages = [page.extract_text() for page in PdfReader(ROOT / "report" / f"{REPORTS[key]}.pdf").pages]
    body = "\n".join(pages[:body_end])
    headings = re.findall(r"^\d+ (Introduction|Method|Results|Conclusion)\b", body, re.M)
    assert headings == ["Introduction", "Method", "Results", "Conclusion"], headings
    source = (ROOT / "report" / f"{REPORTS[key]}.typ").read_text()
    figures = typst_query(key, "figure")
    assert figures, "no figure found"
    unlabelled = [str(f.get("caption", ""))[:80] for f in figures if "label" not in f]
    assert not unlabelled, f"figures or tables without a label: {unlabelled}"
    unreferenced = sorted({f["label"].strip("<>") for f in figures} - set(re.findall(r"@([\w:-]+)", source)))
    assert not unreferenced, f"figures or tables the text never refers to: {unreferenced}"


# `#expr;` in Typst markup ends the embedded expression at the semicolon, which then vanishes from the PDF
SWALLOWING = re.compile(r"#[A-Za-z_][\w.-]*(\((?:[^()\n]|\([^()\n]*\))*\))?;")


def test_no_expression_swallows_its_semicolon():
    for name in REPORTS.values():
        for number, line in enumerate((ROOT / "report" / f"{name}.typ").read_text().splitlines(), 1):
            if not line.lstrip().startswith(("#let", "//")):
                assert not SWALLOWING.search(line), f"{name}.typ:{number}: write `\\;` after the expression: {line}"
    # one case end to end: the escaped semicolon after the weight decay reaches the PDF
    m = json.loads((ROOT / "report" / "hw2_metrics.json").read_text())
    flat = " ".join(pdf_text(ROOT / "report" / "homework2_report.pdf").split())
    params = f"{m['final_ae']['params']:,}".replace(",", " ") if m["final_ae"]["params"] >= 10_000 else \
        str(m["final_ae"]["params"])  # the report groups digits from five on
    assert re.search(rf"weight decay \S+; {params} parameters\)", flat), \
        "the sentence on the final autoencoder lost its semicolon"
