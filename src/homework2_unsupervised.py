# %% [markdown] tags=["observation"]
# # Homework 2 — Unsupervised deep learning
#
# **Headline results** (full profile, 2-core CPU, 1647.5 s in all): the convolutional autoencoder reconstructs
# test images with an MSE of **0.00670** per pixel at latent size 32 (target 0.008); the fine-tuned encoder
# classifies them with **92.32%** accuracy (3-fold CV 91.72% ± 0.09%), ahead of the same network from scratch
# (92.04%; section 8 prints how it compares with Homework 1's classifiers); the VAE's test −ELBO is 242.25 nats
# per image; and the best generator is the plain autoencoder sampled through a Gaussian mixture fitted to its
# codes (Fréchet distance 5.938, real images 0.2323).
#
# This notebook solves the unsupervised homework end to end on a laptop CPU, on FashionMNIST:
#
# 1. **A convolutional autoencoder**: learning curves, reconstructions, a sweep over the latent size, and a
#    denoising autoencoder for Gaussian and masking noise.
# 2. **Optimizers and regularization** for the autoencoder, compared at equal budget.
# 3. **Hyper-parameter search** with Optuna (TPE sampler with median pruning) against random search at the
#    same number of trials; the winner is trained on the whole training split.
# 4. **Fine-tuning for classification**: a linear probe on the frozen encoder, full fine-tuning, and the same
#    network from scratch, with all labels and with few, compared with Homework 1; accuracy by k-fold CV.
# 5. **The latent space**: PCA and t-SNE, k-NN and linear probes of the codes, interpolation, and new
#    images decoded from a Gaussian and a Gaussian mixture fitted to the codes.
# 6. **A variational autoencoder**: ELBO terms during training, samples from the prior, a 2-D latent
#    manifold, and the effect of β.
# 7. **Beyond the assignment**: a conditional VAE, and all generators scored with a Fréchet distance in the
#    feature space of a classifier trained in this notebook, for quality, confidence and diversity.
# 8. **Final evaluation on the test set**, touched once, here and nowhere else.
#
# Every number quoted in prose is printed by the cell above it, and all headline numbers are collected in
# `report/hw2_metrics.json` and the table of the Conclusion. Pixels are in [0, 1], so a mean squared error
# (MSE) is per pixel on that scale. Results on a GPU may differ in the last digits from the CPU run stored here.

# %% [markdown]
# ## Setup
# The notebook runs alone, in Colab or in an empty folder: it needs Python 3.10 or newer and the packages of
# `requirements.txt`. In Colab the next cell installs Optuna, which Colab lacks; elsewhere a missing Optuna
# only removes the TPE search of section 3 (the random search runs without it).

# %%
import sys

if sys.version_info < (3, 10):  # the code uses 3.10 syntax; fail here with a message, not deep below
    raise RuntimeError(f"This notebook needs Python 3.10 or newer; this kernel runs {sys.version.split()[0]}.")

# standard library
import contextlib
import copy
import gzip
import json
import math
import os
import platform
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

# numerics and plotting
import matplotlib.pyplot as plt
import numpy as np
from scipy.linalg import sqrtm
from scipy.stats import norm

# deep learning
import torch
import torch.nn as nn
import torch.nn.functional as F

# model selection, search and latent-space tools
import importlib.util
import warnings

if "google.colab" in sys.modules and importlib.util.find_spec("optuna") is None:
    get_ipython().run_line_magic("pip", "install -q optuna")  # Colab lacks Optuna; elsewhere install it yourself
warnings.filterwarnings("ignore", message="IProgress not found")  # optuna imports tqdm.auto; no widgets here
try:
    import optuna
except ImportError:  # section 3 then runs its random search alone, with a sampler of its own
    optuna = None
    print("optuna is not installed: section 3 runs the random search only (pip install optuna adds TPE)")
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import TSNE
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

# %% [markdown]
# ## Parameters
# Every knob lives in the next cell (tagged `parameters` for papermill), each with an environment override.
# `PROFILE` picks the budgets from one table: `smoke` (CI, about a minute), `quick` (a grader's laptop,
# under 10 minutes) or `full` (the reported results). The code below never branches on the profile.
# Figures and metrics go to `OUTPUT_DIR`: `report/` for `full`, whose outputs are the committed ones, and
# `build/<profile>/` for the others, so that a smaller run never overwrites the reported results.
# `HW1_METRICS_PATH` points at Homework 1's metrics, which section 4 compares with when the file is there.

# %% tags=["parameters"]
PROFILE = os.environ.get("HW_PROFILE", "full")
SEED = int(os.environ.get("HW_SEED", "0"))
DEVICE = os.environ.get("HW_DEVICE", "auto")  # auto, cpu, cuda, mps
NUM_THREADS = int(os.environ.get("HW_THREADS", "0"))  # 0 keeps PyTorch's default
DATA_DIR = Path(os.environ.get("HW_DATA_DIR", "data"))
# the full run writes the committed report/; any other profile writes under build/<profile>/
OUTPUT_DIR = Path(os.environ.get("HW_OUTPUT_DIR", "report" if PROFILE == "full" else f"build/{PROFILE}"))
FIGURE_DIR = Path(os.environ.get("HW_FIGURE_DIR", OUTPUT_DIR / "figures" / "hw2"))
METRICS_PATH = Path(os.environ.get("HW_METRICS_PATH", OUTPUT_DIR / "hw2_metrics.json"))
# Homework 1's metrics of the same profile: the committed ones for full, build/<profile>/ otherwise
HW1_METRICS_PATH = Path(os.environ.get("HW_HW1_METRICS_PATH",
                                       (Path("report") if PROFILE == "full" else OUTPUT_DIR) / "hw1_metrics.json"))

PROFILES = {
    # n_*: images used; *_epochs: passes over them; *_trials: search budgets; *_steps: gradient steps
    "smoke": dict(n_train=3000, n_val=1000, n_val_small=500, n_test=2000, sweep_epochs=1, dae_epochs=1,
                  n_compare=1000, compare_epochs=1, n_search=1000, search_epochs=2, search_trials=3,
                  final_ae_epochs=1, ft_epochs=1, few_label_steps=20, cv_folds=2, cv_epochs=1, tsne_points=300,
                  vae_epochs=1, vae2d_epochs=1, n_beta=1000, beta_epochs=1, cvae_epochs=1, n_generate=500),
    "quick": dict(n_train=15000, n_val=10000, n_val_small=2000, n_test=10000, sweep_epochs=2, dae_epochs=2,
                  n_compare=4000, compare_epochs=2, n_search=4000, search_epochs=3, search_trials=6,
                  final_ae_epochs=5, ft_epochs=3, few_label_steps=150, cv_folds=3, cv_epochs=2, tsne_points=1500,
                  vae_epochs=4, vae2d_epochs=2, n_beta=6000, beta_epochs=2, cvae_epochs=3, n_generate=2000),
    "full": dict(n_train=50000, n_val=10000, n_val_small=2000, n_test=10000, sweep_epochs=3, dae_epochs=5,
                 n_compare=8000, compare_epochs=5, n_search=6000, search_epochs=4, search_trials=12,
                 final_ae_epochs=15, ft_epochs=12, few_label_steps=400, cv_folds=3, cv_epochs=5, tsne_points=3000,
                 vae_epochs=12, vae2d_epochs=5, n_beta=25000, beta_epochs=4, cvae_epochs=7, n_generate=5000),
}
LATENT_SIZES = (2, 8, 16, 32, 64)
LABEL_COUNTS = (100, 1000)  # few-label regimes; "all" (the whole training split) is added below
BETAS = (0.25, 1.0, 4.0)

# %%
if PROFILE not in PROFILES:
    raise ValueError(f"Unknown PROFILE {PROFILE!r}: set HW_PROFILE to one of {sorted(PROFILES)}.")
P = PROFILES[PROFILE]
print(f"profile {PROFILE}: {P}")
NOTEBOOK_START = time.perf_counter()

# %% include: shared_helpers.py

# %% [markdown]
# ## Data
# The images stay in [0, 1] (no standardisation), because the decoders output pixel intensities through a
# sigmoid. The split is Homework 1's: a stratified 50 000 / 10 000 split of the training set with the same
# seed, so the classifiers of section 4 are compared with Homework 1 on the same validation images. The test
# set goes into a `SealedTestSet` and is read only in section 8.

# %%
with section("data"):
    set_seed(SEED)
    fashion = load_fashion_mnist(DATA_DIR)
    X_all = fashion["train_images"].float().div(255).unsqueeze(1).to(device)  # (60000, 1, 28, 28)
    y_all = fashion["train_labels"].to(device)
    test_set = SealedTestSet(fashion["test_images"].float().div(255).unsqueeze(1).to(device),
                             fashion["test_labels"].to(device))
    train_idx, val_idx = train_test_split(np.arange(len(y_all)), test_size=10_000, random_state=SEED,
                                          stratify=y_all.cpu().numpy())
assert len(np.intersect1d(train_idx, val_idx)) == 0, "train and validation overlap"
assert np.bincount(y_all[val_idx].cpu(), minlength=10).tolist() == [1000] * 10, "validation is not stratified"
subset = np.random.default_rng(SEED).permutation(train_idx)  # one fixed order: smaller subsets are prefixes
X_train, y_train = X_all[subset[:P["n_train"]]], y_all[subset[:P["n_train"]]]
X_val, y_val = X_all[val_idx[:P["n_val"]]], y_all[val_idx[:P["n_val"]]]
X_val_small = X_val[:P["n_val_small"]]  # for searches and comparisons, which evaluate after every epoch
print(f"train {len(X_train)} of {len(train_idx)}, validation {len(X_val)}, test {len(test_set)} (sealed)")
print(f"pixel mean {X_train.mean():.4f}, pixel variance {X_train.var():.4f} (an MSE to compare with)")


# %%
def plot_image_rows(rows: dict, title="", size=1.0):
    """One row of images per entry of `rows` (label -> tensor of shape (n, 28, 28) or (n, 1, 28, 28))."""
    rows = {k: np.asarray(v.detach().cpu()).reshape(len(v), 28, 28) for k, v in rows.items()}
    ncols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(size * ncols, size * len(rows) + 0.5), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


first_of_class = [int(torch.nonzero(y_val == c)[0]) for c in range(10)]
GRID = X_val[first_of_class]  # the fixed grid of originals used by every reconstruction figure
fig = plot_image_rows({"validation": GRID}, "FashionMNIST: one validation image per class")
savefig(fig, "fashion_examples")

# %% [markdown]
# ## 1. A convolutional autoencoder
# ### 1.1 Model and checks
# The encoder halves the resolution twice with 4×4 convolutions of stride 2 (28 → 14 → 7), each followed by
# batch norm and ReLU, then maps the 2·width × 7 × 7 features to the code with one linear layer. The decoder
# mirrors it with transposed convolutions and ends with a sigmoid. The strided layers are the cheapest design
# that met the reconstruction target on this CPU: a full-resolution 3×3 layer in front cost 3× the time for
# a small gain. The same class serves the variational and conditional models of sections 6 and 7: the code
# layer then outputs a mean and a log-variance, and a class label (one-hot) can join the code.

# %%
@dataclass(frozen=True)
class AEConfig:
    latent: int = 32
    width: int = 32  # channels after the first layer; the second has twice as many
    dropout: float = 0.0  # on the features that enter the code layer
    batch_norm: bool = True
    variational: bool = False  # the code layer outputs mean and log-variance of q(z|x)
    n_classes: int = 0  # > 0: conditional, the one-hot label joins the features and the code


class ChannelsLast(nn.Module):
    def forward(self, x):
        return x.contiguous(memory_format=torch.channels_last)


def resample(c_in, c_out, batch_norm, up=False):
    """Halve (or, with up=True, double) the resolution: 4x4 convolution of stride 2, batch norm, ReLU."""
    conv = (nn.ConvTranspose2d if up else nn.Conv2d)(c_in, c_out, 4, stride=2, padding=1, bias=not batch_norm)
    return [conv] + ([nn.BatchNorm2d(c_out)] if batch_norm else []) + [nn.ReLU()]


class ConvAutoencoder(nn.Module):
    def __init__(self, cfg: AEConfig):
        super().__init__()
        self.cfg, w, bn, k = cfg, cfg.width, cfg.batch_norm, cfg.n_classes
        self.features = nn.Sequential(
            ChannelsLast(),
            *resample(1, w, bn),  # 28x28 -> 14x14
            *resample(w, 2 * w, bn),  # 14x14 -> 7x7
            nn.Flatten(), nn.Dropout(cfg.dropout))
        self.to_code = nn.Linear(2 * w * 49 + k, cfg.latent * (2 if cfg.variational else 1))
        self.from_code = nn.Sequential(nn.Linear(cfg.latent + k, 2 * w * 49), nn.ReLU(),
                                       nn.Unflatten(1, (2 * w, 7, 7)), ChannelsLast())
        self.upsample = nn.Sequential(
            *resample(2 * w, w, bn, up=True),  # 7x7 -> 14x14
            nn.ConvTranspose2d(w, 1, 4, stride=2, padding=1))  # 14x14 -> 28x28, logits

    def with_label(self, h, labels):
        return torch.cat([h, F.one_hot(labels, self.cfg.n_classes).float()], 1) if self.cfg.n_classes else h

    def encode(self, x, labels=None):
        """The code (for a VAE: the mean of q(z|x))."""
        return self.to_code(self.with_label(self.features(x), labels))[:, :self.cfg.latent]

    def decode_logits(self, z, labels=None):
        return self.upsample(self.from_code(self.with_label(z, labels)))

    def decode(self, z, labels=None):
        return torch.sigmoid(self.decode_logits(z, labels))

    def forward(self, x):
        return self.decode(self.encode(x))


def build_ae(cfg: AEConfig, seed=SEED) -> ConvAutoencoder:
    torch.manual_seed(seed)
    return ConvAutoencoder(cfg).to(device).to(memory_format=torch.channels_last)

# %% [markdown]
# Two checks before any training: the shape trace of one batch through the encoder and the decoder, and a
# one-batch overfit test (a correct model and loss must reconstruct 64 fixed images far better than the
# pixel variance, the MSE of predicting the mean image).

# %%
ae = build_ae(AEConfig())
print("encoder:")
encoder_trace = shape_trace(nn.Sequential(*ae.features, ae.to_code), X_train[:64])
print("decoder:")
decoder_trace = shape_trace(nn.Sequential(*ae.from_code, *ae.upsample, nn.Sigmoid()), torch.zeros(64, 32))
assert encoder_trace[-1][1] == (64, 32) and decoder_trace[-1][1] == (64, 1, 28, 28)
print(f"parameters: {count_parameters(ae):,}")


def reconstruction_mse(model, xb, target):
    return F.mse_loss(model(xb), target)


overfit_history = fit(ae, reconstruction_mse, (X_train[:64], X_train[:64]),
                      optimizer=torch.optim.Adam(ae.parameters(), 3e-3), num_epochs=300, batch_size=64, verbose=False)
overfit_mse = evaluate(ae, reconstruction_mse, X_train[:64], X_train[:64])["loss"]
print(f"one-batch overfit: MSE {overfit_history['train_loss'][0]:.4f} -> {overfit_mse:.5f} "
      f"(pixel variance of the batch {X_train[:64].var():.4f})")
assert overfit_mse < 0.1 * X_train[:64].var(), "the autoencoder cannot fit 64 images: model or loss is broken"
METRICS["checks"] = {"ae_one_batch_overfit_mse": overfit_mse}

# %% [markdown]
# Every autoencoder is trained by `train_autoencoder`: a `TrainConfig` gives the optimizer (from the registry),
# the learning-rate schedule (linear warm-up over the first 20% of the steps, then cosine decay) and the
# budget; the shared `fit` does the rest. The loss is the MSE between the output and the clean image, so a
# `transform` that corrupts the input batch turns the same call into denoising training.

# %%
@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    num_epochs: int = 5
    schedule: str = "warmup_cosine"
    label_smoothing: float = 0.0  # classifiers only


def warmup_cosine(step: int, steps: int, warmup: float = 0.2) -> float:
    """Learning-rate factor: linear warm-up over the first 20% of steps, then cosine decay to zero."""
    n_warm = max(1, int(warmup * steps))
    if step < n_warm:
        return (step + 1) / n_warm
    return 0.5 * (1 + math.cos(math.pi * (step - n_warm) / max(1, steps - n_warm)))


SCHEDULES = {
    "constant": lambda opt, steps: None,
    "warmup_cosine": lambda opt, steps: torch.optim.lr_scheduler.LambdaLR(opt, lambda t: warmup_cosine(t, steps)),
}


def make_optimizer(model, cfg: TrainConfig, n_train: int):
    params = [p for p in model.parameters() if p.requires_grad]  # a frozen encoder is not optimised
    optimizer = OPTIMIZERS[cfg.optimizer](params, cfg.lr, cfg.weight_decay)
    return optimizer, SCHEDULES[cfg.schedule](optimizer, cfg.num_epochs * math.ceil(n_train / cfg.batch_size))


def train_autoencoder(model, cfg: TrainConfig, X, X_val=None, transform=None, name="ae", verbose=True,
                      on_epoch_end=None, seed=SEED) -> dict:
    optimizer, scheduler = make_optimizer(model, cfg, len(X))
    return fit(model, reconstruction_mse, (X, X), None if X_val is None else (X_val, X_val), optimizer=optimizer,
               num_epochs=cfg.num_epochs, batch_size=cfg.batch_size, scheduler=scheduler, transform=transform,
               generator=torch.Generator().manual_seed(seed), on_epoch_end=on_epoch_end, name=name, verbose=verbose)

# %% [markdown]
# ### 1.2 Learning curves, reconstructions and the latent size
# One autoencoder per latent size, each trained on the training split with the same budget, optimizer and
# seed. The latent-32 model is the baseline whose curves and reconstructions are shown. The test MSE of each
# size is measured in section 8; here they are compared on validation.

# %%
AE_TRAIN = TrainConfig(num_epochs=P["sweep_epochs"])
sweep_models, sweep_histories, sweep_rows = {}, {}, []
with section("1.2 latent-size sweep"):
    for latent in LATENT_SIZES:
        sweep_models[latent] = build_ae(AEConfig(latent=latent))
        sweep_histories[latent] = train_autoencoder(sweep_models[latent], AE_TRAIN, X_train, X_val, name=f"ae-{latent}")
        h = sweep_histories[latent]
        sweep_rows.append({"latent": latent, "params": count_parameters(sweep_models[latent]),
                           "train_mse": h["train_loss"][-1], "val_mse": h["val_loss"][-1],
                           "samples_per_s": round(h["samples_per_s"]), "wall_s": round(h["wall_s"], 1)})
show_table(sweep_rows)
METRICS["ae"] = {"sweep": sweep_rows, "sweep_config": asdict(AE_TRAIN)}

# %%
fig = plot_curves({f"latent {k}": h for k, h in sweep_histories.items()}, logy=True,
                  ylabels=("training MSE", "validation MSE"), title="Convolutional autoencoders: learning curves")
savefig(fig, "ae_learning_curves")
baseline_ae = sweep_models[32]
fig = plot_image_rows({"original": GRID, **{f"latent {k}": predict(m, GRID) for k, m in sweep_models.items()}},
                      "Validation images and their reconstructions, by latent size")
savefig(fig, "ae_reconstructions")


# %% [markdown] tags=["observation"]
# **Observation.** The reconstruction error falls steadily with the code size: after 3 epochs the validation
# MSE is 0.0323 at latent 2, 0.01001 at 32 and 0.007537 at 64. Training and validation MSE are equal at every
# size (0.01001 for both at 32), so at this budget the autoencoders underfit: more training, not more
# regularization, is what they need, and the final autoencoder of section 3 gets it. With 2 dimensions only a
# coarse silhouette survives and the dress comes back as a T-shirt; from 8 on class and shape are kept, and
# details such as the bag's handle sharpen slowly as the code grows.

# %% [markdown]
# ### 1.3 Denoising autoencoder
# A denoising autoencoder sees a corrupted image and is trained to output the clean one. Two corruptions,
# each at four levels: additive Gaussian noise of standard deviation σ (clipped to [0, 1]) and masking noise
# that sets a fraction p of the pixels to zero. One model is trained *blind*: every training image gets one
# of the two noise types at a level drawn uniformly (σ up to 0.5, p up to 0.75), so it must infer the
# corruption from the image. It is compared, at every level, with the noisy input itself and with the plain
# latent-32 autoencoder of 1.2 fed the same noisy images.

# %%
NOISES = {
    "gaussian": lambda X, level, g: (X + level * torch.randn(X.shape, generator=g).to(X.device)).clamp(0, 1),
    "masking": lambda X, level, g: X * (torch.rand(X.shape, generator=g).to(X.device) >= level),
}
NOISE_LEVELS = {"gaussian": (0.1, 0.2, 0.3, 0.5), "masking": (0.1, 0.25, 0.5, 0.75)}
MAX_LEVEL = {kind: max(levels) for kind, levels in NOISE_LEVELS.items()}


def blind_noise(X, g):
    """Per image: Gaussian or masking noise (equally likely) at a level uniform in [0, max level]."""
    level = torch.rand(len(X), 1, 1, 1, generator=g).to(X.device)
    gaussian = NOISES["gaussian"](X, level * MAX_LEVEL["gaussian"], g)
    masked = NOISES["masking"](X, level * MAX_LEVEL["masking"], g)
    return torch.where((torch.rand(len(X), 1, 1, 1, generator=g) < 0.5).to(X.device), gaussian, masked)


def corrupt(X, kind, level, seed=SEED):
    """Deterministic corruption for evaluation: the same noise for every model compared."""
    return NOISES[kind](X, level, torch.Generator().manual_seed(seed))

# %%
with section("1.3 denoising autoencoder"):
    dae = build_ae(AEConfig(latent=32))
    dae_history = train_autoencoder(dae, replace(AE_TRAIN, num_epochs=P["dae_epochs"]), X_train,
                                    transform=blind_noise, name="dae")


def denoising_table(models: dict, X) -> list[dict]:
    rows = []
    for kind, levels in NOISE_LEVELS.items():
        for level in levels:
            noisy = corrupt(X, kind, level)
            row = {"noise": kind, "level": level, "noisy_input": F.mse_loss(noisy, X).item()}
            rows.append(row | {name: F.mse_loss(predict(m, noisy), X).item() for name, m in models.items()})
    return rows


dae_rows = show_table(denoising_table({"plain_ae": baseline_ae, "denoising_ae": dae}, X_val))
METRICS["dae"] = {"val": dae_rows, "epochs": P["dae_epochs"], "wall_s": dae_history["wall_s"]}

# %%
examples = GRID[:8]
for kind in NOISE_LEVELS:
    level = NOISE_LEVELS[kind][2]
    noisy = corrupt(examples, kind, level)
    fig = plot_image_rows({f"{kind} {level}": noisy, "plain AE": predict(baseline_ae, noisy),
                           "denoising AE": predict(dae, noisy), "clean": examples},
                          f"Denoising {kind} noise (level {level}) on validation images")
    savefig(fig, f"dae_{kind}")


# %% [markdown] tags=["observation"]
# **Observation.** The blind denoising autoencoder beats the plain one at every level, and its error grows
# slowly with the corruption: from 0.01064 to 0.01757 for Gaussian σ 0.1 → 0.5 and from 0.01079 to 0.01874 for
# masking p 0.1 → 0.75, while the plain autoencoder's reaches 0.03866 and 0.1402 (the noisy input itself is at
# 0.1175 and 0.1561). Only at the lightest Gaussian noise is the noisy image itself closer to the clean one
# (0.006913) than any reconstruction: there the bottleneck costs more than the noise does.

# %% [markdown]
# ## 2. Optimizers and regularization
# The latent-32 autoencoder trained on the same 8 000 images, from the same initial weights and with the
# same batch order, for the same number of epochs; only the optimizer or one regularizer changes. Each
# optimizer runs at a learning rate typical for it, with the warm-up + cosine schedule. The regularizers are
# added to the Adam baseline one at a time: decoupled weight decay (AdamW), dropout on the features that
# enter the code, removing batch norm, and small input noise (the denoising objective as a regularizer).
# Validation MSE is measured on 2 000 held-out images after every epoch.

# %%
compare_X = X_train[:P["n_compare"]]
BASE = TrainConfig(optimizer="adam", weight_decay=0.0, num_epochs=P["compare_epochs"])
AE_LR = {"sgd": 0.5, "momentum": 0.05, "nesterov": 0.05, "rmsprop": 1e-3, "adam": 2e-3, "adamw": 2e-3}
COMPARE = {name: (AEConfig(), replace(BASE, optimizer=name, lr=lr, weight_decay=0.05 if name == "adamw" else 0.0),
                  None) for name, lr in AE_LR.items()}
COMPARE |= {
    "adam + dropout 0.2": (AEConfig(dropout=0.2), BASE, None),
    "adam, no batch norm": (AEConfig(batch_norm=False), BASE, None),
    "adam + input noise σ 0.1": (AEConfig(), BASE, lambda X, g: NOISES["gaussian"](X, 0.1, g)),
    "adam, constant lr": (AEConfig(), replace(BASE, schedule="constant"), None),
}

# %%
compare_histories, compare_rows = {}, []
with section("2 optimizers and regularization"):
    for name, (mcfg, tcfg, transform) in COMPARE.items():
        compare_histories[name] = train_autoencoder(build_ae(mcfg), tcfg, compare_X, X_val_small,
                                                    transform=transform, name=name, verbose=False)
        h = compare_histories[name]
        compare_rows.append({"run": name, "lr": tcfg.lr, "final_train_mse": h["train_loss"][-1],
                             "final_val_mse": h["val_loss"][-1], "best_val_mse": min(h["val_loss"]),
                             "samples_per_s": round(h["samples_per_s"])})
compare_rows = show_table(compare_rows, sort_by="final_val_mse")
METRICS["ae_compare"] = compare_rows

# %%
optimizer_runs = {k: compare_histories[k] for k in AE_LR}
fig = plot_curves(optimizer_runs, colors=COLORS, logy=True, ylabels=("training MSE", "validation MSE"),
                  title="Autoencoder: optimizers at equal budget")
savefig(fig, "ae_optimizers")
regularizer_runs = {k: compare_histories[k] for k in ["adam", *list(COMPARE)[len(AE_LR):]]}
fig = plot_curves(regularizer_runs, logy=True, ylabels=("training MSE", "validation MSE"),
                  title="Autoencoder: regularization on top of Adam")
savefig(fig, "ae_regularization")


# %% [markdown] tags=["observation"]
# **Observation.** The adaptive optimizers win at equal budget: Adam and AdamW end at 0.01583 and 0.01581,
# RMSprop at 0.01783, while SGD, momentum and Nesterov stay near 0.03 (0.02982, 0.03165, 0.03126) at their
# learning rates; AdamW's decoupled weight decay changes nothing here because the model underfits. For the
# same reason no regularizer helps: input noise (0.01618) and dropout (0.01654) cost a little, and removing
# batch norm costs most (0.01847). The constant learning rate beats warm-up + cosine (0.01391): over only 5
# epochs the schedule spends a fifth of the steps warming up and the last ones at tiny steps. That is why the
# longer runs keep the schedule, where it pays off in the final epochs.

# %% [markdown]
# ## 3. Hyper-parameter search: Optuna against random search
# Both searches optimise the same objective: the validation MSE of an autoencoder trained for a few epochs on
# 6 000 training images, over the learning rate, weight decay, width and dropout. The first uses
# Optuna's TPE sampler, which models which regions of the space give good trials, with a median pruner that
# stops a trial whose validation MSE after an epoch is worse than the median of earlier trials at that epoch.
# The second samples the same space uniformly (Optuna's `RandomSampler`, no pruning) for the same number of
# trials. The latent size is not searched but fixed at 32: a larger code can only lower the reconstruction
# error (section 1.2 shows it at every size), so a search driven by that error would simply pick the largest
# size allowed. The latent size is a compression choice, and 32 is the size the reconstruction target is
# stated for. (A first version searched it too; with a few epochs per trial the noise of the short runs
# outweighed it and the search picked 16, the wrong answer for a long run.)

# %%
def suggest_config(trial) -> tuple[AEConfig, TrainConfig]:
    mcfg = AEConfig(latent=32, width=trial.suggest_categorical("width", [16, 24, 32]),
                    dropout=trial.suggest_float("dropout", 0.0, 0.3))
    tcfg = TrainConfig(lr=trial.suggest_float("lr", 3e-4, 1e-2, log=True),
                       weight_decay=trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
                       num_epochs=P["search_epochs"])
    return mcfg, tcfg


class ReportToTrial:
    """on_epoch_end callback: report the validation MSE to Optuna and stop the trial if the pruner says so."""

    def __init__(self, trial, X_val):
        self.trial, self.X_val, self.epochs = trial, X_val, 0

    def __call__(self, epoch, model):
        self.epochs = epoch
        mse = evaluate(model, reconstruction_mse, self.X_val, self.X_val)["loss"]
        self.trial.set_user_attr("epochs", epoch)
        self.trial.report(mse, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned()  # only Optuna's pruner ever says so
        self.trial.set_user_attr("val_mse", mse)


def objective(trial) -> float:
    mcfg, tcfg = suggest_config(trial)
    callback = ReportToTrial(trial, X_val_small)
    train_autoencoder(build_ae(mcfg), tcfg, X_train[:P["n_search"]], on_epoch_end=callback, verbose=False)
    return trial.user_attrs["val_mse"]

# %% [markdown]
# Without Optuna (a bare Python install), the random search still runs: `RandomSearch` draws the same kinds of
# values (uniform categories, log-uniform or uniform floats) and records its trials the way an Optuna study
# does, so the table and the figure below read both alike. The TPE search and the importances need Optuna.

# %%
class RandomTrial:
    """The part of Optuna's Trial that suggest_config and ReportToTrial use, sampling uniformly with NumPy;
    with `params` it returns those values instead, like Optuna's FixedTrial."""

    def __init__(self, number: int, rng: np.random.Generator | None = None, params: dict | None = None):
        self.number, self.rng, self.params = number, rng, dict(params or {})
        self.user_attrs, self.intermediate_values, self.value, self.state = {}, {}, None, "COMPLETE"

    def suggest_categorical(self, name, choices):
        if name not in self.params:
            self.params[name] = choices[int(self.rng.integers(len(choices)))]
        return self.params[name]

    def suggest_float(self, name, low, high, log=False):
        if name not in self.params:
            self.params[name] = float(math.exp(self.rng.uniform(math.log(low), math.log(high))) if log
                                      else self.rng.uniform(low, high))
        return self.params[name]

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value

    def report(self, value, step):
        self.intermediate_values[step] = value

    def should_prune(self) -> bool:
        return False


class RandomSearch:
    """A minimal stand-in for an Optuna study with a random sampler: trials, best_value, best_params."""

    def __init__(self, seed: int):
        self.rng, self.trials = np.random.default_rng(seed), []

    def optimize(self, objective, n_trials: int):
        for _ in range(n_trials):
            trial = RandomTrial(len(self.trials), self.rng)
            trial.value = objective(trial)
            self.trials.append(trial)

    @property
    def best_trial(self):
        return min(self.trials, key=lambda t: t.value)

    best_value = property(lambda self: self.best_trial.value)
    best_params = property(lambda self: self.best_trial.params)


def is_pruned(trial) -> bool:
    return getattr(trial.state, "name", trial.state) == "PRUNED"

# %%
if optuna is not None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = max(2, P["search_trials"] // 3)
    SEARCHES = {  # name -> a function that returns a fresh study
        "tpe + pruning": lambda: optuna.create_study(
            direction="minimize", sampler=optuna.samplers.TPESampler(seed=SEED, n_startup_trials=startup),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=1)),
        "random": lambda: optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=SEED),
                                              pruner=optuna.pruners.NopPruner()),
    }
else:
    SEARCHES = {"random": lambda: RandomSearch(SEED)}
studies, search_rows = {}, []
for name, make_study in SEARCHES.items():
    with section(f"3 search: {name}"):
        start = time.perf_counter()
        studies[name] = make_study()
        studies[name].optimize(objective, n_trials=P["search_trials"])
        trials = studies[name].trials
        search_rows.append({"search": name, "trials": len(trials), "best_val_mse": studies[name].best_value,
                            "pruned": sum(is_pruned(t) for t in trials),
                            "epochs_trained": sum(t.user_attrs.get("epochs", 0) for t in trials),
                            "wall_s": round(time.perf_counter() - start, 1)})
show_table(search_rows)
for name, study in studies.items():
    print(f"{name:14s} best: {study.best_params}")


# %%
def plot_search_history(studies: dict) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for i, (name, study) in enumerate(studies.items()):
        values = [t.value if t.value is not None else math.nan for t in study.trials]
        pruned = [t.number for t in study.trials if is_pruned(t)]
        ax.plot(np.fmin.accumulate(np.nan_to_num(values, nan=np.inf)), color=f"C{i}", label=f"{name}: best so far")
        ax.scatter(range(len(values)), values, color=f"C{i}", s=14, alpha=0.6)
        last = [study.trials[n].intermediate_values[max(study.trials[n].intermediate_values)] for n in pruned]
        ax.scatter(pruned, last, marker="x", color=f"C{i}", s=20,
                   label=f"{name}: pruned (last reported MSE)" if pruned else None)
    ax.set(xlabel="trial", ylabel="validation MSE", yscale="log", title="Optimization history")
    ax.legend(fontsize=7)
    return fig


def plot_importances(importances: dict, title="") -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 2.8))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set(xlabel="importance (fANOVA, share of the variance of the objective)", title=title)
    return fig


fig = plot_search_history(studies)
savefig(fig, "search_history")
if optuna is not None:
    importances = optuna.importance.get_param_importances(studies["tpe + pruning"])
    fig = plot_importances(importances, "Hyper-parameter importances (TPE study)")
    savefig(fig, "search_importances")
    print("importances:", {k: round(v, 3) for k, v in importances.items()})
else:
    importances = {}
    print("importances skipped: they need Optuna")


# %% [markdown] tags=["observation"]
# **Observation.** Both searches end at the same level (best validation MSE 0.01868 for TPE, 0.01857 for
# random), but TPE with pruning trained 36 epochs instead of 48 (4 of its 12 trials pruned) and took 69.4 s
# instead of 83.9 s. With 12 trials, the model behind TPE has had little to learn from; the pruner saves
# compute from the start. Both winners use the widest network and a large learning rate, and the importances
# put weight decay (0.381), dropout (0.338) and learning rate (0.279) ahead of width (0.002), which every good
# trial set to 32. The random search's best configuration, the lower of the two, becomes the final autoencoder.

# %% [markdown]
# **The final autoencoder** takes the configuration with the lowest validation MSE of either search and trains
# it on the whole training split for the full budget, with validation after every epoch. Its test MSE is the
# headline reconstruction number (section 8).

# %%
best_study = min(studies.values(), key=lambda s: s.best_value)
final_ae_cfg, final_ae_train = suggest_config(RandomTrial(0, params=best_study.best_params))
final_ae_train = replace(final_ae_train, num_epochs=P["final_ae_epochs"])
print(f"final autoencoder: {final_ae_cfg}\n                   {final_ae_train}")
with section("3 final autoencoder"):
    final_ae = build_ae(final_ae_cfg)
    final_ae_history = train_autoencoder(final_ae, final_ae_train, X_train, X_val, name="final-ae")
print(f"validation MSE {final_ae_history['val_loss'][-1]:.5f}, {count_parameters(final_ae):,} parameters, "
      f"{final_ae_history['samples_per_s']:.0f} samples/s, {final_ae_history['wall_s']:.0f} s")
METRICS["search"] = {"rows": search_rows, "importances": importances,
                     "best_params": {k: s.best_params for k, s in studies.items()}}
METRICS["final_ae"] = {"config": asdict(final_ae_cfg) | asdict(final_ae_train), "params": count_parameters(final_ae),
                       "val_mse": final_ae_history["val_loss"][-1], "samples_per_s": final_ae_history["samples_per_s"],
                       "train_wall_s": final_ae_history["wall_s"]}
fig = plot_curves({"final autoencoder": final_ae_history}, logy=True, ylabels=("training MSE", "validation MSE"),
                  title=f"Final autoencoder (latent {final_ae_cfg.latent})")
savefig(fig, "final_ae_curves")

# %% [markdown]
# ## 4. Fine-tuning the encoder for classification
# The classifier is the final autoencoder's encoder (image → 32-d code) followed by a head on the code. The
# codes of an autoencoder have arbitrary scales, so every head starts with a batch norm of the code. Three
# ways to train it, all with the same recipe (AdamW, lr 3e-3, weight decay 5e-4, label smoothing 0.1,
# warm-up + cosine, batch 128):
# - **linear probe**: the pretrained encoder is frozen (its batch-norm statistics too) and the head is linear
#   (batch norm, then code → 10 logits), so it measures what the code alone makes linearly separable;
# - **fine-tune**: the pretrained encoder is the starting point, the head is a small MLP (code → 256 → 10, ReLU,
#   dropout 0.3), and every weight learns;
# - **scratch**: the fine-tune architecture from random weights, the baseline without pretraining.
#
# Homework 1's final classifiers are the reference: the numbers are read from its metrics file.

# %%
class EncoderClassifier(nn.Module):
    def __init__(self, ae: ConvAutoencoder, frozen: bool = False):
        super().__init__()
        self.features, self.to_code, self.frozen = ae.features, ae.to_code, frozen
        d = ae.cfg.latent
        self.head = nn.Sequential(nn.BatchNorm1d(d), nn.Linear(d, 10)) if frozen else nn.Sequential(
            nn.BatchNorm1d(d), nn.Linear(d, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10))
        for p in [*self.features.parameters(), *self.to_code.parameters()]:
            p.requires_grad_(not frozen)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:  # a frozen encoder keeps its batch-norm statistics and no dropout
            self.features.eval()
        return self

    def code(self, x):
        return self.to_code(self.features(x))

    def forward(self, x):
        return self.head(self.code(x))


def make_classifier(mode: str, seed=SEED) -> EncoderClassifier:
    ae = copy.deepcopy(final_ae) if mode in ("probe", "fine-tune") else build_ae(final_ae_cfg, seed)
    torch.manual_seed(seed)  # the same head initialisation in every mode
    return EncoderClassifier(ae, frozen=mode == "probe").to(device)


CLS_TRAIN = TrainConfig(lr=3e-3, weight_decay=5e-4, label_smoothing=0.1, num_epochs=P["ft_epochs"])
MODES = ("probe", "fine-tune", "scratch")


def cross_entropy(model, xb, yb):
    return F.cross_entropy(model(xb), yb)


def train_classifier(model, cfg: TrainConfig, train, val=None, name="cls", verbose=True, seed=SEED) -> dict:
    optimizer, scheduler = make_optimizer(model, cfg, len(train[0]))
    loss_fn = lambda m, xb, yb: F.cross_entropy(m(xb), yb, label_smoothing=cfg.label_smoothing)
    return fit(model, loss_fn, train, val, optimizer=optimizer, num_epochs=cfg.num_epochs, batch_size=cfg.batch_size,
               scheduler=scheduler, metric_fn=accuracy, val_loss_fn=cross_entropy,
               generator=torch.Generator().manual_seed(seed), name=name, verbose=verbose)

# %% [markdown]
# ### 4.1 All labels: accuracy and learning speed
# Each mode trains on the whole training split with validation after every epoch, so the curves show accuracy
# against epochs and against wall-clock seconds.

# %%
classifiers, cls_histories = {}, {}
with section("4.1 classifiers, all labels"):
    for mode in MODES:
        classifiers[mode] = make_classifier(mode)
        cls_histories[mode] = train_classifier(classifiers[mode], CLS_TRAIN, (X_train, y_train), (X_val, y_val),
                                               name=mode)


def epochs_to(history, level):
    return next((e for e, a in zip(history["epoch"], history["val_metric"]) if a >= level), None)


cls_rows = [{"mode": m, "trainable_params": count_parameters(classifiers[m]), "val_acc": h["val_metric"][-1],
             "epoch1_val_acc": h["val_metric"][0], "epochs_to_90pct": epochs_to(h, 0.90),
             "samples_per_s": round(h["samples_per_s"]), "wall_s": round(h["wall_s"], 1)}
            for m, h in cls_histories.items()]
show_table(cls_rows)
METRICS["finetune"] = {"all_labels": cls_rows, "config": asdict(CLS_TRAIN)}


# %%
def plot_learning_speed(histories: dict, references: dict) -> plt.Figure:
    """Validation accuracy against epochs and against seconds; dashed lines: reference accuracies."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (name, h) in enumerate(histories.items()):
        axes[0].plot(h["epoch"], h["val_metric"], marker="o", color=f"C{i}", label=name)
        axes[1].plot(h["time_s"], h["val_metric"], marker="o", color=f"C{i}", label=name)
    for j, (name, acc) in enumerate(references.items()):
        for ax in axes:
            ax.axhline(acc, ls="--", lw=1, color=f"C{len(histories) + j}", label=name)
    axes[0].set(xlabel="epoch", ylabel="validation accuracy", title="Accuracy per epoch")
    axes[1].set(xlabel="wall-clock time (s)", ylabel="validation accuracy", title="Accuracy per second")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig

# %% [markdown]
# **Homework 1's numbers.** When `HW1_METRICS_PATH` exists (it does in the repository; not when this notebook
# is uploaded alone), its final MLP and CNN are the reference: their test accuracy, training throughput and
# training time. Homework 1 trained them on all 60 000 training images (training and validation split); the
# models here train on the 50 000 of the training split only.

# %%
hw1 = json.loads(HW1_METRICS_PATH.read_text()) if HW1_METRICS_PATH.exists() else None
HW1_SOURCE = (f"{HW1_METRICS_PATH} (SHA-256 {hashlib.sha256(HW1_METRICS_PATH.read_bytes()).hexdigest()[:16]}…)"
              if hw1 is not None else None)
hw1_rows = [] if hw1 is None else [
    {"model": f"HW1 {name.upper()}", "params": hw1[name]["params"],
     "epochs": hw1[name]["config" if name == "cnn" else "best_config"]["num_epochs"],
     "train_images": hw1[name]["n_train_final"], "samples_per_s": round(hw1[name]["samples_per_s"]),
     "train_wall_s": round(hw1[name]["train_wall_s"], 1), "test_acc": hw1[name]["test_acc"]}
    for name in ("mlp", "cnn")]
if hw1 is None:
    print(f"{HW1_METRICS_PATH} not found: the comparison with Homework 1 is skipped (run homework 1 first).")
else:
    print(f"Homework 1 ({hw1['profile']} profile), read from {HW1_SOURCE}:")
    show_table(hw1_rows)
references = {f"HW1 {r['model'][4:]} test accuracy": r["test_acc"] for r in hw1_rows}
fig = plot_learning_speed(cls_histories, references)
savefig(fig, "finetune_learning_speed")


# %% [markdown] tags=["observation"]
# **Observation.** Fine-tuning ends slightly ahead of training from scratch (validation 0.9288 against 0.9212),
# and the two start alike (0.879 and 0.8764 after one epoch); fine-tuning passes 90% one epoch earlier, after 4
# epochs against 5. With all labels, pretraining is a head start, not a different result. The frozen code alone
# reaches 0.8237 with a linear head: the autoencoder's features are useful but were not made for this task. The
# table above, printed only when Homework 1's metrics are found, gives its classifiers' throughput for comparison.

# %% [markdown]
# ### 4.2 Few labels
# Pretraining should matter most when labels are scarce: the encoder has seen all 50 000 training images
# without labels, the classifier sees only a few labelled ones. The labelled subsets are stratified (10 or
# 100 per class); each run takes the same number of gradient steps, and is scored on the whole validation set.

# %%
def stratified_subset(y, n, seed=SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = y.cpu().numpy()
    return np.concatenate([rng.choice(np.flatnonzero(y == c), n // 10, replace=False) for c in range(10)])


few_rows = []
with section("4.2 few labels"):
    for n_labels in LABEL_COUNTS:
        idx = torch.as_tensor(stratified_subset(y_train, n_labels), device=device)
        batch_size = min(128, n_labels)
        epochs = math.ceil(P["few_label_steps"] / math.ceil(n_labels / batch_size))
        for mode in MODES:
            model = make_classifier(mode)
            cfg = replace(CLS_TRAIN, num_epochs=epochs, batch_size=batch_size)
            train_classifier(model, cfg, (X_train[idx], y_train[idx]), verbose=False)
            few_rows.append({"labels": n_labels, "mode": mode, "val_acc": accuracy(predict(model, X_val), y_val)})
few_rows += [{"labels": len(X_train), "mode": r["mode"], "val_acc": r["val_acc"]} for r in cls_rows]
show_table(few_rows)
METRICS["finetune"]["few_labels"] = few_rows


# %%
def plot_label_efficiency(rows) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for i, mode in enumerate(MODES):
        pts = sorted((r["labels"], r["val_acc"]) for r in rows if r["mode"] == mode)
        ax.plot(*zip(*pts), marker="o", color=f"C{i}", label=mode)
    ax.set(xscale="log", xlabel="labelled training images", ylabel="validation accuracy",
           title="Accuracy against the number of labels")
    ax.legend(fontsize=8)
    return fig


fig = plot_label_efficiency(few_rows)
savefig(fig, "finetune_few_labels")


# %% [markdown] tags=["observation"]
# **Observation.** Pretraining matters most when labels are scarce: with 100 labels fine-tuning reaches 0.761
# against 0.7244 from scratch, with 1000 labels 0.8418 against 0.8158, and with all 50 000 the gap shrinks to
# 0.9288 against 0.9212. The linear probe is close to scratch with 100 labels (0.7122) but falls behind as labels
# grow (0.7916, then 0.8237), because a frozen code cannot adapt to the task.

# %% [markdown]
# ### 4.3 Accuracy by k-fold cross-validation
# The validation accuracy above comes from one split. Stratified k-fold cross-validation over the training
# split gives the fine-tuning recipe's accuracy with its spread: each fold fine-tunes a fresh copy of the
# pretrained encoder on k−1 parts and scores the held-out part. The encoder was pretrained on all of these
# images without labels, so no held-out label was ever seen; the folds are checked to be disjoint.

# %%
folds = list(StratifiedKFold(P["cv_folds"], shuffle=True, random_state=SEED).split(np.zeros(len(y_train)),
                                                                                    y_train.cpu().numpy()))
assert all(len(np.intersect1d(tr, va)) == 0 for tr, va in folds), "a fold's training and held-out parts overlap"
assert sorted(np.concatenate([va for _, va in folds]).tolist()) == list(range(len(y_train))), "folds do not cover"
cv_scores = []
with section("4.3 cross-validation"):
    for k, (tr, va) in enumerate(folds):
        model = make_classifier("fine-tune")
        tr, va = torch.as_tensor(tr, device=device), torch.as_tensor(va, device=device)
        train_classifier(model, replace(CLS_TRAIN, num_epochs=P["cv_epochs"]), (X_train[tr], y_train[tr]),
                         verbose=False)
        cv_scores.append(accuracy(predict(model, X_train[va]), y_train[va]))
        print(f"fold {k + 1}/{len(folds)}: accuracy {100 * cv_scores[-1]:.2f}% on {len(va)} held-out images")
cv_scores = np.array(cv_scores)
print(f"fine-tuning, {P['cv_folds']}-fold CV ({P['cv_epochs']} epochs per fold): "
      f"{100 * cv_scores.mean():.2f}% ± {100 * cv_scores.std():.2f}%")
METRICS["finetune"]["cv"] = {"folds": P["cv_folds"], "epochs": P["cv_epochs"], "scores": cv_scores.tolist(),
                             "mean": cv_scores.mean(), "std": cv_scores.std()}


# %% [markdown] tags=["observation"]
# **Observation.** The folds agree closely (91.62%, 91.70%, 91.84%): the fine-tuning recipe's accuracy is
# 91.72% ± 0.09% with 5 epochs on two thirds of the training split, a little below the single-split 0.9288
# reached with 12 epochs on all of it.

# %% [markdown]
# ## 5. The latent space
# The codes of the final autoencoder, for the training split and the validation set, are the data of this
# section. As a yardstick with the same number of dimensions, PCA of the raw pixels (fitted on the training
# images) gives a linear code of the same size.

# %%
@torch.no_grad()
def encode_all(model, X, labels=None, batch_size=1024) -> torch.Tensor:
    model.eval()
    return torch.cat([model.encode(X[idx], None if labels is None else labels[idx])
                      for idx in batches(len(X), batch_size)])


@torch.no_grad()
def decode_all(model, Z, labels=None, batch_size=1024) -> torch.Tensor:
    model.eval()
    return torch.cat([model.decode(Z[idx], None if labels is None else labels[idx])
                      for idx in batches(len(Z), batch_size)])


with section("5 latent space"):
    codes_train = encode_all(final_ae, X_train).cpu().numpy()
    codes_val = encode_all(final_ae, X_val).cpu().numpy()
    pixel_pca = PCA(final_ae_cfg.latent, random_state=SEED).fit(X_train.flatten(1).cpu().numpy())
    pca_train = pixel_pca.transform(X_train.flatten(1).cpu().numpy())
    pca_val = pixel_pca.transform(X_val.flatten(1).cpu().numpy())
    code_pca = PCA(random_state=SEED).fit(codes_train)
    tsne_idx = np.arange(min(P["tsne_points"], len(codes_val)))
    tsne = TSNE(2, perplexity=30, init="pca", random_state=SEED).fit_transform(codes_val[tsne_idx])
labels_val = y_val.cpu().numpy()
print(f"latent size {final_ae_cfg.latent}: 90% of the code variance in "
      f"{int(np.searchsorted(np.cumsum(code_pca.explained_variance_ratio_), 0.9)) + 1} principal components")
print(f"pixel PCA with {final_ae_cfg.latent} components explains "
      f"{pixel_pca.explained_variance_ratio_.sum():.3f} of the pixel variance")

# %% [markdown]
# ### 5.1 PCA and t-SNE maps
# Left: how the variance of the codes spreads over their principal directions. Middle: the codes projected on
# the first two principal components. Right: a t-SNE map of validation codes (perplexity 30), which keeps
# neighbourhoods rather than distances. Colour is the class, which the autoencoder never saw.

# %%
def plot_latent_maps(explained, pca_2d, tsne_2d, labels, tsne_labels) -> plt.Figure:
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    axes[0].bar(range(1, len(explained) + 1), explained, color="C0", label="per component")
    axes[0].plot(range(1, len(explained) + 1), np.cumsum(explained), color="C3", marker=".", label="cumulative")
    axes[0].set(xlabel="principal component of the codes", ylabel="explained variance ratio",
                title="PCA of the codes")
    axes[0].legend(fontsize=7)
    for ax, points, lab, title in ((axes[1], pca_2d, labels, "Codes on the first two principal components"),
                                   (axes[2], tsne_2d, tsne_labels, "t-SNE of the codes")):
        scatter = ax.scatter(points[:, 0], points[:, 1], c=lab, cmap="tab10", s=3, alpha=0.7, vmin=-0.5, vmax=9.5)
        ax.set(title=title, xlabel="dimension 1", ylabel="dimension 2")
    cbar = fig.colorbar(scatter, ax=axes[2], ticks=range(10))
    cbar.ax.set_yticklabels(FASHION_CLASSES, fontsize=7)
    fig.tight_layout()
    return fig


fig = plot_latent_maps(code_pca.explained_variance_ratio_, code_pca.transform(codes_val)[:, :2], tsne, labels_val,
                       labels_val[tsne_idx])
savefig(fig, "latent_maps")

# %% [markdown]
# ### 5.2 How much class information the codes carry
# Two probes that never change the encoder: a 5-nearest-neighbour classifier (Euclidean distance between
# standardised codes) and a logistic regression, both fitted on the training codes and scored on validation,
# against the same probes on the PCA code of the raw pixels with as many dimensions.

# %%
probe_rows = []
with section("5 latent space"):
    for name, (train_codes, val_codes) in {"autoencoder code": (codes_train, codes_val),
                                           "pixel PCA": (pca_train, pca_val)}.items():
        scaler = StandardScaler().fit(train_codes)
        Z_tr, Z_va = scaler.transform(train_codes), scaler.transform(val_codes)
        y_tr = y_train.cpu().numpy()
        knn = KNeighborsClassifier(5).fit(Z_tr, y_tr)
        logistic = LogisticRegression(max_iter=500).fit(Z_tr, y_tr)
        probe_rows.append({"features": name, "dims": Z_tr.shape[1], "knn5_val_acc": knn.score(Z_va, labels_val),
                           "logistic_val_acc": logistic.score(Z_va, labels_val)})
show_table(probe_rows)
METRICS["latent"] = {"probes": probe_rows, "latent": final_ae_cfg.latent,
                     "code_pca_explained": code_pca.explained_variance_ratio_.tolist(),
                     "pixel_pca_explained_total": pixel_pca.explained_variance_ratio_.sum()}


# %% [markdown] tags=["observation"]
# **Observation.** The autoencoder's 32-dimensional code carries more class information than the same number of
# principal components of the pixels: 5-NN accuracy 0.8795 against 0.8566 and logistic regression 0.8378 against
# 0.8165, although the autoencoder never saw a label. The code uses most of its dimensions (90% of its variance
# in 21 principal components), while 32 pixel components explain 0.826 of the pixel variance. The maps above
# show the same: trousers, bags and the three kinds of footwear form their own clusters, while pullover, coat
# and shirt share one, the classes Homework 1's classifiers also confused most.

# %% [markdown]
# ### 5.3 Interpolation
# Walking on a straight line between the codes of two validation images of different classes and decoding
# each point, against blending the two images pixel by pixel. A decoder that has learned the data's manifold
# should give plausible garments along the way, not a double exposure.

# %%
pairs = [(0, 9), (1, 3), (5, 7), (2, 4)]  # class pairs: T-shirt/boot, trouser/dress, sandal/sneaker, pullover/coat
SHORT = ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
t = torch.linspace(0, 1, 9, device=device)[:, None]
rows = {}
with torch.no_grad():
    for a, b in pairs:
        xa, xb = GRID[a:a + 1], GRID[b:b + 1]
        za, zb = encode_all(final_ae, xa), encode_all(final_ae, xb)
        rows[f"code: {SHORT[a]}→{SHORT[b]}"] = decode_all(final_ae, (1 - t) * za + t * zb)
        rows[f"pixels: {SHORT[a]}→{SHORT[b]}"] = (1 - t[:, :, None, None]) * xa + \
            t[:, :, None, None] * xb
fig = plot_image_rows(rows, "Interpolation in the latent space (code) and in pixel space")
savefig(fig, "interpolation")

# %% [markdown]
# ### 5.4 New images from latent codes
# A plain autoencoder has no prior over its codes, so sampling needs a density fitted to the training codes.
# Three choices, from naive to careful: a standard normal N(0, I), which ignores where the codes actually
# are; a single Gaussian with the codes' mean and full covariance; and a mixture of 10 full-covariance
# Gaussians. Their samples are decoded below and scored in section 7.

# %%
with section("5 latent space"):
    gmm = GaussianMixture(10, covariance_type="full", reg_covar=1e-4, random_state=SEED).fit(codes_train)
    code_mean, code_cov = codes_train.mean(0), np.cov(codes_train, rowvar=False)
rng = np.random.default_rng(SEED)


def sample_gmm(n: int) -> np.ndarray:
    """Ancestral sampling: pick a component by its weight, then mean + Cholesky factor @ standard normal."""
    component = rng.choice(len(gmm.weights_), n, p=gmm.weights_)
    chol = np.linalg.cholesky(gmm.covariances_)  # (10, d, d); positive definite thanks to reg_covar
    noise = rng.standard_normal(gmm.means_[component].shape)
    return gmm.means_[component] + np.einsum("nij,nj->ni", chol[component], noise)


LATENT_SAMPLERS = {
    "AE + N(0, I)": lambda n: rng.standard_normal((n, final_ae_cfg.latent)),
    "AE + Gaussian": lambda n: rng.multivariate_normal(code_mean, code_cov, n),
    "AE + GMM (10)": sample_gmm,
}


def sample_ae(name, n) -> torch.Tensor:
    Z = torch.as_tensor(LATENT_SAMPLERS[name](n), dtype=torch.float32, device=device)
    return decode_all(final_ae, Z)


fig = plot_image_rows({name: sample_ae(name, 12) for name in LATENT_SAMPLERS},
                      "New images decoded from codes sampled from three densities")
savefig(fig, "ae_samples")
print(f"GMM: mean log-likelihood of training codes {gmm.score(codes_train):.2f}, validation codes "
      f"{gmm.score(codes_val):.2f} (per code, nats)")


# %% [markdown] tags=["observation"]
# **Observation.** Sampling a plain autoencoder works only with a density that matches its codes. A standard
# normal puts the codes where the decoder has never been and yields nearly black images; a single Gaussian
# with the codes' covariance gives garment-like but often mixed shapes; the 10-component mixture gives clean
# shoes, bags, tops and trousers. The mixture generalises: the mean log-likelihood of validation codes (-88.76)
# is nearly that of training codes (-88.41), so it has not memorised them.

# %% [markdown]
# ## 6. A variational autoencoder
# The VAE keeps the autoencoder's architecture; the code layer outputs the mean μ and log-variance log σ² of
# a Gaussian q(z|x), and a code is drawn as z = μ + σ·ε with ε ~ N(0, I) (the reparameterisation trick), so
# gradients flow through the sampling. The decoder outputs logits of a Bernoulli likelihood per pixel, and the
# loss is the negative evidence lower bound (ELBO), per image in nats:
#
# $$-\mathrm{ELBO}(x) = \underbrace{-\mathbb{E}_{q(z|x)}\log p(x|z)}_{\text{reconstruction}}
#   + \beta\,\underbrace{\mathrm{KL}\big(q(z|x)\,\|\,\mathcal{N}(0, I)\big)}_{\text{regularizer}},$$
#
# with the KL term in closed form, ½ Σ (μ² + σ² − 1 − log σ²), and β = 1 for the true bound. The pixel values
# are grey levels in [0, 1] used as Bernoulli targets, the common practice for FashionMNIST; the number is
# then a cross-entropy, not the likelihood of a discrete image model, and it is comparable only between
# models scored the same way (here: all VAEs of this notebook).

# %%
class ConvVAE(ConvAutoencoder):
    def __init__(self, cfg: AEConfig):
        super().__init__(replace(cfg, variational=True))

    def forward(self, x, labels=None):
        mu, logvar = self.to_code(self.with_label(self.features(x), labels)).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation: z is a function of (mu, sigma)
        return self.decode_logits(z, labels), mu, logvar


def elbo_terms(model, xb, labels=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction term and KL term of the negative ELBO, each averaged over the batch (nats per image)."""
    logits, mu, logvar = model(xb, labels)
    reconstruction = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum") / len(xb)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum() / len(xb)
    return reconstruction, kl


def build_vae(cfg: AEConfig, seed=SEED) -> ConvVAE:
    torch.manual_seed(seed)
    return ConvVAE(cfg).to(device).to(memory_format=torch.channels_last)

# %% [markdown]
# Training uses the shared `fit` with the negative ELBO as the loss closure. A callback scores the two terms
# on validation images after every epoch (one sample of z per image), which gives the ELBO curves, and counts
# the *active* latent dimensions: those whose posterior mean varies across images (variance above 0.01); the
# others have collapsed to the prior and carry no information.

# %%
class ELBOTracker:
    def __init__(self, X, y, conditional=False, name="vae"):
        self.X, self.y, self.conditional, self.name = X, y, conditional, name
        self.history = {"epoch": [], "reconstruction": [], "kl": [], "neg_elbo": [], "active_units": []}

    @torch.no_grad()
    def __call__(self, epoch, model):
        scores = elbo_scores(model, self.X, self.y if self.conditional else None)
        for key, value in scores.items():
            self.history[key].append(value)
        self.history["epoch"].append(epoch)
        print(f"[{self.name}] validation: reconstruction {scores['reconstruction']:7.2f} + KL {scores['kl']:6.2f} "
              f"= -ELBO {scores['neg_elbo']:7.2f} nats | active units {scores['active_units']}")


@torch.no_grad()
def elbo_scores(model, X, labels=None, batch_size=1024, seed=SEED) -> dict:
    model.eval()
    total_rec = total_kl = 0.0
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # the same draws of z for every evaluation; training RNG untouched
        torch.manual_seed(seed)
        for idx in batches(len(X), batch_size):
            rec, kl = elbo_terms(model, X[idx], None if labels is None else labels[idx])
            total_rec, total_kl = total_rec + rec.item() * len(idx), total_kl + kl.item() * len(idx)
    mu = encode_all(model, X, labels)
    rec, kl = total_rec / len(X), total_kl / len(X)
    return {"reconstruction": rec, "kl": kl, "neg_elbo": rec + kl, "active_units": int((mu.var(0) > 0.01).sum())}


def train_vae(model, cfg: TrainConfig, X, y, beta=1.0, X_val=None, y_val=None, name="vae", verbose=True):
    conditional = model.cfg.n_classes > 0

    def loss_fn(m, xb, yb):
        reconstruction, kl = elbo_terms(m, xb, yb if conditional else None)
        return reconstruction + beta * kl

    tracker = ELBOTracker(X_val, y_val, conditional, name) if X_val is not None else None
    optimizer, scheduler = make_optimizer(model, cfg, len(X))
    history = fit(model, loss_fn, (X, y), optimizer=optimizer, num_epochs=cfg.num_epochs, batch_size=cfg.batch_size,
                  scheduler=scheduler, generator=torch.Generator().manual_seed(SEED), on_epoch_end=tracker,
                  name=name, verbose=verbose)
    return history | ({"val": tracker.history} if tracker else {})

# %% [markdown]
# ### 6.1 Training and the ELBO terms
# A VAE with a 16-dimensional latent space, the final autoencoder's width, and the same optimizer recipe.

# %%
VAE_CFG = AEConfig(latent=16, width=final_ae_cfg.width)
VAE_TRAIN = TrainConfig(lr=2e-3, weight_decay=0.0, num_epochs=P["vae_epochs"])
with section("6.1 VAE"):
    vae = build_vae(VAE_CFG)
    vae_history = train_vae(vae, VAE_TRAIN, X_train, y_train, X_val=X_val, y_val=y_val)


def plot_elbo(history, title) -> plt.Figure:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    val = history["val"]
    axes[0].plot(history["epoch"], history["train_loss"], label="training (β-weighted)")
    axes[0].plot(val["epoch"], val["neg_elbo"], label="validation")
    axes[0].set(xlabel="epoch", ylabel="−ELBO (nats per image)", title="Negative ELBO")
    axes[0].legend(fontsize=7)
    axes[1].plot(val["epoch"], val["reconstruction"], color="C2")
    axes[1].set(xlabel="epoch", ylabel="nats per image", title="Reconstruction term (validation)")
    axes[2].plot(val["epoch"], val["kl"], color="C3")
    axes[2].set(xlabel="epoch", ylabel="nats per image", title="KL term (validation)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


fig = plot_elbo(vae_history, f"VAE (latent {VAE_CFG.latent}): terms of the ELBO during training")
savefig(fig, "vae_elbo")
vae_val = elbo_scores(vae, X_val)
METRICS["vae"] = {"config": asdict(VAE_CFG) | asdict(VAE_TRAIN), "val": vae_val, "wall_s": vae_history["wall_s"],
                  "samples_per_s": vae_history["samples_per_s"]}

# %% [markdown]
# ### 6.2 Reconstructions, samples from the prior, and a 2-D latent manifold
# Reconstructions decode the posterior mean μ. New images decode codes drawn from the prior N(0, I), which
# the KL term has pulled the codes towards, so no density needs fitting (compare with 5.4). A second VAE with
# a 2-dimensional latent space can be looked at directly: a grid of codes, spaced by quantiles of N(0, 1) so
# that each cell has the same prior mass, decoded into a map of the manifold it has learned.

# %%
torch.manual_seed(SEED)
prior_samples = decode_all(vae, torch.randn(24, VAE_CFG.latent, device=device))
fig = plot_image_rows({"original": GRID, "VAE reconstruction": decode_all(vae, encode_all(vae, GRID)),
                       "AE reconstruction": predict(final_ae, GRID), "prior sample": prior_samples[:12],
                       "prior sample ": prior_samples[12:]}, "VAE: reconstructions and samples from the prior")
savefig(fig, "vae_samples")

with section("6.2 2-D VAE"):
    vae2d = build_vae(replace(VAE_CFG, latent=2))
    vae2d_history = train_vae(vae2d, replace(VAE_TRAIN, num_epochs=P["vae2d_epochs"]), X_train, y_train, name="vae-2d",
                              verbose=False)
vae2d_val = elbo_scores(vae2d, X_val)
print(f"2-D VAE: validation -ELBO {vae2d_val['neg_elbo']:.2f} nats (latent 16: {vae_val['neg_elbo']:.2f})")
METRICS["vae"]["vae2d_val"] = vae2d_val


# %%
def plot_manifold(model, n=15) -> plt.Figure:
    q = torch.as_tensor(norm.ppf(np.linspace(0.03, 0.97, n)), dtype=torch.float32, device=device)
    Z = torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), -1).reshape(-1, 2)
    images = decode_all(model, Z).reshape(n, n, 28, 28).permute(0, 2, 1, 3).reshape(n * 28, n * 28)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(images.cpu(), cmap="gray", extent=(q[0].item(), q[-1].item(), q[0].item(), q[-1].item()))
    ax.grid(False)
    ax.set(xlabel="z₁", ylabel="z₂", title="Decoded 2-D latent grid (quantiles 3%–97% of the prior)")
    return fig


fig = plot_manifold(vae2d)
savefig(fig, "vae_manifold")
mu2d = encode_all(vae2d, X_val).cpu().numpy()
fig, ax = plt.subplots(figsize=(6, 4.8))
scatter = ax.scatter(mu2d[:, 0], mu2d[:, 1], c=labels_val, cmap="tab10", s=3, alpha=0.6, vmin=-0.5, vmax=9.5)
cbar = fig.colorbar(scatter, ticks=range(10))
cbar.ax.set_yticklabels(FASHION_CLASSES, fontsize=7)
ax.set(xlabel="μ₁", ylabel="μ₂", title="2-D VAE: posterior means of validation images")
savefig(fig, "vae_latent_2d")

# %% [markdown]
# ### 6.3 The effect of β
# β weighs the KL term. β < 1 buys sharper reconstructions with codes that stray from the prior (worse
# samples); β > 1 pulls the codes towards the prior, which makes sampling safer but blurs reconstructions and
# switches latent dimensions off. Three VAEs at β ∈ {0.25, 1, 4}, with the same shorter budget on a subset,
# each scored on validation with the true bound (β = 1), its two terms, and its active units.

# %%
beta_rows, beta_models = [], {}
with section("6.3 beta"):
    for beta in BETAS:
        beta_models[beta] = build_vae(VAE_CFG)
        train_vae(beta_models[beta], replace(VAE_TRAIN, num_epochs=P["beta_epochs"]), X_train[:P["n_beta"]],
                  y_train[:P["n_beta"]], beta=beta, name=f"β={beta}", verbose=False)
        beta_rows.append({"beta": beta, **elbo_scores(beta_models[beta], X_val),
                          "recon_mse": F.mse_loss(decode_all(beta_models[beta], encode_all(beta_models[beta], X_val)),
                                                  X_val).item()})
show_table(beta_rows)
METRICS["vae"]["beta"] = beta_rows
torch.manual_seed(SEED)
z = torch.randn(10, VAE_CFG.latent, device=device)
fig = plot_image_rows({f"β = {b:g}": decode_all(m, z) for b, m in beta_models.items()},
                      "Samples from the prior (same codes) for three values of β")
savefig(fig, "vae_beta_samples")


# %% [markdown] tags=["observation"]
# **Observation.** β trades reconstruction against the KL term as expected: β = 0.25 gives reconstruction
# 224.5 and KL 32.45 nats, β = 4 gives 253.9 and 6.866, and the true bound (scored with β = 1) is best for the
# model trained with β = 1 (250.1 against 257 and 260.8). The pixel MSE of the reconstructions follows
# (0.01398, 0.01543, 0.02245). All 16 latent dimensions stay active even at β = 4; no posterior collapsed. The
# 2-D VAE pays for its interpretable map with a worse bound (265.91 against 241.05 nats).

# %% [markdown]
# ## 7. Beyond the assignment: a conditional VAE, and scoring the generators
# ### 7.1 Conditional VAE
# A conditional VAE (CVAE) gives the encoder and the decoder the class label (one-hot, joined to the features
# and to the code). The code then only has to describe *how* a garment looks, not *which* garment it is, and
# sampling can ask for a class.

# %%
CVAE_CFG = replace(VAE_CFG, n_classes=10)
with section("7.1 conditional VAE"):
    cvae = build_vae(CVAE_CFG)
    cvae_history = train_vae(cvae, replace(VAE_TRAIN, num_epochs=P["cvae_epochs"]), X_train, y_train, X_val=X_val,
                             y_val=y_val, name="cvae")
cvae_val = elbo_scores(cvae, X_val, y_val)
print(f"validation -ELBO: CVAE {cvae_val['neg_elbo']:.2f} nats, VAE {vae_val['neg_elbo']:.2f} nats")
METRICS["cvae"] = {"val": cvae_val, "wall_s": cvae_history["wall_s"], "epochs": P["cvae_epochs"]}
torch.manual_seed(SEED)
z = torch.randn(8, CVAE_CFG.latent, device=device)
fig = plot_image_rows({name: decode_all(cvae, z, torch.full((8,), c, device=device))
                       for c, name in enumerate(FASHION_CLASSES)},
                      "CVAE: the same 8 codes decoded with each class label (rows)")
savefig(fig, "cvae_samples")

# %% [markdown]
# ### 7.2 Which generator is best? A Fréchet distance in a classifier's feature space
# Sample quality is measured the way the Fréchet Inception Distance (FID) does it, with a judge trained here:
# the *scratch* classifier of section 4 (it never saw an autoencoder's weights). Each generator's images and
# real validation images are mapped to the judge's code layer; the Fréchet distance between two Gaussians
# fitted to those features, ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½), is small when the generated images
# look, to the judge, like real ones in both average and spread. Beside it: how confident the judge is (mean
# top probability and the share above 0.9), and the diversity of the classes it assigns (entropy of the class
# histogram; ln 10 ≈ 2.303 is perfectly balanced). Two halves of the real validation images give the floor.

# %%
judge = classifiers["scratch"]


@torch.no_grad()
def judge_features(X) -> tuple[np.ndarray, np.ndarray]:
    judge.eval()
    codes = torch.cat([judge.code(X[idx]) for idx in batches(len(X), 1024)])
    return codes.cpu().numpy().astype(np.float64), judge.head(codes).softmax(1).cpu().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b, cov_a, cov_b = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def score_generator(name, images, reference, labels=None) -> dict:
    feats, probs = judge_features(images)
    counts = np.bincount(probs.argmax(1), minlength=10) / len(probs)
    row = {"generator": name, "frechet": frechet_distance(feats, reference), "confidence": probs.max(1).mean(),
           "confident_share": (probs.max(1) > 0.9).mean(),
           "class_entropy": float(-(counts * np.log(np.clip(counts, 1e-12, None))).sum())}
    if labels is not None:  # conditional generator: does the judge see the class that was asked for?
        row["label_agreement"] = (probs.argmax(1) == labels.cpu().numpy()).mean()
    return row

# %%
n_gen = min(P["n_generate"], len(X_val) // 2)
with section("7.2 generator scores"):
    reference, _ = judge_features(X_val[:n_gen])
    torch.manual_seed(SEED)
    cvae_labels = torch.arange(n_gen, device=device) % 10
    GENERATED = {
        "real (other half)": X_val[n_gen:2 * n_gen],
        **{name: sample_ae(name, n_gen) for name in LATENT_SAMPLERS},
        "VAE prior": decode_all(vae, torch.randn(n_gen, VAE_CFG.latent, device=device)),
        **{f"β-VAE β={b:g} prior": decode_all(m, torch.randn(n_gen, VAE_CFG.latent, device=device))
           for b, m in beta_models.items()},
        "CVAE prior": decode_all(cvae, torch.randn(n_gen, CVAE_CFG.latent, device=device), cvae_labels),
    }
    generator_rows = [score_generator(name, images, reference, cvae_labels if name.startswith("CVAE") else None)
                      for name, images in GENERATED.items()]
generator_rows = show_table(generator_rows, ["generator", "frechet", "confidence", "confident_share", "class_entropy",
                                            "label_agreement"], sort_by="frechet")
METRICS["generative"] = {"rows": generator_rows, "n_samples": n_gen, "judge": "scratch classifier, code layer"}


# %%
def plot_generator_scores(rows) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    names = [r["generator"] for r in rows][::-1]
    axes[0].barh(names, [r["frechet"] for r in rows][::-1], color="C0")
    axes[0].set(xscale="log", xlabel="Fréchet distance to real validation images (lower is better)",
                title="Sample quality")
    axes[1].barh(names, [r["confidence"] for r in rows][::-1], color="C1", label="mean top probability")
    axes[1].barh(names, [r["class_entropy"] / math.log(10) for r in rows][::-1], color="C2", alpha=0.5, height=0.4,
                 label="class entropy / ln 10")
    axes[1].set(xlabel="judge's view", xlim=(0, 1), title="Confidence and diversity")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


fig = plot_generator_scores(generator_rows)
savefig(fig, "generator_scores")
fig = plot_image_rows({name: images[:12] for name, images in GENERATED.items() if not name.startswith("β")},
                      "Samples of each generator (CVAE: classes 0–9, 0, 1)")
savefig(fig, "generator_samples")


# %% [markdown] tags=["observation"]
# **Observation.** The plain autoencoder sampled through the Gaussian mixture scores best by far (Fréchet
# distance 5.938, mean confidence 0.7662336, balanced classes with entropy 2.27), and its samples look the
# sharpest. Then come the single Gaussian (16.46), the conditional VAE (23.65) and the VAE (25.89), whose samples
# from the prior are blurrier: the Bernoulli decoder averages over the uncertainty the KL term leaves in the code.
# The conditional VAE beats the VAE on every score and draws the class it is asked for 0.6806 of the time. The
# β-VAEs of section 6.3, trained on half the images for a third of the epochs, score worse still (38.48 to
# 45.68, worst at β = 4), and N(0, I) on the plain autoencoder's codes is worst of all (144.6, and a class
# entropy of 1.518: the judge sees few classes). Real images give the floor, 0.2323. So the VAE's prior is the
# more principled way to sample, and the one that needs no fitting, but here an autoencoder with a fitted
# mixture over its codes both looks and scores better, in line with Ghosh et al. (2020), who sample deterministic
# autoencoders the same way.

# %% [markdown]
# ## 8. Final evaluation on the test set
# This is the only section that reads test images. The assertion checks that nothing read the sealed test set
# before. Every model trained above is scored once: the autoencoders of the latent sweep, the final
# autoencoder, the denoising autoencoder, the three classifiers, and the VAEs.

# %%
assert test_set.log == [], f"the test set was read before the final evaluation: {test_set.log}"
METRICS["checks"]["test_reads_before_final"] = len(test_set.log)
X_test, y_test = test_set.unseal("final evaluation of every model of this notebook")
X_test, y_test = X_test[:P["n_test"]], y_test[:P["n_test"]]  # all 10 000 except in the smoke profile
with section("8 final evaluation"):
    for row in sweep_rows:
        row["test_mse"] = evaluate(sweep_models[row["latent"]], reconstruction_mse, X_test, X_test)["loss"]
    final_ae_test_mse = evaluate(final_ae, reconstruction_mse, X_test, X_test)["loss"]
    dae_test_rows = denoising_table({"plain_ae": baseline_ae, "denoising_ae": dae}, X_test)
    cls_test = {mode: accuracy(predict(model, X_test), y_test) for mode, model in classifiers.items()}
    vae_test = elbo_scores(vae, X_test)
    cvae_test = elbo_scores(cvae, X_test, y_test)
show_table(sweep_rows, ["latent", "params", "val_mse", "test_mse"])
print(f"final autoencoder (latent {final_ae_cfg.latent}): test MSE {final_ae_test_mse:.5f} "
      f"(validation {final_ae_history['val_loss'][-1]:.5f})")
METRICS["final_ae"]["test_mse"] = final_ae_test_mse
METRICS["dae"]["test"] = dae_test_rows


# %%
def plot_latent_sweep(rows, final_latent, final_mse) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    latents = [r["latent"] for r in rows]
    ax.plot(latents, [r["val_mse"] for r in rows], marker="o", label=f"sweep ({P['sweep_epochs']} epochs): validation")
    ax.plot(latents, [r["test_mse"] for r in rows], marker="s", label="sweep: test")
    ax.scatter([final_latent], [final_mse], marker="*", s=150, color="C3", zorder=3,
               label=f"final AE ({P['final_ae_epochs']} epochs): test")
    ax.set(xscale="log", yscale="log", xlabel="latent size", ylabel="MSE per pixel",
           title="Reconstruction error against latent size")
    ax.set_xticks(latents, [str(k) for k in latents])
    ax.legend(fontsize=7)
    return fig


fig = plot_latent_sweep(sweep_rows, final_ae_cfg.latent, final_ae_test_mse)
savefig(fig, "latent_size_mse")

# %%
print("denoising on the test images (MSE against the clean image):")
show_table(dae_test_rows)
print("\nclassifiers on the test images:")
for mode, acc in cls_test.items():
    print(f"  {mode:10s} test accuracy {100 * acc:.2f}%")
print(f"fine-tuning {P['cv_folds']}-fold CV accuracy {100 * cv_scores.mean():.2f}% ± {100 * cv_scores.std():.2f}%")
METRICS["finetune"]["test_acc"] = cls_test
print(f"\nVAE (latent {VAE_CFG.latent}):  test -ELBO {vae_test['neg_elbo']:.2f} nats per image "
      f"({vae_test['neg_elbo'] / (784 * math.log(2)):.4f} bits per pixel; reconstruction "
      f"{vae_test['reconstruction']:.2f} + KL {vae_test['kl']:.2f})")
print(f"CVAE (latent {CVAE_CFG.latent}): test -ELBO {cvae_test['neg_elbo']:.2f} nats per image")
METRICS["vae"]["test"] = vae_test | {"bits_per_pixel": vae_test["neg_elbo"] / (784 * math.log(2))}
METRICS["cvae"]["test"] = cvae_test

# %% [markdown]
# **Against Homework 1.** The fine-tuned encoder and the Homework 1 classifiers on the same test set: accuracy,
# size and training cost. The fine-tuned model's cost is its own training plus the autoencoder pretraining.

# %%
ft = next(r for r in cls_rows if r["mode"] == "fine-tune")
comparison = hw1_rows + [
    {"model": "HW2 fine-tuned encoder", "params": count_parameters(classifiers["fine-tune"]),
     "epochs": CLS_TRAIN.num_epochs, "train_images": len(X_train), "samples_per_s": ft["samples_per_s"],
     "train_wall_s": round(ft["wall_s"] + final_ae_history["wall_s"], 1), "test_acc": cls_test["fine-tune"]},
    {"model": "HW2 same network, scratch", "params": count_parameters(classifiers["scratch"]),
     "epochs": CLS_TRAIN.num_epochs, "train_images": len(X_train),
     "samples_per_s": next(r["samples_per_s"] for r in cls_rows if r["mode"] == "scratch"),
     "train_wall_s": next(r["wall_s"] for r in cls_rows if r["mode"] == "scratch"), "test_acc": cls_test["scratch"]},
]
show_table(comparison, sort_by="test_acc", descending=True)
METRICS["hw1_comparison"] = comparison
METRICS["hw1_source"] = HW1_SOURCE
if hw1 is None:
    print("Homework 1's metrics are not here: this run compares its own classifiers only.")
for r in hw1_rows:  # sentences from the numbers, so they hold for whichever run of Homework 1 was read
    verdict = "beats" if cls_test["fine-tune"] > r["test_acc"] else "trails"
    print(f"the fine-tuned encoder ({cls_test['fine-tune']:.4f}) {verdict} {r['model']} ({r['test_acc']:.4f}), "
          f"whose training took {r['train_wall_s']:.1f} s against {ft['wall_s'] + final_ae_history['wall_s']:.1f} s "
          f"here with pretraining; source {HW1_SOURCE}")


# %% [markdown] tags=["observation"]
# **Observation.** Test and validation agree everywhere, as they should when no choice saw the test set: the
# final autoencoder's test MSE is 0.00670 (validation 0.00678), under the 0.008 target at latent size 32; the
# sweep's 3-epoch models score 0.03175 to 0.007472 from latent 2 to 64. The denoising autoencoder holds its
# error between 0.01058 and 0.01864 over all corruptions. The fine-tuned classifier reaches 92.32% (target 92%),
# the scratch one 92.04% and the linear probe 81.71%; the VAE's −ELBO is 242.25 nats per image (validation
# 241.05) and the conditional VAE's 240.99. The lines printed under the table compare the fine-tuned encoder
# with Homework 1's classifiers when that run's metrics were found (they name the file and its digest); its
# CNN is deeper (five 3×3 convolutions against two strided ones) and trained on 10 000 more images.

# %% [markdown]
# ## Conclusion
# The table collects the headline numbers of this run; the same numbers are in `METRICS_PATH`
# (`report/hw2_metrics.json` in the full run), which the report and the README read.

# %%
METRICS["wall_time_s"]["total"] = round(time.perf_counter() - NOTEBOOK_START, 1)
best_gen = next(r for r in generator_rows if not r["generator"].startswith("real"))
summary = [
    {"item": f"autoencoder, latent {final_ae_cfg.latent}", "validation": f"MSE {final_ae_history['val_loss'][-1]:.5f}",
     "test": f"MSE {final_ae_test_mse:.5f}"},
    {"item": "fine-tuned encoder classifier",
     "validation": f"{P['cv_folds']}-fold CV acc {100 * cv_scores.mean():.2f}% ± {100 * cv_scores.std():.2f}%",
     "test": f"acc {100 * cls_test['fine-tune']:.2f}%"},
    {"item": f"VAE, latent {VAE_CFG.latent}", "validation": f"-ELBO {vae_val['neg_elbo']:.2f} nats",
     "test": f"-ELBO {vae_test['neg_elbo']:.2f} nats"},
    {"item": f"best generator: {best_gen['generator']}", "validation": f"Fréchet {best_gen['frechet']:.2f}",
     "test": "-"},
]
show_table(summary)
print(f"\nwall time per section (s): {METRICS['wall_time_s']}")
write_metrics(METRICS_PATH)

# %% [markdown]
# **What this notebook does not do**, so that no number above is read for more than it is:
# - No GAN. The conditional VAE is the model beyond the assignment; a DCGAN trained long enough to be worth
#   scoring would cost a large part of the 45-minute CPU budget, and its samples would need the same judge.
# - The latent size is not part of the Optuna search (section 3 says why); the sweep of section 1.2 studies it.
# - The comparisons and searches run on subsets with short budgets: their scores rank configurations and are
#   not estimates of the final models' error, which train longer on all 50 000 training images.
# - Each final model is one training run from one seed, so the test numbers carry no seed-to-seed spread; the
#   k-fold CV of the fine-tuning recipe is the only spread reported for a classifier.
# - The few-label results use one labelled subset per size; another subset would move them by a few points.
# - The VAE's −ELBO is a one-sample estimate of a bound, not an importance-weighted estimate of the
#   log-likelihood, and grey levels used as Bernoulli targets make it a cross-entropy, not a normalised density.
# - The Fréchet distance uses the 32-dimensional code of a small classifier trained here: its values rank the
#   generators of this notebook and are not comparable with published FID numbers.
# - Homework 1's classifiers trained on 60 000 images and these on the 50 000 of the training split, which
#   slightly favours Homework 1 in the comparison.
# - The committed outputs come from the CPU; the GPU path is the same code but was not run for this commit.
