"""The verify profile: the final models load their saved weights instead of training, and the reported test
numbers come out again. Checked on the committed full run (its checkpoints/) and on this session's smoke run,
with one of its checkpoint files corrupted to check the message and the fallback."""
import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest
import torch
from conftest import NOTEBOOKS, ROOT, notebook_outputs_text

# one final model per notebook whose file the round-trip test corrupts: cheap to train again at the quick budget
CORRUPTED = {"hw1": "D: wine classifier", "hw2": "conditional VAE"}


def run_verify(key: str, out_dir, env_extra: dict) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "tools/run_notebook.py", f"{NOTEBOOKS[key]}.ipynb", "--profile", "verify",
                           "--outputs", str(out_dir), "--timeout", "900"],
                          cwd=ROOT, capture_output=True, text=True, env=env)


def verify_rows(out_dir, key: str) -> dict[str, dict]:
    metrics = json.loads((out_dir / f"{key}_metrics.json").read_text())
    return {row["final model"]: row for row in metrics["verify"]["rows"]}


@pytest.mark.parametrize("key", sorted(NOTEBOOKS))
def test_smoke_run_saves_its_final_models(smoke_run, key):
    _, metrics, _ = smoke_run[key]
    records = metrics["checkpoints"]
    folder = smoke_run[key][2].parent.parent / "checkpoints" / key
    for name, record in records.items():
        path = folder / record["file"]
        payload = torch.load(path, map_location="cpu", weights_only=True)
        assert payload["name"] == name and json.loads(payload["config"]) == record["config"]
        assert all(not v.is_floating_point() or v.dtype == torch.float16 for v in payload["state"].values())
        assert len(record["sha256"]) == 64 and record["bytes"] == path.stat().st_size
    expected = {"hw1": {"MLP", "CNN", "B: NumPy network", "D: wine classifier"},
                "hw2": {"autoencoder", "fine-tuned classifier", "HW1 CNN recipe", "VAE", "conditional VAE",
                        "judge (scratch classifier)", "DCGAN generator"}}[key]
    if key == "hw2" and (ROOT / "data" / "cifar10.npz").exists():  # section 7.4 runs only where CIFAR-10 is
        expected.add("CIFAR-10 autoencoder")
    assert set(records) == expected


# The sections that run before any final model, so that a verify run (smoke budgets, the same seed) repeats them
# exactly: the same-seed determinism check. Timing entries are left out.
UPSTREAM = {"hw1": ("regression", "mlp.cv_acc", "mlp.search", "mlp.optimizers", "mlp.regularizers", "mlp.best_config",
                    "cnn.design_rows", "cnn_cv", "appendix.A"),
            "hw2": ("ae.sweep", "dae", "ae_compare", "search.rows", "search.repeat_rows", "search.best_params",
                    "final_ae.cv")}
TIMING_WORDS = ("wall", "per_s", "time", "seconds", "gflop")
# the smoke fixture writes its own course regression files, which the verify run does not see
OTHER_INPUTS = ("regression.course", "regression.test")


def leaves(value, path=""):
    """(path, value) for every non-timing leaf of a metrics entry."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() if not any(w in k for w in TIMING_WORDS)
                for leaf in leaves(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in leaves(v, f"{path}[{i}]")]
    return [(path, value)]


def upstream_leaves(metrics: dict, key: str) -> dict:
    found = {}
    for dotted in UPSTREAM[key]:
        entry = metrics
        for part in dotted.split("."):
            entry = entry[part]
        found.update((p, v) for p, v in leaves(entry, dotted) if not p.startswith(OTHER_INPUTS))
    return found


@pytest.mark.parametrize("key", sorted(NOTEBOOKS))
def test_verify_reproduces_the_smoke_run(smoke_run, key, tmp_path):
    """verify against the smoke run's metrics and weights, one file truncated: every other final model's test
    number agrees within the tolerance; the truncated one is named, with what differs, and trained again. The
    sections before the final models run again with the same seed and threads, and give identical numbers."""
    smoke_dir = smoke_run[key][2].parent.parent
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(smoke_dir / "checkpoints" / key, checkpoints)
    smoke_metrics = smoke_run[key][1]
    broken = checkpoints / smoke_metrics["checkpoints"][CORRUPTED[key]]["file"]
    broken.write_bytes(broken.read_bytes()[:1000])
    out = tmp_path / "verify"
    proc = run_verify(key, out, {"HW_VERIFY_METRICS": str(smoke_dir / f"{key}_metrics.json"),
                                 "HW_VERIFY_CHECKPOINTS": str(checkpoints),
                                 "HW_THREADS": str(smoke_metrics["environment"]["cpu_threads"])})
    assert proc.returncode == 0, proc.stderr[-4000:]
    again = upstream_leaves(json.loads((out / f"{key}_metrics.json").read_text()), key)
    first = upstream_leaves(smoke_metrics, key)
    assert len(first) > 20 and again.keys() == first.keys()
    differ = [(p, first[p], again[p]) for p in first if first[p] != again[p] and first[p] == first[p]]  # NaN = NaN
    assert not differ, f"same seed, different numbers: {differ[:5]}"
    rows = verify_rows(out, key)
    for name, row in rows.items():
        if name == CORRUPTED[key]:
            assert row["agrees"] is None and row["weights"].startswith("trained again"), row
        else:
            assert row["weights"] == "committed weights" and row["agrees"] is True, row
    text = notebook_outputs_text(nbformat.read(out / f"{NOTEBOOKS[key]}.ipynb", as_version=4))
    assert f"verify: {CORRUPTED[key]}: {broken}: its SHA-256" in text
    assert "TRAINED AGAIN with the quick profile's budget" in text


@pytest.mark.parametrize("key", sorted(NOTEBOOKS))
def test_verify_reproduces_the_committed_run(key, tmp_path):
    """The committed checkpoints reproduce every reported test number of the committed full run."""
    committed = json.loads((ROOT / "report" / f"{key}_metrics.json").read_text())
    assert committed.get("checkpoints"), "the committed full run saved no checkpoints"
    proc = run_verify(key, tmp_path, {})
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = verify_rows(tmp_path, key)
    # Appendix B's network is committed for CIFAR-10, which a clone has only where the course's copy lies beside
    # it (`make data`); without it the notebook says so and cannot compare that one row. Every other row must agree.
    if key == "hw1" and not (ROOT / "data" / "cifar10.npz").exists():
        assert rows["B: NumPy network"]["weights"] == "not compared: no CIFAR-10 here", rows
        rows = {name: row for name, row in rows.items() if name != "B: NumPy network"}
    if key == "hw2" and not (ROOT / "data" / "cifar10.npz").exists():  # the same for section 7.4's autoencoder
        assert "CIFAR-10 autoencoder" not in rows
        assert "the CIFAR-10 autoencoder is not compared: no CIFAR-10 here" in notebook_outputs_text(
            nbformat.read(tmp_path / f"{NOTEBOOKS[key]}.ipynb", as_version=4))
    assert rows and all(row["agrees"] is True for row in rows.values()), rows


def test_committed_checkpoints_stay_small():
    """The weights that both notebooks commit stay near 15 MB, and each recorded file is there, unchanged."""
    total = 0
    for key in NOTEBOOKS:
        records = json.loads((ROOT / "report" / f"{key}_metrics.json").read_text()).get("checkpoints", {})
        assert records, f"the committed {key} run saved no checkpoints"
        for record in records.values():
            path = ROOT / "checkpoints" / key / record["file"]
            assert path.stat().st_size == record["bytes"], path
            total += record["bytes"]
    assert total < 16e6, f"{total / 1e6:.1f} MB of checkpoints"


def test_verify_without_the_committed_run_says_what_to_do(tmp_path):
    proc = run_verify("hw1", tmp_path, {"HW_VERIFY_METRICS": str(tmp_path / "missing.json")})
    assert proc.returncode != 0
    assert f"{tmp_path / 'missing.json'} is missing" in proc.stderr and "HW_VERIFY_METRICS" in proc.stderr
