"""Execute Homework 2 in the smoke profile and check what it produced."""
import math

import pytest
from conftest import ROOT, assert_clean_run, notebook_outputs_text

FIGURES = ["classifier_confusions",
           "fashion_examples", "ae_learning_curves", "ae_reconstructions", "dae_gaussian", "dae_masking",
           "ae_optimizers", "ae_regularization", "search_history", "search_importances", "final_ae_curves",
           "ae_reconstructions_by_epoch", "latent_clustering",
           "finetune_learning_speed", "finetune_few_labels", "latent_maps", "interpolation", "ae_samples",
           "vae_elbo", "vae_samples", "vae_manifold", "vae_latent_2d", "vae_beta_samples", "cvae_samples",
           "generator_scores", "generator_samples", "latent_size_mse", "gan_losses", "gan_samples_by_epoch",
           "gan_samples"]
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
                    "3 autoencoder cross-validation", "4.1 classifiers, all labels", "5 latent space", "6.1 VAE",
                    "7.2 DCGAN", "7.3 generator scores", "8 final evaluation"):
        assert section in m["wall_time_s"], section
    assert [r["latent"] for r in m["ae"]["sweep"]] == [2, 8, 16, 32, 64]
    for r in m["ae"]["sweep"]:
        assert "test_mse" not in r and 0 < r["val_mse"] < 0.2 and r["params"] > 1000  # not final models
    assert 0 < m["final_ae"]["test_mse"] < 0.2 and m["final_ae"]["config"]["latent"] == 32
    cv = m["final_ae"]["cv"]  # the final recipe, cross-validated on the training split
    assert len(cv["scores"]) == cv["folds"] >= 2 and all(0 < s < 0.2 for s in cv["scores"])
    assert len(m["dae"]["val"]) == 8 and all(r["noisy_input"] > 0 for r in m["dae"]["val"]) and "test" not in m["dae"]
    assert len(m["ae_compare"]) == 10 and all(is_number(r["final_val_mse"]) for r in m["ae_compare"])
    assert {r["search"] for r in m["search"]["rows"]} == {"tpe + pruning", "random"}
    assert all(r["trials"] >= 3 and r["repeats"] == 2 for r in m["search"]["rows"])
    # independent seeds: no two runs (of either search) share their first trial's parameters
    assert len(m["search"]["repeat_rows"]) == 4 and isinstance(m["search"]["best_on_bound"], dict)
    assert set(m["search"]["importances"]) == {"width", "dropout", "lr", "weight_decay"}


def test_finetune_metrics(hw2):
    _, m, _ = hw2
    ft = m["finetune"]
    assert set(ft["test_acc"]) == {"fine-tune", "HW1 CNN recipe"} and all(0.2 < a <= 1 for a in ft["test_acc"].values())
    assert [r["mode"] for r in ft["all_labels"]] == [*MODES, "HW1 CNN recipe"]
    recipe = ft["all_labels"][-1]  # Homework 1's CNN recipe, trained here at the same data and epochs
    assert 0.1 < recipe["val_acc"] <= 1 and recipe["samples_per_s"] > 0
    assert ft["hw1_cnn_recipe"]["num_epochs"] == ft["config"]["num_epochs"]
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
    # no Bernoulli decoder reconstructs below the grey levels' own entropy (150-230 nats for FashionMNIST images)
    assert 150 < m["vae"]["reconstruction_floor"] < m["vae"]["val"]["reconstruction"]
    rows = {r["generator"]: r for r in m["generative"]["rows"]}
    assert rows["real (other half)"]["frechet"] == min(r["frechet"] for r in rows.values()), \
        "generated images score better than real ones: the Fréchet distance is broken"
    assert all(0 <= r["class_entropy"] <= math.log(10) + 1e-9 for r in rows.values())
    assert all(0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 for r in rows.values())
    real = rows["real (other half)"]  # real images lie in the real manifold far more often than a poor generator
    assert real["precision"] > 0.5 and real["recall"] > 0.5
    assert 0 <= rows["CVAE prior"]["label_agreement"] <= 1


def test_checks_ran_and_passed(hw2):
    _, m, _ = hw2
    reads = m["test_reads"]["FashionMNIST"]  # each final model read the test set exactly once
    assert sorted(reads["log"]) == sorted(reads["final_models"]) and len(set(reads["log"])) == len(reads["log"])
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


def test_compared_with_homework1(hw2, smoke_run):
    """The smoke run of HW2 reads the HW1 smoke run's metrics: its recipe, its source and its stored predictions."""
    _, m, _ = hw2
    hw1 = smoke_run["hw1"][1]
    assert m["hw1_source"] and "hw1_metrics.json" in m["hw1_source"]
    recipe = m["finetune"]["hw1_cnn_recipe"]
    assert {k: v for k, v in recipe.items() if k != "num_epochs"} == \
        {k: v for k, v in hw1["cnn"]["config"].items() if k != "num_epochs"}
    assert all("HW1 final CNN" in row for row in m["finetune"]["per_class_f1"])


def test_clustering_beats_the_control(hw2):
    rows = hw2[1]["clustering"]["rows"]
    control = next(r for r in rows if r["features"] == "labels")
    real = [r for r in rows if r["features"] != "labels"]
    assert len(real) == 3 * 4 and all(0 <= r["nmi"] <= 1 and -1 <= r["ari"] <= 1 for r in real)
    assert abs(control["nmi"]) < 0.1 and abs(control["ari"]) < 0.05
    assert max(r["nmi"] for r in real) > control["nmi"] + 0.1, "no clustering finds more than chance"


def test_generator_intervals_and_floor(hw2):
    g = hw2[1]["generative"]
    rows = {r["generator"]: r for r in g["rows"]}
    assert all(r["frechet_low"] <= r["frechet_high"] for r in rows.values())
    floor = rows["real (other half)"]["frechet"]
    assert all(r["frechet"] > floor for name, r in rows.items() if name != "real (other half)"), \
        "the real-vs-real floor is below every generator"
    assert sorted(sum(g["ranked_groups"], [])) == sorted(rows)


def test_gan_trained_and_scored(hw2):
    """The DCGAN's losses are finite, D's probabilities are probabilities, its samples are scored like the others'
    (the samples' shape and range are checked by the Fréchet scoring's judge and by the figures)."""
    _, m, _ = hw2
    gan = m["gan"]
    assert gan["generator_params"] > 1000 and gan["discriminator_params"] > 1000 and gan["samples_per_s"] > 0
    assert 0 <= gan["final_d_real"] <= 1 and 0 <= gan["final_d_fake"] <= 1
    assert m["checks"]["gan_discriminator_overfit_loss"] < 0.1
    rows = {r["generator"]: r for r in m["generative"]["rows"]}
    for name in ("DCGAN", "CVAE prior", "real (other half)"):  # computed from samples, against the class asked for
        assert 0 <= rows[name]["label_agreement"] <= 1
    assert is_number(gan["final_d_loss"]) and is_number(gan["final_g_loss"])


def test_cifar_autoencoder(hw2):
    """Section 7.4 runs where CIFAR-10 is (`data/cifar10.npz`, from the course's copy) and says so where it is not."""
    nb, m, figures = hw2
    reads = m["test_reads"]
    if not (ROOT / "data" / "cifar10.npz").exists():
        assert "cifar_ae" not in m and "CIFAR-10" not in reads
        assert "CIFAR-10 is not here, so this section is skipped" in notebook_outputs_text(nb)
        return
    c = m["cifar_ae"]
    rows = {r["method"]: r for r in c["rows"]}
    ae, mean = rows["CIFAR-10 autoencoder"], rows["CIFAR-10 mean image"]
    assert 0 < ae["val_mse"] < mean["val_mse"], "the autoencoder does not beat the mean image"
    assert all(abs(r["psnr_db"] - 10 * math.log10(1 / r["val_mse"])) < 1e-9 for r in rows.values())
    assert 0 < c["test_mse"] < mean["val_mse"] and c["config"]["image_shape"] == [3, 32, 32]
    assert reads["CIFAR-10"]["log"] == ["CIFAR-10 autoencoder"]
    assert (figures / "cifar_reconstructions.png").stat().st_size > 1000
