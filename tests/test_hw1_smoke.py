"""Execute Homework 1 in the smoke profile and check what it produced."""
import math

import pytest
from conftest import assert_clean_run, notebook_outputs_text

FIGURES = ["fashion_examples", "regression_family", "regression_learning_curves", "regression_baseline",
           "regression_hidden_units", "regression_optimizers", "regression_regularization", "regression_selected",
           "regression_regions", "regression_course", "mlp_optimizers", "mlp_regularization", "mlp_search",
           "cnn_design", "confusion_mlp", "confusion_cnn", "weight_histograms", "activation_profiles",
           "mlp_receptive_fields", "cnn_filters", "cnn_effective_receptive_fields", "cnn_feature_maps",
           "activation_maximisation",
           # appendices
           "numpy_ablations", "activation_functions", "vanishing_gradients_init", "vanishing_gradients_training",
           "wine_evaluation", "fashion_confused_pairs", "reliability", "evolutionary_search"]


@pytest.fixture(scope="module")
def hw1(smoke_run):
    return smoke_run["hw1"]


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def test_no_errors_and_counts(hw1):
    assert_clean_run(hw1[0])


def test_metrics_schema(hw1):
    _, m, _ = hw1
    assert m["profile"] == "smoke" and isinstance(m["seed"], int)
    assert m["wall_time_s"]["total"] > 0 and all(is_number(v) and v >= 0 for v in m["wall_time_s"].values())
    for section in ("data", "1.1 regression", "2.1 regression optimizers and regularization",
                    "3.1 regression search and simulation study", "3.1 regression course file",
                    "3.2 classification search", "4 final CNN training", "5 final evaluation", "6 visualisation"):
        assert section in m["wall_time_s"], section
    reg = m["regression"]
    assert reg["course_files"] is True and reg["course"]["n_train"] == 100  # conftest puts course files in place
    for key in ("cv_mse", "error_vs_truth"):
        assert is_number(reg[key]["mean"]) and reg[key]["mean"] > 0 and reg[key]["std"] >= 0
    assert is_number(reg["test_mse"]) and 0 < reg["test_mse"] < 100
    assert reg["n_configs_searched"] == 16 + 2 and len(reg["chosen"]) == len(reg["family"]) == 2
    assert len(reg["optimizers"]) == 6 and len(reg["regularizers"]) == 5
    methods = {row["method"] for row in reg["simulation"]["methods"]}
    assert methods == {"network", "polynomial", "local linear", "Gaussian process"}
    assert set(reg["course"]["test"]) == {"network ensemble", "polynomial", "local linear", "Gaussian process"}
    for name in ("mlp", "cnn"):
        assert 0.3 < m[name]["test_acc"] <= 1.0, f"{name} is no better than chance"
        assert m[name]["params"] > 1000 and m[name]["samples_per_s"] > 0 and m[name]["train_wall_s"] > 0
        assert len(m[name]["per_class_acc"]) == 10
    assert 0 < m["mlp"]["cv_acc"]["mean"] <= 1 and m["mlp"]["cv_acc"]["std"] >= 0
    assert len(m["mlp"]["optimizers"]) == 6 and len(m["mlp"]["regularizers"]) == 14
    for row in m["mlp"]["optimizers"] + m["mlp"]["regularizers"]:  # ranked comparisons run over several seeds
        assert row["seeds"] == 2 and 0 <= row["best_val_acc_sd"] < 0.5
    assert isinstance(m["cnn"]["flip_tta"], bool) and 0 < m["cnn"]["val_acc"] <= 1 and 0 < m["mlp"]["val_acc"] <= 1
    # the CNN's final candidates: the ladder's winner and the augmented recipe, cross-validated on common folds
    cv = m["cnn_cv"]
    assert len(cv["rows"]) == 2 and len({r["run"] for r in cv["rows"]}) == 2
    assert m["cnn"]["variant"] == cv["rows"][0]["run"] and cv["rows"][0]["cv_acc"] >= cv["rows"][1]["cv_acc"]
    assert {m["cnn"]["design_rows"][0]["run"], "+ augmentation"} <= {r["run"] for r in cv["rows"]}
    assert all(len(r["fold_acc"]) == cv["folds"] for r in cv["rows"]) and len(cv["fold_gain"]) == cv["folds"]
    assert m["cnn"]["n_train_final"] == m["mlp"]["n_train_final"] <= 50_000  # the validation split stays out
    assert m["environment"]["torch"] and m["environment"]["cpu_threads"] >= 1


def test_checks_ran_and_passed(hw1):
    _, m, _ = hw1
    checks = m["checks"]
    assert checks["folds_disjoint"] is True
    assert checks["stacked_equals_single_output"] < 1e-5 and checks["stacked_equals_single_loss"] < 1e-5
    assert checks["bn_fold_max_logit_diff"] < 1e-3
    # each test set was read by its final models only, each once; the MLP and the CNN before appendix B
    reads = m["test_reads"]
    for name, seal in reads.items():
        assert set(seal["log"]) <= set(seal["final_models"]) and len(set(seal["log"])) == len(seal["log"]), name
    assert reads["FashionMNIST"]["log"][:2] == ["MLP", "CNN"]
    assert reads["regression"]["log"] == ["network ensemble", "polynomial", "local linear", "Gaussian process"]
    assert reads["wine"]["log"] == ["D: wine classifier"]
    numpy_reads = [name for name, seal in reads.items() if "B: NumPy network" in seal["log"]]
    assert numpy_reads == [m["appendix"]["B"]["dataset"]]
    # the stored predictions (for Homework 2): one digit per test image, with the labels' digest, not the labels
    stored = m["test_predictions"]
    assert len(stored["mlp"]) == len(stored["cnn"]) == 10_000 and (stored["mlp"] + stored["cnn"]).isdigit()
    assert len(stored["labels_sha256"]) == 64 and "labels" not in stored
    assert checks["mlp_one_batch_overfit_acc"] == 1.0 and checks["cnn_one_batch_overfit_acc"] == 1.0


def test_visual_metrics(hw1):
    _, m, _ = hw1
    v = m["visual"]
    assert len(v["receptive_fields"]) == 5
    assert all(r["effective_rf_95"] <= r["theoretical_rf"] + 4 for r in v["receptive_fields"])
    assert all(0 <= r["dead_fraction"] <= 1 and 0 <= r["saturated_fraction"] <= 1 for r in v["activations"])
    assert len(v["actmax_confidence"]) == 10


def test_figures_exist(hw1):
    _, _, figures = hw1
    for name in FIGURES:
        for ext in ("png", "pdf"):
            path = figures / f"{name}.{ext}"
            assert path.exists() and path.stat().st_size > 1000, path


def test_bad_csv_messages_printed(hw1):
    text = notebook_outputs_text(hw1[0])
    for fragment in ("expected columns 'input,label'", "non-numeric or missing value", "no data rows",
                     "fewer than 10 distinct inputs"):
        assert fragment in text


def test_appendix_a_autodiff(hw1):
    a = hw1[1]["appendix"]["A"]
    assert a["autodiff_max_rel_err"] < 1e-6 and a["manual_vs_autograd_max_abs_err"] < 1e-12
    assert a["loss_after"] < a["loss_before"]
    assert abs(a["dL_dw1_11"] - (-0.009124)) < 1e-6  # the worked example is fixed: its numbers cannot drift


def test_appendix_b_numpy_network(hw1):
    b = hw1[1]["appendix"]["B"]
    assert b["gradcheck_max_rel_err"] < 1e-6
    assert b["dataset"] in ("CIFAR-10", "FashionMNIST") and b["provenance"]
    assert 0.2 < b["test_acc"] <= 1 and 0 < b["val_acc"] <= 1 and b["samples_per_s"] > 0
    assert {r["run"] for r in b["ablations"]} == {"Adam + L2 + decay (recipe)", "SGD instead of Adam", "no L2",
                                                   "no learning-rate decay"}
    assert set(b["tuned_lr"]) == {"adam", "sgd"} and len(b["lr_rows"]) == 6


def test_appendix_c_vanishing_gradients(hw1):
    c = hw1[1]["appendix"]["C"]
    assert len(c["init_grad_ratio"]) == 3 * 7 and len(c["training"]) == 8
    ratio = {(r["init"], r["activation"]): r["first/last"] for r in c["init_grad_ratio"]}
    # a deep sigmoid network at default init must show vanishing gradients; Kaiming ReLU must not
    assert ratio[("default", "sigmoid")] < 1e-3 < ratio[("kaiming", "relu")]
    sigmoid = next(r for r in c["activation_derivatives"] if r["activation"] == "sigmoid")
    assert abs(sigmoid["max f'"] - 0.25) < 1e-6


def test_appendix_d_evaluation(hw1):
    d = hw1[1]["appendix"]["D"]
    wine = d["wine"]
    lo, hi = wine["test_acc_ci95"]
    assert 0 <= lo <= wine["test_acc"] <= hi <= 1 and wine["majority_baseline"] < wine["test_acc"]
    assert len(wine["auc"]) == 3 and all(0 <= v <= 1 for v in wine["auc"].values())
    assert len(wine["scaling"]) == 3 and wine["cv"]["n"] >= 5
    fashion = d["fashion"]
    assert 0 <= fashion["mcnemar"]["p_exact"] <= 1
    assert all(0 <= v <= 1 for v in fashion["ece"].values()) and len(fashion["per_class"]["cnn"]) == 10


def test_appendix_e_search(hw1):
    e = hw1[1]["appendix"]["E"]
    for name in ("genetic", "random"):
        curves = e["best_so_far"][name]
        assert len(curves) == e["repeats"] == 2, "each search runs from several independent seeds"
        assert all(len(c) == e["trials_per_search"] and c == sorted(c) for c in curves)
        assert e["best_per_repeat"][name] == [c[-1] for c in curves]
        assert 0 <= e["winners"][name]["holdout_val_acc"] <= 1 and e["winners"][name]["val_acc"] == max(
            c[-1] for c in curves)
        assert "test_acc" not in e["winners"][name]  # appendix E compares on validation, not on the test set


def test_appendix_f_speed(hw1):
    f = hw1[1]["appendix"]["F"]
    models = {"mlp (section 1.2)", "mlp (final)", "cnn (final)"}
    assert len(f["rows"]) == 3 + 3 + 4 and all(r["samples_per_s"] > 0 for r in f["rows"])
    assert set(f["in_memory_speedup"]) == models == set(f["fastest"])
    # speed figures exist and are positive; how they compare depends on the machine, so it is not asserted
    assert all(rate > 0 for rate in f["pipeline_samples_per_s"].values())
    assert f["matmul_gflops"] > 0 and f["cnn_fraction_of_matmul"] > 0
    assert set(f["cnn_eval_samples_per_s"]) == {"as trained", "batch norm folded"}
    assert all(rate > 0 for rate in f["cnn_eval_samples_per_s"].values())
