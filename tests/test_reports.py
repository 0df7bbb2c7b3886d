"""The PDF reports compile from the notebooks' metrics, respect the page limit and print the JSON's numbers."""
import hashlib
import json
import subprocess
import sys

import pytest
from conftest import ROOT
from pypdf import PdfReader

REPORTS = {"hw1": "homework1_report", "hw2": "homework2_report"}


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
