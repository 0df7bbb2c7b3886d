"""Static checks of the committed notebooks: a clean full run whose numbers are the committed metrics."""
import json
import re

import nbformat
import pytest
from conftest import ROOT, assert_clean_run, notebook_outputs_text

HW1 = ROOT / "homework1_supervised.ipynb"
HW1_METRICS = ROOT / "report" / "hw1_metrics.json"
TARGETS = {"mlp": 0.900, "cnn": 0.935}


@pytest.fixture(scope="module")
def hw1():
    return nbformat.read(HW1, as_version=4), json.loads(HW1_METRICS.read_text())


def test_clean_full_run(hw1):
    nb, metrics = hw1
    assert_clean_run(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "widgets" not in nb.metadata
    assert not [o for c in code for o in c.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert metrics["profile"] == "full"
    assert "profile full:" in notebook_outputs_text(nb)


def test_metrics_come_from_this_run(hw1):
    nb, m = hw1
    text = notebook_outputs_text(nb)
    assert f"MLP:        test accuracy {100 * m['mlp']['test_acc']:.2f}%" in text
    assert f"CNN:        test accuracy {100 * m['cnn']['test_acc']:.2f}%" in text
    assert f"regression: test MSE {m['regression']['test_mse']:.4f}" in text
    assert f"[time] 6 visualisation: {m['wall_time_s']['6 visualisation']:.1f}s" in text


def test_observations_quote_printed_numbers(hw1):
    """Every decimal number in an observation cell must appear in the outputs of the run."""
    nb, _ = hw1
    text = notebook_outputs_text(nb)
    observations = [c.source for c in nb.cells if "observation" in c.metadata.get("tags", [])]
    missing = [n for src in observations for n in re.findall(r"\d+\.\d+", src) if n not in text]
    assert not missing, f"numbers quoted in observations but not printed: {missing}"


def test_figures_committed():
    figures = ROOT / "report" / "figures" / "hw1"
    assert len(list(figures.glob("*.png"))) >= 19 and len(list(figures.glob("*.pdf"))) >= 19


@pytest.mark.parametrize("model", sorted(TARGETS))
def test_accuracy_targets(hw1, model):
    _, m = hw1
    assert m[model]["test_acc"] >= TARGETS[model], f"{model} test accuracy {m[model]['test_acc']:.4f} < target"
