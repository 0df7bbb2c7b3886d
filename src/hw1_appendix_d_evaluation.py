# %% [markdown]
# ### Appendix D. Evaluating a classifier properly <a id="app-d"></a>
# An honest evaluation uses three disjoint parts of the data, each for one purpose: the training part fits the
# weights, the validation part makes every choice (preprocessing, stopping epoch, hyper-parameters), and the test
# part is read once, at the end, by the final model. A test set that influenced any choice no longer estimates the
# performance on new data without bias: the chosen model is, among other things, the one that happened to suit it.
# The homework's evaluation task asks exactly this of a given wine classifier: judge its real performance.
#
# **The wine data** (scikit-learn's `load_wine`: 178 wines, 13 chemical measurements, 3 cultivars) are small
# enough that every step of an honest evaluation is visible. A stratified 60/20/20 split gives training,
# validation and test parts; the test part goes into its own `SealedTestSet` at once. A small MLP (13 → 16 → 3)
# trains with the shared `fit` and early stopping on the validation part.

# %%
from scipy.stats import binomtest
from sklearn.datasets import load_wine
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score, roc_curve
from sklearn.preprocessing import StandardScaler


def load_wine_split(final_models: tuple[str, ...], seed: int):
    """The wines less a stratified 20% test part, which goes into a SealedTestSet; and the class names."""
    wine = load_wine()
    rest, test = train_test_split(np.arange(len(wine.target)), test_size=0.2, stratify=wine.target, random_state=seed)
    sealed = seal_arrays("wine", wine.data[test].astype(np.float32), wine.target[test], final_models)
    print(f"wine: {len(wine.target)} wines, classes {np.bincount(wine.target).tolist()}; "
          f"test part of {len(test)} sealed")
    return wine.data[rest].astype(np.float32), wine.target[rest], sealed, list(wine.target_names)

# %% [markdown]
# The non-test wines are split 75/25, stratified: 60% and 20% of all wines. `train_wine` trains with Adam, weight
# decay, batches of 16 and early stopping with a patience of 20 epochs on the validation part. Because that part
# also chooses the stopping epoch, an accuracy measured on it is slightly optimistic; the sealed test part is what
# corrects for that.

# %%
# from here on, X_wine and y_wine are the training and validation wines only
X_wine, y_wine, wine_test_set, WINE_CLASSES = load_wine_split(FINAL_MODELS["wine"], SEED)
wine_rest = np.arange(len(y_wine))
wine_train, wine_val = train_test_split(wine_rest, test_size=0.25, stratify=y_wine, random_state=SEED)
print(f"train {len(wine_train)}, validation {len(wine_val)}")
print(f"feature scales differ by {X_wine.std(0).max() / X_wine.std(0).min():.0f}x (proline vs hue)")


def make_wine_net(seed=SEED) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(13, 16), nn.ReLU(), nn.Linear(16, 3))


def train_wine(X_tr, y_tr, X_va, y_va, seed=SEED, num_epochs=P["wine_epochs"], model=None) -> nn.Module:
    """Train `model` (a new make_wine_net(seed) by default) with early stopping on the validation part."""
    model = make_wine_net(seed) if model is None else model
    as_t = lambda X, y: (torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y))  # noqa: E731
    fit(model, cross_entropy, as_t(X_tr, y_tr), as_t(X_va, y_va), optimizer=torch.optim.Adam(model.parameters(), 1e-2,
        weight_decay=1e-3), num_epochs=num_epochs, batch_size=16, patience=20, val_criterion=F.cross_entropy,
        metric_fn=accuracy,
        generator=torch.Generator().manual_seed(seed), verbose=False)
    return model


def wine_probs(model, X) -> np.ndarray:
    return predict(model, torch.as_tensor(X, dtype=torch.float32)).softmax(1).numpy()

# %% [markdown]
# **Scaling, fitted on the training part only.** The features differ in scale by three orders of magnitude,
# so they are standardised. Three ways are compared on the validation part: the scaler fitted on the training
# part (correct), no scaling, and a scaler fitted on the training and validation wines together, so that the
# wines it is then scored on helped set the scaling (leakage; the test part stays sealed).
#
# Why a network needs the scaling: with one feature in the hundreds next to others below one, the first layer's
# pre-activations are dominated by the large features, and the loss surface is steep along some weight directions
# and flat along others, so no single learning rate suits them all. Standardising,
# $x' = (x - \mu_\text{train})/s_\text{train}$ per feature, puts every feature on the same footing. Fitting $\mu$ and
# $s$ on data that is later used for scoring lets information about that data into the model.

# %%
scalers = {"fit on train only": StandardScaler().fit(X_wine[wine_train]), "no scaling": None,
           "fit on train + validation (leak)": StandardScaler().fit(X_wine)}
scaling_rows = []
for name, scaler in scalers.items():
    transform = scaler.transform if scaler is not None else (lambda a: a)
    val_part = transform(X_wine[wine_val])
    model = train_wine(transform(X_wine[wine_train]), y_wine[wine_train], val_part, y_wine[wine_val])
    scaling_rows.append({"scaling": name,
                         "val_acc": float((wine_probs(model, val_part).argmax(1) == y_wine[wine_val]).mean()),
                         "validation |mean| (max over features)": float(np.abs(val_part.mean(0)).max())})
show_table(scaling_rows)
wine_scaler = scalers["fit on train only"]

# %% [markdown] tags=["observation"]
# **Observation.** Standardising matters for this model: without it the validation accuracy drops from 1 to
# 0.9444, and the raw features' validation means reach 758.9. The leaky scaler scores 1 too: with 36 validation
# wines in three well-separated classes, the harm cannot show in accuracy. It shows in the statistics: fitted on the
# validation wines as well, the scaler centres them better (largest mean 0.2148 against 0.2912), so those wines no
# longer play the part of unseen data, and on a harder task the optimism could reach the score.

# %% [markdown]
# **The final wine model on its test part**, read once: the majority-class baseline, the accuracy with a 95%
# Wilson interval (36 test wines make it wide), the confusion matrix, per-class precision, recall and F1, and
# one-vs-rest ROC curves with their AUC.
#
# With class $c$ taken as positive: precision $= \frac{TP}{TP+FP}$ (of the wines called $c$, the fraction that are
# $c$), recall $= \frac{TP}{TP+FN}$ (of the wines of class $c$, the fraction found), and $F_1 = \frac{2PR}{P+R}$,
# their harmonic mean. The Wilson interval inverts the score test of a binomial proportion: for accuracy $\hat p$ on
# $n$ wines and the normal quantile $z$,
# $$\frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}{1 + \frac{z^2}{n}} .$$
# Unlike the textbook interval $\hat p \pm z\sqrt{\hat p(1-\hat p)/n}$, it does not shrink to zero width when every
# prediction is right, and it stays inside $[0, 1]$. An ROC curve plots the true-positive rate against the
# false-positive rate as the threshold on one class's predicted probability moves; its area, the AUC, is the
# probability that a random wine of that class scores higher than a random wine of another class. The majority
# baseline predicts the training part's most frequent class for every wine: any useful model must beat it.

# %%
def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    interval = binomtest(correct, n).proportion_ci(confidence_level=confidence, method="wilson")
    return interval.low, interval.high


def per_class_report(y_true, y_pred, names) -> list[dict]:
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=range(len(names)),
                                                                     zero_division=0)
    return [{"class": c, "precision": p, "recall": r, "f1": f, "support": int(s)}
            for c, p, r, f, s in zip(names, precision, recall, f1, support)]


wine_model = make_wine_net(SEED)
train_or_load("D: wine classifier", wine_model, {"epochs": P["wine_epochs"], "scaling": "fit on train only"},
              lambda budget: train_wine(wine_scaler.transform(X_wine[wine_train]), y_wine[wine_train],
                                        wine_scaler.transform(X_wine[wine_val]), y_wine[wine_val],
                                        num_epochs=budget["wine_epochs"], model=wine_model))
X_wine_test, wine_true = wine_test_set.read("D: wine classifier")
wine_test_probs = wine_probs(wine_model, wine_scaler.transform(X_wine_test))
wine_pred = wine_test_probs.argmax(1)
wine_acc = float((wine_pred == wine_true).mean())
wine_ci = wilson_interval(int((wine_pred == wine_true).sum()), len(wine_true))
majority = np.bincount(y_wine[wine_train]).argmax()
wine_auc = {str(name): roc_auc_score(wine_true == c, wine_test_probs[:, c]) for c, name in enumerate(WINE_CLASSES)}
print(f"majority-class baseline: {(wine_true == majority).mean():.4f}")
print(f"wine test accuracy {wine_acc:.4f}, 95% Wilson interval [{wine_ci[0]:.4f}, {wine_ci[1]:.4f}] "
      f"on {len(wine_true)} wines")
show_table(per_class_report(wine_true, wine_pred, WINE_CLASSES))
print("one-vs-rest AUC:", {k: round(v, 4) for k, v in wine_auc.items()})

# %% [markdown]
# **How to read this figure.** Left, the confusion matrix in counts: rows are the true cultivars, columns the
# predicted ones, and everything off the diagonal is an error. Right, one ROC curve per cultivar against the other
# two, with the dotted diagonal for a classifier that guesses. A curve through the top-left corner separates its
# class perfectly (AUC 1). With about a dozen test wines per class the curves move in large steps, and one wine
# more or less changes the AUC visibly.

# %%
def plot_confusion_and_roc(cm, roc_curves: dict, names, title) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(PRINT_WIDTH["full"], 3.0))
    axes[0].imshow(cm, cmap="Blues")
    for i, j in np.ndindex(cm.shape):
        axes[0].text(j, i, str(cm[i, j]), ha="center", va="center")
    axes[0].set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
                xlabel="predicted", ylabel="true", title="confusion matrix (counts)")
    axes[0].grid(False)
    for name, (fpr, tpr, auc) in roc_curves.items():
        axes[1].plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    axes[1].plot([0, 1], [0, 1], "k:", label="chance")
    axes[1].set(xlabel="false positive rate", ylabel="true positive rate", title="one-vs-rest ROC")
    axes[1].legend(fontsize=8)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig


wine_cm = confusion_matrix(wine_true, wine_pred, labels=range(3))
rocs = {str(name): (*roc_curve(wine_true == c, wine_test_probs[:, c])[:2], wine_auc[str(name)])
        for c, name in enumerate(WINE_CLASSES)}
fig = plot_confusion_and_roc(wine_cm, rocs, WINE_CLASSES, "Wine: final model on its test part")
savefig(fig, FIGURE_DIR / "wine_evaluation")

# %% [markdown]
# **One split or cross-validation?** On so few samples, the accuracy of one random split depends on the
# split. The recipe is scored on `WINE_SPLITS` different random 80/20 splits of the non-test wines, and by
# repeated stratified 5-fold cross-validation on the same wines; in every run the scaler is refitted on that
# run's training part. The spread of the single-split scores is what one number from one split hides.
#
# Inside each run, `score_split` splits the training rows once more (80/20) so that early stopping never sees the
# rows being scored. Repeated $k$-fold cross-validation with $r$ repeats averages $n = kr$ fold scores, each on
# wines that the model did not train on, and every wine is scored once per repeat. The printed "std of the mean"
# divides the spread of the fold scores by $\sqrt{n}$ as if the folds were independent. They are not: any two
# training parts share most of their wines, so the real uncertainty of the mean is larger than that figure.

# %%
from sklearn.model_selection import RepeatedStratifiedKFold

WINE_SPLITS = P["wine_splits"]


def score_split(X, y, tr, va, seed) -> float:
    """Accuracy on rows va of a wine model trained on rows tr, the scaler fitted on tr alone."""
    scaler = StandardScaler().fit(X[tr])
    inner_tr, inner_es = train_test_split(tr, test_size=0.2, stratify=y[tr], random_state=seed)  # early stopping
    model = train_wine(scaler.transform(X[inner_tr]), y[inner_tr], scaler.transform(X[inner_es]), y[inner_es],
                       seed=seed)
    return float((wine_probs(model, scaler.transform(X[va])).argmax(1) == y[va]).mean())


with section("D evaluation", METRICS):
    single_splits = [train_test_split(wine_rest, test_size=0.2, stratify=y_wine, random_state=s)
                     for s in range(WINE_SPLITS)]
    single = [score_split(X_wine, y_wine, tr, va, seed=s) for s, (tr, va) in enumerate(single_splits)]
    cv = RepeatedStratifiedKFold(n_splits=5, n_repeats=P["wine_cv_repeats"], random_state=SEED)
    cv_splits = cv.split(wine_rest, y_wine)
    cv_scores = [score_split(X_wine, y_wine, tr, va, seed=i)
                 for i, (tr, va) in enumerate(cv_splits)]
print(f"single 80/20 splits ({WINE_SPLITS}): mean {np.mean(single):.4f}, std {np.std(single):.4f}, "
      f"range [{min(single):.4f}, {max(single):.4f}]")
print(f"5-fold CV x {P['wine_cv_repeats']}: {np.mean(cv_scores):.4f} ± {np.std(cv_scores):.4f} "
      f"over {len(cv_scores)} folds; "
      f"std of the mean ≈ {np.std(cv_scores) / math.sqrt(len(cv_scores)):.4f}")
METRICS["appendix"]["D"] = {"wine": {"test_acc": wine_acc, "test_acc_ci95": wine_ci, "auc": wine_auc,
                                     "majority_baseline": float((wine_true == majority).mean()),
                                     "scaling": scaling_rows,
                                     "single_split": {"mean": float(np.mean(single)), "std": float(np.std(single)),
                                                      "min": min(single), "max": max(single)},
                                     "cv": {"mean": float(np.mean(cv_scores)), "std": float(np.std(cv_scores)),
                                            "n": len(cv_scores)}}}

# %% [markdown] tags=["observation"]
# **Observation.** The final wine model classifies all 36 test wines correctly, but the honest claim is the
# interval: accuracy 1.0000 with a 95% Wilson interval of [0.9036, 1.0000], far above the majority baseline of
# 0.3889. One split is a noisy estimate: over 20 random splits of the other wines the accuracy ranges from
# 0.8966 to 1.0000 (mean 0.9741, std 0.0306), while repeated 5-fold CV gives 0.9672 ± 0.0326 over 15 folds. The
# printed standard error of its mean, about 0.0084, treats the folds as independent; they share most of their
# training wines, so the real uncertainty of that mean is larger.

# %% [markdown]
# **The final FashionMNIST models**, evaluated further on the test predictions of section 5 (no new read of
# the test set): per-class precision, recall and F1, the most confused pairs of classes with examples, a
# McNemar test of whether the CNN and the MLP really differ, and calibration.

# %%
mlp_test_probs = mlp_test_logits.softmax(1).cpu().numpy()
cnn_probs_np, y_test_np = cnn_test_probs.cpu().numpy(), y_test.cpu().numpy()
fashion_report = {name: per_class_report(y_test_np, p.argmax(1), FASHION_CLASSES)
                  for name, p in (("mlp", mlp_test_probs), ("cnn", cnn_probs_np))}
show_table([{"class": m["class"], "mlp_precision": m["precision"], "mlp_recall": m["recall"], "mlp_f1": m["f1"],
             "cnn_precision": c["precision"], "cnn_recall": c["recall"], "cnn_f1": c["f1"]}
            for m, c in zip(fashion_report["mlp"], fashion_report["cnn"])], sort_by="cnn_f1");

# %% [markdown]
# **The most confused pairs.** The CNN's confusion matrix plus its transpose counts the confusions of each pair of
# classes in both directions; the three largest pairs are shown with up to four misclassified test images per
# direction. The images come from section 5's single read, which kept the CNN's misclassified test images for this
# purpose. Looking at the errors helps to tell the model's faults from the data's: an image whose class is
# ambiguous even to a person at 28×28 points to the labels or the resolution, not to the model.

# %%
cnn_cm = confusion_matrix(y_test_np, cnn_probs_np.argmax(1), labels=range(10))
pair_counts = cnn_cm + cnn_cm.T  # both directions of a confusion
np.fill_diagonal(pair_counts, 0)
top_pairs = sorted(((int(pair_counts[i, j]), i, j) for i in range(10) for j in range(i + 1, 10)), reverse=True)[:3]
examples, titles = [], []
for count, i, j in top_pairs:
    print(f"{FASHION_CLASSES[i]} <-> {FASHION_CLASSES[j]}: {count} test images "
          f"({cnn_cm[i, j]} {FASHION_CLASSES[i]} called {FASHION_CLASSES[j]}, {cnn_cm[j, i]} the other way)")
    for true, pred in ((i, j), (j, i)):
        wrong = np.flatnonzero((y_test_np == true) & (cnn_probs_np.argmax(1) == pred))[:4]
        examples += [final_test["cnn_wrong_images"][np.searchsorted(final_test["cnn_wrong_index"], k)] for k in wrong]
        titles += [f"{FASHION_CLASSES[true]}\n→ {FASHION_CLASSES[pred]}" for _ in wrong]
fig = plot_image_grid(examples, titles, ncols=8, title="Final CNN: test images of the three most confused pairs")
savefig(fig, FIGURE_DIR / "fashion_confused_pairs")

# %% [markdown]
# **McNemar's test** looks only at the test images on which the two models disagree: $b$ images the MLP gets
# right and the CNN wrong, $c$ the reverse. If both models were equally accurate, each disagreement would fall
# either way with probability ½, so $b \sim \text{Binomial}(b + c, ½)$; the exact two-sided p-value comes from
# that binomial, and the usual $\chi^2 = (|b-c|-1)^2/(b+c)$ is printed beside it.
# Why not compare two accuracies, each with its own interval? Both models classify the same test images, so
# their errors are paired: images that both get right, or both wrong, say nothing about which model is better.
# The paired test sets them aside, and it can detect a real difference that two overlapping intervals would miss.

# %%
mlp_right, cnn_right = mlp_test_probs.argmax(1) == y_test_np, cnn_probs_np.argmax(1) == y_test_np
b, c = int((mlp_right & ~cnn_right).sum()), int((~mlp_right & cnn_right).sum())
mcnemar_p = binomtest(b, b + c, 0.5).pvalue
chi2 = (abs(b - c) - 1) ** 2 / (b + c)
print(f"both right {int((mlp_right & cnn_right).sum())}, both wrong {int((~mlp_right & ~cnn_right).sum())}, "
      f"only MLP right b = {b}, only CNN right c = {c}")
print(f"McNemar: exact p = {mcnemar_p:.3g}, chi2 = {chi2:.2f}")

# %% [markdown]
# **Calibration.** A model is calibrated when, among the images it classifies with confidence $p$, a fraction
# $p$ is right. The reliability diagram bins the test images by confidence (15 equal-width bins); the expected
# calibration error $\text{ECE} = \sum_b \frac{n_b}{N}\,|\text{acc}_b - \text{conf}_b|$ sums the gaps.
#
# **How to read the diagram.** Points on the dotted diagonal are calibrated; points below it are over-confident
# (right less often than claimed), points above it under-confident. Label smoothing with weight $\varepsilon$
# trains towards a target of $1 - \varepsilon + \varepsilon/K$ on the true class of $K$, which pulls confidence
# down. Temperature scaling, $\hat p = \operatorname{softmax}(z/T)$ with one $T > 0$ fitted on validation data,
# corrects miscalibration of either sign without changing any prediction, because dividing all logits by the same
# $T$ keeps their order. Bins that hold few images give noisy points, so the ECE also depends on the number of bins.

# %%
def reliability(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict:
    conf, right = probs.max(1), probs.argmax(1) == y
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    acc = np.bincount(bins, weights=right, minlength=n_bins) / np.maximum(counts, 1)
    mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / np.maximum(counts, 1)
    ece = float(np.sum(counts / len(y) * np.abs(acc - mean_conf)))
    return {"acc": acc, "conf": mean_conf, "counts": counts, "ece": ece,
            "mean_conf": float(conf.mean()), "accuracy": float(right.mean())}


def plot_reliability(curves: dict[str, dict], title: str, width=PRINT_WIDTH["half"]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(width, 0.9 * width))
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    for name, r in curves.items():
        used = r["counts"] > 0
        ax.plot(r["conf"][used], r["acc"][used], marker="o", color=COLORS[name],
                label=f"{name.upper()} (ECE {r['ece']:.4f})")
    ax.set(xlabel="confidence (mean of bin)", ylabel="accuracy in bin")
    fig.suptitle(title, fontsize="medium")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


calibration = {"mlp": reliability(mlp_test_probs, y_test_np), "cnn": reliability(cnn_probs_np, y_test_np)}
for name, r in calibration.items():
    print(f"{name.upper()}: ECE {r['ece']:.4f}, mean confidence {r['mean_conf']:.4f}, accuracy {r['accuracy']:.4f}")
savefig(plot_reliability(calibration, "Reliability, FashionMNIST test set"), FIGURE_DIR / "reliability")
METRICS["appendix"]["D"]["fashion"] = {
    "per_class": fashion_report,
    "mcnemar": {"b_only_mlp_right": b, "c_only_cnn_right": c, "p_exact": mcnemar_p, "chi2": chi2},
    "ece": {k: r["ece"] for k, r in calibration.items()},
    "mean_confidence": {k: r["mean_conf"] for k, r in calibration.items()},
    "confused_pairs": [{"pair": f"{FASHION_CLASSES[i]} / {FASHION_CLASSES[j]}", "count": n} for n, i, j in top_pairs]}

# %% [markdown] tags=["observation"]
# **Observation.** Shirt is the weakest class for both models (F1 0.7504 for the MLP, 0.8288 for the CNN), and
# all three of the CNN's most confused pairs involve it: T-shirt/top (150 test images), coat (77) and pullover (56).
# The likely cause, which the examples illustrate: these classes share the same silhouettes at 28×28. McNemar's
# test rules out chance as the source of the CNN's lead: of the images on which the models disagree, the CNN alone
# gets 525 right and the MLP alone 209 (exact p = 3.19e-32). Both models are *under*-confident: the mean confidence
# is 0.8546 (MLP) and 0.8440 (CNN) against accuracies of 0.9090 and 0.9406, giving ECEs of 0.0548 and 0.0966. This
# is the expected effect of the label smoothing (0.1) in both final recipes, which trains the networks never to put
# all the probability on one class; the CNN's flip TTA, which averages the probabilities of an image and its mirror,
# likely lowers its confidence a little further. Temperature scaling on held-out data would correct the calibration
# without changing a single prediction.
