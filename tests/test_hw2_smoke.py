"""Execute Homework 2 in the smoke profile and check what it produced."""
import math

import pytest
from conftest import assert_clean_run, notebook_outputs_text

FIGURES = ["fashion_examples", "ae_learning_curves", "ae_reconstructions", "dae_gaussian", "dae_masking",
           "ae_optimizers", "ae_regularization", "search_history", "search_importances", "final_ae_curves",
           "finetune_learning_speed", "finetune_few_labels", "latent_maps", "interpolation", "ae_samples",
           "vae_elbo", "vae_samples", "vae_manifold", "vae_latent_2d", "vae_beta_samples", "cvae_samples",
           "generator_scores", "generator_samples", "latent_size_mse"]
MODES = ("probe", "fine-tune", "scratch")


@pytest.fixture(scope="module")
def hw2(smoke_run):
    return smoke_run["hw2"]


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def test_no_errors_and_counts(hw2):
    assert_clean_run(hw2[0])


def test_metrics_schema(hw2):
    _, m, _ = hw2
    assert m["profile"] == "smoke" and isinstance(m["seed"], int)
    assert m["wall_time_s"]["total"] > 0 and all(is_number(v) and v >= 0 for v in m["wall_time_s"].values())
    for section in ("data", "1.2 latent-size sweep", "1.3 denoising autoencoder", "3 final autoencoder",
                    "4.1 classifiers, all labels", "5 latent space", "6.1 VAE", "7.2 generator scores",
                    "8 final evaluation"):
        assert section in m["wall_time_s"], section
    assert [r["latent"] for r in m["ae"]["sweep"]] == [2, 8, 16, 32, 64]
    for r in m["ae"]["sweep"]:
        assert 0 < r["test_mse"] < 0.2 and 0 < r["val_mse"] < 0.2 and r["params"] > 1000
    assert 0 < m["final_ae"]["test_mse"] < 0.2 and m["final_ae"]["config"]["latent"] == 32
    assert len(m["dae"]["test"]) == 8 and all(r["noisy_input"] > 0 for r in m["dae"]["test"])
    assert len(m["ae_compare"]) == 10 and all(is_number(r["final_val_mse"]) for r in m["ae_compare"])
    assert {r["search"] for r in m["search"]["rows"]} == {"tpe + pruning", "random"}
    assert all(r["trials"] >= 3 for r in m["search"]["rows"])
    assert set(m["search"]["importances"]) == {"width", "dropout", "lr", "weight_decay"}


def test_finetune_metrics(hw2):
    _, m, _ = hw2
    ft = m["finetune"]
    assert set(ft["test_acc"]) == set(MODES) and all(0.2 < a <= 1 for a in ft["test_acc"].values())
    assert [r["mode"] for r in ft["all_labels"]] == list(MODES)
    probe = next(r for r in ft["all_labels"] if r["mode"] == "probe")
    tuned = next(r for r in ft["all_labels"] if r["mode"] == "fine-tune")
    assert probe["trainable_params"] < tuned["trainable_params"], "the probe's encoder is not frozen"
    assert {r["labels"] for r in ft["few_labels"]} >= {100, 1000}
    assert len(ft["cv"]["scores"]) == ft["cv"]["folds"] and 0 < ft["cv"]["mean"] <= 1 and ft["cv"]["std"] >= 0
    assert len(m["hw1_comparison"]) >= 2


def test_latent_and_generative_metrics(hw2):
    _, m, _ = hw2
    assert {r["features"] for r in m["latent"]["probes"]} == {"autoencoder code", "pixel PCA"}
    assert abs(sum(m["latent"]["code_pca_explained"]) - 1) < 1e-3
    for scores in (m["vae"]["val"], m["vae"]["test"], m["cvae"]["test"]):
        assert scores["neg_elbo"] > 0 and scores["kl"] >= 0
        assert abs(scores["reconstruction"] + scores["kl"] - scores["neg_elbo"]) < 1e-3
    assert [r["beta"] for r in m["vae"]["beta"]] == [0.25, 1.0, 4.0]
    rows = {r["generator"]: r for r in m["generative"]["rows"]}
    assert rows["real (other half)"]["frechet"] == min(r["frechet"] for r in rows.values()), \
        "generated images score better than real ones: the Fréchet distance is broken"
    assert all(0 <= r["class_entropy"] <= math.log(10) + 1e-9 for r in rows.values())
    assert 0 <= rows["CVAE prior"]["label_agreement"] <= 1


def test_checks_ran_and_passed(hw2):
    _, m, _ = hw2
    assert m["checks"]["test_reads_before_final"] == 0
    assert m["checks"]["ae_one_batch_overfit_mse"] < 0.0125


def test_figures_exist(hw2):
    _, _, figures = hw2
    for name in FIGURES:
        for ext in ("png", "pdf"):
            path = figures / f"{name}.{ext}"
            assert path.exists() and path.stat().st_size > 1000, path


def test_search_printed(hw2):
    text = notebook_outputs_text(hw2[0])
    assert "tpe + pruning  best:" in text and "random         best:" in text
