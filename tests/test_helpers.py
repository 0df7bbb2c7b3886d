"""The shared helper cells on their own, without a notebook: every public helper is called once on tiny inputs,
and the library calls that replaced hand-written code give the answers of the formulas they replaced."""
import ast
import hashlib
import json
import math
import sys

import nbformat
import numpy as np
import pytest
from build_notebooks import SHARED, shared_helpers_namespace
from conftest import NOTEBOOKS, ROOT


@pytest.fixture(scope="module")
def h(tmp_path_factory):
    return shared_helpers_namespace({"NUM_THREADS": 1})


def public_helpers() -> set[str]:
    """Functions and classes defined at the top level of src/shared_helpers.py, without a leading underscore."""
    tree = ast.parse((ROOT / "src" / SHARED).read_text())
    return {node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")}


def tiny_classifier(h):
    torch, nn = h["torch"], h["nn"]
    torch.manual_seed(0)
    X = torch.randn(40, 1, 28, 28)
    y = torch.arange(40) % 10
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    return model, X, y


def exercise_checkpoints(h, tmp_path, out: dict) -> None:
    """Save a model's checkpoint as a full run does, then load it back as the verify profile does: the weights
    come back within float16 rounding, a changed file is refused with what differs, and the table agrees."""
    torch = h["torch"]
    model, X, _ = tiny_classifier(h)
    saved = {k: h.get(k) for k in ("CHECKPOINT_DIR", "METRICS", "VERIFY", "COMMITTED", "VERIFY_CHECKPOINT_DIR",
                                   "VERIFIED", "P", "PROFILES")}
    try:  # P and PROFILES: the notebook's budgets (the cell that defines them is not a shared one)
        h.update(CHECKPOINT_DIR=tmp_path / "ck", METRICS={}, VERIFIED={}, P={}, PROFILES={"quick": {}})
        config = h["final_config"]("tiny", {"train": h["asdict"](h["TrainConfig"]())})
        out["final_config"] = config
        out["from_dict"] = h["from_dict"](h["TrainConfig"], json.loads(json.dumps(config["train"])))
        out["class_sources"] = h["class_sources"](h["TrainConfig"])
        digest = h["source_digest"](model)
        out["source_digest"] = digest
        history = h["train_or_load"]("tiny", model, config, lambda budget: {"trained": True})
        out["train_or_load"], out["save_checkpoint"] = history, h["METRICS"]["checkpoints"]["tiny"]
        record = out["save_checkpoint"]
        path = tmp_path / "ck" / record["file"]
        out["file_sha256"] = h["file_sha256"](path)
        # now as the verify profile: the metrics just written are the committed ones
        h.update(VERIFY=True, COMMITTED={"checkpoints": {"tiny": record}, "m": {"test_acc": 0.5}},
                 VERIFY_CHECKPOINT_DIR=tmp_path / "ck")
        loaded_model = tiny_classifier(h)[0]
        torch.nn.init.zeros_(loaded_model[1].weight)
        out["loaded_history"] = h["train_or_load"]("tiny", loaded_model, config, lambda budget: {"trained": True})
        out["load_checkpoint"] = h["load_checkpoint"]("tiny", digest)
        out["reload_diff"] = (loaded_model(X) - model(X)).abs().max().item()
        out["checkpoint_problem"] = h["checkpoint_problem"](path, record, "another digest")[1]
        path.write_bytes(path.read_bytes()[:100])
        out["truncated_problem"] = h["checkpoint_problem"](path, record, digest)[1]
        h["METRICS"]["m"] = {"test_acc": 0.5015}
        h["VERIFIED"]["tiny"] = "committed weights"
        out["verify_against_committed"] = h["verify_against_committed"]({"tiny": ("m", "test_acc")})
        out["dig"] = h["dig"](h["COMMITTED"], ("m", "test_acc"))
        try:
            h["load_committed_metrics"](tmp_path / "missing.json")
        except FileNotFoundError as error:
            out["load_committed_metrics"] = str(error)
    finally:
        h.update(saved)


def test_checkpoints_round_trip(h, tmp_path):
    out = exercise(h, tmp_path)
    assert out["train_or_load"] == {"trained": True} and out["loaded_history"]["loaded"] is True
    assert out["from_dict"] == h["TrainConfig"]()
    assert len(out["source_digest"]) == 64 and out["file_sha256"] == out["save_checkpoint"]["sha256"]
    assert out["load_checkpoint"] is not None and 0 < out["reload_diff"] < 1e-2  # float16 rounding, not zeros
    assert "source digest differs" in out["checkpoint_problem"]
    assert "SHA-256" in out["truncated_problem"]
    assert out["verify_against_committed"][0]["agrees"] is True and out["dig"] == 0.5
    assert "is missing" in out["load_committed_metrics"] and "HW_VERIFY_METRICS" in out["load_committed_metrics"]
    assert "TrainConfig" in out["class_sources"][0]


def exercise(h, tmp_path) -> dict:
    """Call each public helper once; return {name: result} for the asserts below."""
    torch, F = h["torch"], h["F"]
    model, X, y = tiny_classifier(h)
    out = {}
    out["set_seed"] = h["set_seed"](3)
    out["pick_device"] = h["pick_device"]("cpu")
    out["busy_cores"] = h["busy_cores"](0.01)
    out["batches"] = list(h["batches"](10, 4))
    out["random_shift_flip"] = h["random_shift_flip"](X[:4], torch.Generator().manual_seed(0))
    out["predict"] = h["predict"](model, X)
    out["accuracy"] = h["accuracy"](out["predict"], y)
    out["evaluate"] = h["evaluate"](model, F.cross_entropy, X, y, metric_fn=h["accuracy"])
    out["count_parameters"] = h["count_parameters"](model)
    out["shape_trace"] = h["shape_trace"](model, X[:2])
    cfg = h["TrainConfig"](optimizer="adamw", lr=1e-2, num_epochs=2, batch_size=8, schedule="warmup_cosine",
                           label_smoothing=0.1, augment=True, l1=1e-5, patience=5)
    out["TrainConfig"] = cfg
    out["make_optimizer"] = h["make_optimizer"](model, cfg, len(X))
    out["warmup_cosine"] = h["warmup_cosine"](torch.optim.SGD(model.parameters(), lr=1.0), 10)
    out["cross_entropy"] = h["cross_entropy"](model, X, y)
    out["weight_l1"] = h["weight_l1"](model)
    out["fit"] = h["fit"](model, h["cross_entropy"], (X, y), (X, y), optimizer=torch.optim.SGD(model.parameters(), 0.1),
                          num_epochs=2, batch_size=8, generator=torch.Generator().manual_seed(0),
                          val_criterion=F.cross_entropy, metric_fn=h["accuracy"], verbose=False)
    out["epoch_summary"] = h["epoch_summary"]("tiny", 2, out["fit"])
    assert out["epoch_summary"].startswith("[tiny] epoch   2/2 | train ") and "| acc " in out["epoch_summary"]
    assert "acc" not in h["epoch_summary"]("t", 1, {"epoch": [1], "train_loss": [0.5], "val_loss": [0.4],
                                                     "val_metric": [float("nan")], "time_s": [1.0]})
    out["train_epoch"] = h["train_epoch"](model, h["cross_entropy"], (X, y), optimizer=torch.optim.SGD(
        model.parameters(), 0.0), batch_size=8, generator=torch.Generator().manual_seed(0))
    assert abs(out["train_epoch"] - h["evaluate"](model, F.cross_entropy, X, y)["loss"]) < 1e-4  # lr 0: mean loss
    a, b = {"m": 0.80, "m_sd": 0.01}, {"m": 0.83, "m_sd": 0.01}
    out["within_noise"] = (h["within_noise"](a, b, "m"), h["within_noise"](a, {"m": 0.805, "m_sd": 0.0}, "m"))
    assert out["within_noise"] == (False, True)
    out["train_classifier"] = h["train_classifier"](model, cfg, (X, y), (X, y), seed=0, verbose=False)
    out["ChannelsLast"] = h["ChannelsLast"]()(X[:2])
    out["CNNConfig"] = h["CNNConfig"](channels=(4, 8, 8))
    out["conv_block"] = h["conv_block"](1, 4, True)
    out["make_cnn"] = h["make_cnn"](out["CNNConfig"])
    out["build"] = h["build"](h["make_cnn"], out["CNNConfig"], h["torch"].device("cpu"), 0)
    out["fold_batch_norm"] = h["fold_batch_norm"](out["build"])
    sealed = h["SealedTestSet"]("tiny", lambda: (X, y), ("model a", "model b"))
    out["SealedTestSet"] = (sealed.read("model a"), sealed)
    out["seal_arrays"] = h["seal_arrays"]("arrays", X, y, ("m",))
    out["labels_digest"] = h["labels_digest"](torch.tensor([3, 1, 4]))
    out["seal_test_split"] = h["seal_test_split"]({"test_images": X, "test_labels": y, "train_images": X}, "split",
                                                  ("m",))
    fig = h["plot_curves"]({"run": out["fit"]}, keys=("train_loss", "val_metric"))
    out["plot_curves"] = fig
    log_fig = h["plot_curves"]({"run": {"epoch": [1, 2, 3], "train_loss": [1e-5, 3e-3, 0.5]}}, keys=("train_loss",),
                               logy=True, width=h["PRINT_WIDTH"]["half"])
    log_fig.canvas.draw()
    out["plain_log_ticks"] = [t.get_text() for t in log_fig.axes[0].get_yticklabels() if t.get_text()]
    out["plot_confusions"] = h["plot_confusions"]({"a": np.eye(3, dtype=int) + 1}, ["x", "y", "z"], "tiny")
    h["savefig"](fig, tmp_path / "figures" / "curves")
    out["savefig"] = sorted(p.name for p in (tmp_path / "figures").iterdir())
    metrics = {"profile": "test"}
    with h["section"]("a section", metrics):
        pass
    out["section"] = metrics
    out["progress"] = list(h["progress"](range(3), "counting"))
    out["to_builtin"] = h["to_builtin"]({"a": np.float32(1.5), "b": torch.tensor([1, 2]), 3: (np.int64(4),)})
    h["write_metrics"]({"x": np.float64(0.25)}, tmp_path / "m" / "metrics.json", torch.device("cpu"))
    out["write_metrics"] = json.loads((tmp_path / "m" / "metrics.json").read_text())
    out["show_table"] = h["show_table"]([{"run": "b", "acc": 0.5}, {"run": "a", "acc": 0.9}], sort_by="acc",
                                        descending=True)
    exercise_checkpoints(h, tmp_path, out)
    # the data helpers have tests of their own (test_download.py, test_bad_input.py); here they are named
    for name in ("idx_bytes", "read_idx", "idx_path", "download_verified", "fetch_idx_files", "find_fashion_dir",
                 "load_fashion_mnist"):
        out[name] = "tested in test_download.py / test_bad_input.py"
    out["load_cifar10"] = "tested in test_load_cifar10 below"
    return out


def test_every_public_helper_is_exercised(h, tmp_path):
    out = exercise(h, tmp_path)
    missing = public_helpers() - set(out)
    assert not missing, f"shared helpers without a call in this test: {sorted(missing)}"


def test_helpers_compute_what_they_say(h, tmp_path):
    torch = h["torch"]
    out = exercise(h, tmp_path)
    assert [b.tolist() for b in out["batches"]] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert out["random_shift_flip"].shape == (4, 1, 28, 28)
    assert out["predict"].shape == (40, 10) and 0 <= out["accuracy"] <= 1
    assert out["evaluate"]["loss"] > 0 and out["evaluate"]["metric"] == pytest.approx(out["accuracy"])
    assert out["count_parameters"] == 28 * 28 * 10 + 10
    assert out["shape_trace"][-1][1] == (2, 10)
    assert len(out["fit"]["train_loss"]) == 2 and all(math.isfinite(v) for v in out["fit"]["train_loss"])
    assert out["fit"]["samples_per_s"] > 0
    assert out["make_cnn"](torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    (data, sealed) = out["SealedTestSet"]
    assert data[0] is not None and sealed.log == ["model a"]
    with pytest.raises(RuntimeError, match="already"):
        sealed.read("model a")
    with pytest.raises(ValueError, match="not a final model"):
        sealed.read("model c")
    assert out["labels_digest"] == hashlib.sha256(b"314").hexdigest()
    assert out["seal_arrays"].read("m")[1] is not None and out["seal_test_split"].read("m")[0] is not None
    assert out["savefig"] == ["curves.pdf", "curves.png"]
    assert out["plain_log_ticks"] and not any("$" in t or "^" in t for t in out["plain_log_ticks"])
    assert out["plot_curves"].get_figwidth() == h["PRINT_WIDTH"]["full"]
    assert "a section" in out["section"]["wall_time_s"]
    assert out["progress"] == [0, 1, 2]
    assert out["to_builtin"] == {"a": 1.5, "b": [1, 2], "3": [4]}
    assert out["write_metrics"]["x"] == 0.25 and "torch" in out["write_metrics"]["environment"]
    assert [r["run"] for r in out["show_table"]] == ["a", "b"]


def test_folded_batch_norm_computes_the_same_outputs(h):
    """A CNN with trained-looking batch-norm statistics gives the same eval outputs with its batch norms folded
    into the convolutions; the folded copy has no BatchNorm2d left and the original is unchanged."""
    torch, nn = h["torch"], h["nn"]
    model = h["build"](h["make_cnn"], h["CNNConfig"](channels=(4, 8, 8)), torch.device("cpu"), 0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics and affine parameters away from their initial values
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(6, 1, 28, 28)
    model.eval()
    folded = h["fold_batch_norm"](model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-4)


def test_warmup_cosine_matches_its_formula(h):
    """PyTorch's LinearLR + CosineAnnealingLR give the schedule the notebooks describe, step by step."""
    torch = h["torch"]
    for steps in (1, 2, 7, 50, 391):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler = h["warmup_cosine"](optimizer, steps)
        warm = max(1, int(0.2 * steps))
        for t in range(steps):
            expected = (t + 1) / warm if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / max(1, steps - warm)))
            assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, abs=1e-12), (steps, t)
            optimizer.step()
            scheduler.step()


def test_flop_counter_matches_the_layer_formula(h):
    """FlopCounterMode (appendix F) counts 2 * C_in * k^2 per output value of a convolution, 2 * in per output of
    a linear layer: the textbook count that it replaced."""
    torch, nn = h["torch"], h["nn"]
    from torch.utils.flop_counter import FlopCounterMode

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))
    x = torch.zeros(2, 3, 6, 6)
    with FlopCounterMode(display=False) as counter:
        model(x)
    expected = 2 * (2 * 8 * 6 * 6) * 3 * 9 + 2 * (2 * 5) * 8 * 6 * 6
    assert counter.get_total_flops() == expected


def test_wilson_interval_known_value():
    """scipy's Wilson interval (appendix D) for 36 of 36: the lower bound is n / (n + z^2)."""
    from scipy.stats import binomtest, norm

    z = norm.ppf(0.975)
    interval = binomtest(36, 36).proportion_ci(confidence_level=0.95, method="wilson")
    assert interval.low == pytest.approx(36 / (36 + z * z), rel=1e-9) and interval.high == pytest.approx(1.0)


def top_level_names(cells) -> set[str]:
    names = set()
    for cell in cells:
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # a cell with IPython magics; none defines a helper
            continue
        names |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    return names


def test_each_definition_lives_once():
    """No function or class is defined in both notebooks outside the shared cells, nor again beside them."""
    own, shared = {}, None
    for key, name in NOTEBOOKS.items():
        nb = nbformat.read(ROOT / f"{name}.ipynb", as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        own[key] = top_level_names(c for c in code if "shared-helpers" not in c.metadata.get("tags", []))
        shared = top_level_names(c for c in code if "shared-helpers" in c.metadata.get("tags", []))
    assert not own["hw1"] & own["hw2"], f"defined in both notebooks: {sorted(own['hw1'] & own['hw2'])}"
    for key, names in own.items():
        assert not names & shared, f"{key} redefines shared helpers: {sorted(names & shared)}"


def test_every_source_compiles():
    import py_compile

    sources = [*(ROOT / "src").glob("*.py"), *(ROOT / "tools").glob("*.py"), ROOT / "report" / "build.py"]
    for path in sources:
        py_compile.compile(str(path), doraise=True, cfile=str(ROOT / "build" / "pycache" / (path.name + "c")))


def test_load_cifar10(h, tmp_path, monkeypatch, capsys):
    """CIFAR-10 is optional: a missing file that cannot be downloaded gives None and a message; a broken or
    wrongly shaped file raises an error that names the file and the fix; a well-formed file loads."""
    monkeypatch.setitem(sys.modules, "torchvision", None)  # no download: the import fails
    assert h["load_cifar10"](tmp_path / "absent.npz") is None
    assert "absent.npz is missing" in capsys.readouterr().out
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"broken\.npz: cannot be read.*Fix: delete"):
        h["load_cifar10"](broken)
    small = tmp_path / "small.npz"
    np.savez(small, x_train=np.zeros((10, 32, 32, 3), np.uint8), y_train=np.zeros(10, np.uint8))
    with pytest.raises(ValueError, match=r"small\.npz: x_train is \(10, 32, 32, 3\), expected"):
        h["load_cifar10"](small)
    good = tmp_path / "good.npz"
    np.savez_compressed(good, x_train=np.zeros((50000, 32, 32, 3), np.uint8), y_train=np.zeros(50000, np.uint8),
                        x_test=np.zeros((10000, 32, 32, 3), np.uint8), y_test=np.zeros(10000, np.uint8))
    data = h["load_cifar10"](good)
    assert data["x_test"].shape == (10000, 32, 32, 3) and data["y_train"].shape == (50000,)
