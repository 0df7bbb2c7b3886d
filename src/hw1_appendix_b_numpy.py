# %% [markdown]
# ### Appendix B. A neural network in NumPy only <a id="app-b"></a>
# The homework asks for a network built by hand: a softmax output with cross-entropy loss, L2 regularization, the
# Adam optimizer and exponential learning-rate decay, trained on CIFAR-10. Written without autograd, every step
# that a framework hides is visible.
#
# A fully connected network written with NumPy alone: `forward_pass` keeps each layer's input and
# pre-activation, `backward_pass` applies the chain rule layer by layer from the output, and
# `update_network` takes one SGD or Adam step. The output is a softmax trained with cross-entropy, whose
# gradient with respect to the logits is simply $(\hat p - \text{onehot}(y))/B$ for a batch of $B$; the
# L2 penalty $\tfrac{\lambda}{2}\sum W^2$ adds $\lambda W$ to each weight gradient (biases are not
# penalised). Weights start with He scaling for ReLU and LeCun scaling for sigmoid.
#
# **The forward pass.** A batch is the rows of $X$ ($B \times d$). Layer $l$ computes $Z^l = A^{l-1} W^l + b^l$
# (the bias added to every row) and $A^l = f(Z^l)$, with $A^0 = X$; the last layer applies the softmax
# $\hat p_{ij} = e^{z_{ij}} / \sum_{j'} e^{z_{ij'}}$ instead of $f$. The loss is
# $$L = -\frac1B \sum_{i=1}^{B} \log \hat p_{i, y_i} + \frac\lambda2 \sum_l \lVert W^l\rVert_F^2 .$$
# He scaling draws $W \sim \mathcal N(0, 2/n_\text{in})$ and LeCun scaling $\mathcal N(0, 1/n_\text{in})$, so that
# the pre-activations keep roughly the same variance from layer to layer at the start; the factor 2 makes up for
# ReLU setting about half of its inputs to zero. `softmax` subtracts each row's maximum first, which leaves the
# result unchanged and keeps `exp` from overflowing.

# %%
def np_sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))  # equals 1 / (1 + e^-z) without overflow warnings


NP_ACTIVATIONS = {  # function, and its derivative written with the pre-activation z and the output a
    "relu": (lambda z: np.maximum(z, 0), lambda z, a: (z > 0).astype(z.dtype)),
    "sigmoid": (np_sigmoid, lambda z, a: a * (1 - a)),
}


def init_network(sizes, activation="relu", seed=SEED, dtype=np.float32) -> dict:
    rng = np.random.default_rng(seed)
    gain = 2.0 if activation == "relu" else 1.0
    layers = [{"W": (rng.standard_normal((n_in, n_out)) * math.sqrt(gain / n_in)).astype(dtype),
               "b": np.zeros(n_out, dtype)} for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    return {"layers": layers, "activation": activation}


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))  # shifting by the max changes nothing but avoids overflow
    return e / e.sum(1, keepdims=True)


def forward_pass(net, X):
    """Return the class probabilities and, per layer, (input, pre-activation) for the backward pass."""
    act = NP_ACTIVATIONS[net["activation"]][0]
    cache, a = [], X
    for i, layer in enumerate(net["layers"]):
        z = a @ layer["W"] + layer["b"]
        cache.append((a, z))
        a = softmax(z) if i == len(net["layers"]) - 1 else act(z)
    return a, cache


def cross_entropy_np(net, probs, y, l2=0.0) -> float:
    data = -np.log(probs[np.arange(len(y)), y] + 1e-12).mean()
    return float(data + 0.5 * l2 * sum((layer["W"] ** 2).sum() for layer in net["layers"]))

# %% [markdown]
# **Backward pass and update.** With $\delta^l = \partial L/\partial Z^l$ (a $B \times n_l$ matrix), the chain rule
# gives, from the output layer down,
# $$\delta^{\text{out}} = \frac{\hat P - Y}{B},\qquad
#   \frac{\partial L}{\partial W^l} = (A^{l-1})^{\top}\delta^l + \lambda W^l,\qquad
#   \frac{\partial L}{\partial b^l} = \mathbf 1^{\top} \delta^l,\qquad
#   \delta^{l-1} = \big(\delta^l (W^{l})^{\top}\big) \odot f'(Z^{l-1}),$$
# where $Y$ is the one-hot matrix of the labels and $\odot$ the element-wise product. The first identity is why
# softmax and cross-entropy are paired: the softmax's Jacobian and the derivative of the log cancel to
# $\hat p_j - [j = y]$. Adam keeps running means of the gradient $g_t$ and of its square,
# $$m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\qquad
#   \theta_t = \theta_{t-1} - \eta\,\frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon},$$
# where dividing by $1-\beta^t$ removes the bias of moments that start at zero. Each weight thus gets its own step,
# roughly bounded by $\eta$ whatever the scale of its gradient. The L2 term is part of $g_t$ here (coupled L2), so
# Adam rescales it like the rest of the gradient; AdamW's decoupled weight decay, used for the final MLP and CNN
# (and elsewhere) in this notebook, shrinks the weights outside the adaptive step instead.

# %%
def backward_pass(net, probs, cache, y, l2=0.0) -> list[dict]:
    """Gradients of cross_entropy_np with respect to every W and b, from the output layer down."""
    d_act = NP_ACTIVATIONS[net["activation"]][1]
    delta = probs.copy()
    delta[np.arange(len(y)), y] -= 1
    delta /= len(y)  # dL/dz of the output layer for softmax + cross-entropy
    grads = [None] * len(net["layers"])
    for i in reversed(range(len(net["layers"]))):
        a_prev, _ = cache[i]
        W = net["layers"][i]["W"]
        grads[i] = {"W": a_prev.T @ delta + l2 * W, "b": delta.sum(0)}
        if i > 0:  # a_prev is the output of layer i-1: push delta through W and that layer's activation
            delta = (delta @ W.T) * d_act(cache[i - 1][1], a_prev)
    return grads


def init_optimizer_state(net) -> dict:
    return {"t": 0, "m": [{k: np.zeros_like(v) for k, v in layer.items()} for layer in net["layers"]],
            "v": [{k: np.zeros_like(v) for k, v in layer.items()} for layer in net["layers"]]}


def update_network(net, grads, state, lr, optimizer="adam", beta1=0.9, beta2=0.999, eps=1e-8) -> None:
    """One in-place step: plain SGD, or Adam with bias-corrected first and second moments."""
    state["t"] += 1
    for layer, grad, m, v in zip(net["layers"], grads, state["m"], state["v"]):
        for k in layer:
            if optimizer == "sgd":
                layer[k] -= lr * grad[k]
                continue
            m[k] = beta1 * m[k] + (1 - beta1) * grad[k]
            v[k] = beta2 * v[k] + (1 - beta2) * grad[k] ** 2
            m_hat, v_hat = m[k] / (1 - beta1 ** state["t"]), v[k] / (1 - beta2 ** state["t"])
            layer[k] -= lr * m_hat / (np.sqrt(v_hat) + eps)

# %% [markdown]
# **Gradient check.** A small network in float64 (12 inputs, hidden layers of 7 and 5, 4 classes, 16
# samples, L2 = 0.01), for both hidden activations: every one of its 155 parameters is nudged by
# $\pm 10^{-6}$ for a central finite difference, and the same network is rebuilt in PyTorch so that
# autograd gives a second reference. The error of each parameter tensor is
# $\lVert g - g_\text{ref}\rVert / \max(\lVert g\rVert, \lVert g_\text{ref}\rVert)$.
# Float64 matters here: in float32 the loss carries rounding errors of about $10^{-7}$, which, divided by $2h$,
# would swamp the difference quotient. ReLU has a kink at 0, where a finite difference is wrong whenever the nudge
# moves a pre-activation across it; with random inputs that is very unlikely for a nudge of $10^{-6}$, and one
# large error in the ReLU rows with none in the sigmoid rows would point to a kink rather than to a bug.

# %%
def numerical_gradient(net, X, y, l2, h=1e-6) -> list[dict]:
    grads = []
    for layer in net["layers"]:
        grads.append({})
        for k, p in layer.items():
            g = np.zeros_like(p)
            for i in np.ndindex(p.shape):
                old = p[i]
                p[i] = old + h
                plus = cross_entropy_np(net, forward_pass(net, X)[0], y, l2)
                p[i] = old - h
                minus = cross_entropy_np(net, forward_pass(net, X)[0], y, l2)
                p[i] = old
                g[i] = (plus - minus) / (2 * h)
            grads[-1][k] = g
    return grads


def torch_gradient(net, X, y, l2) -> list[dict]:
    params = [{k: torch.tensor(v, requires_grad=True) for k, v in layer.items()} for layer in net["layers"]]
    act = {"relu": torch.relu, "sigmoid": torch.sigmoid}[net["activation"]]
    a = torch.tensor(X)
    for i, p in enumerate(params):
        a = a @ p["W"] + p["b"]
        a = a if i == len(params) - 1 else act(a)
    loss = F.cross_entropy(a, torch.tensor(y)) + 0.5 * l2 * sum((p["W"] ** 2).sum() for p in params)
    loss.backward()
    return [{k: v.grad.numpy() for k, v in p.items()} for p in params]


def relative_error(a, b) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))

# %% [markdown]
# The check runs for both hidden activations. The table has one row per parameter tensor (`W1` to `b3`) and
# activation; both error columns should be tiny, and the `assert` stops the notebook if any exceeds $10^{-6}$.

# %%
rng_check = np.random.default_rng(SEED)
X_check, y_check = rng_check.standard_normal((16, 12)), rng_check.integers(0, 4, 16)
gradcheck_rows = []
for activation in NP_ACTIVATIONS:
    net_check = init_network([12, 7, 5, 4], activation, dtype=np.float64)
    probs, cache = forward_pass(net_check, X_check)
    analytic = backward_pass(net_check, probs, cache, y_check, l2=0.01)
    numeric = numerical_gradient(net_check, X_check, y_check, 0.01)
    autograd = torch_gradient(net_check, X_check, y_check, 0.01)
    for i, (g, n, t) in enumerate(zip(analytic, numeric, autograd)):
        for k in g:
            gradcheck_rows.append({"activation": activation, "parameter": f"{k}{i + 1}", "shape": str(g[k].shape),
                                   "rel_err_finite_diff": relative_error(g[k], n[k]),
                                   "rel_err_autograd": relative_error(g[k], t[k])})
show_table(gradcheck_rows)
np_gradcheck_err = max(max(r["rel_err_finite_diff"], r["rel_err_autograd"]) for r in gradcheck_rows)
print(f"largest relative error: {np_gradcheck_err:.2e}")
assert np_gradcheck_err < 1e-6, "the NumPy backward pass is wrong"
METRICS["appendix"]["B"] = {"gradcheck_max_rel_err": np_gradcheck_err}

# %% [markdown]
# **CIFAR-10** comes from `load_cifar10` (shared helpers): `DATA_DIR/cifar10.npz`, or a torchvision download
# that writes that file; without CIFAR-10 at all this appendix runs on FashionMNIST instead and says so.
# Pixels are scaled to [0, 1] and standardised per input feature with statistics of the training part only.

# %% [markdown]
# The cell below loads the data, moves the test part into its seal at once, and splits 5 000 stratified
# validation images off the training part; training uses the first `np_n_train` of the rest. Each input (a pixel
# in one colour channel: 3 072 of them for CIFAR-10's 32×32×3 images) gets its own mean and sd, so every input
# enters the first layer on the same scale; the `+ 1e-3` keeps a nearly constant pixel from being divided by
# almost zero. An MLP sees the image as an unordered vector: it has no notion of neighbouring pixels, which is why
# MLPs stay well below convolutional networks on CIFAR-10.

# %%
cifar = load_cifar10(DATA_DIR / "cifar10.npz")
if cifar is not None:
    NP_DATASET, np_classes = "CIFAR-10", CIFAR_CLASSES
    X_np, y_np = cifar["x_train"].reshape(50000, -1), cifar["y_train"].astype(np.int64)
    # the test part moves into its seal; `cifar` keeps the training part only
    cifar_test = seal_arrays("CIFAR-10", cifar.pop("x_test"), cifar.pop("y_test"), FINAL_MODELS["CIFAR-10"])
    np_test_set = cifar_test
    NP_PROVENANCE = str(cifar.get("provenance", "CIFAR-10 (no provenance recorded)"))
else:
    NP_DATASET, np_classes = "FashionMNIST", FASHION_CLASSES
    NP_PROVENANCE = "FashionMNIST, because CIFAR-10 was not available"
    X_np, y_np = fashion["train_images"].reshape(60000, -1).numpy(), fashion["train_labels"].numpy()
    np_test_set = test_set  # read at the end by the final NumPy network, like the MLP and the CNN
np_train_idx, np_val_idx = train_test_split(np.arange(len(y_np)), test_size=5000, random_state=SEED, stratify=y_np)
np_train_idx = np_train_idx[:P["np_n_train"]]
np_mean = (X_np[np_train_idx] / 255).mean(0)
np_std = (X_np[np_train_idx] / 255).std(0) + 1e-3
standardize = lambda a: ((a / 255 - np_mean) / np_std).astype(np.float32)  # noqa: E731
X_np_train, X_np_val = standardize(X_np[np_train_idx]), standardize(X_np[np_val_idx])
y_np_train, y_np_val = y_np[np_train_idx], y_np[np_val_idx]
print(f"{NP_DATASET}: train {X_np_train.shape}, validation {X_np_val.shape}, "
      f"test sealed (read once, by the final network)")
print(f"provenance: {NP_PROVENANCE}")

# %% [markdown]
# **Training** is the same plain loop as `fit`, in NumPy: shuffled mini-batches, one update per batch, and the
# exponential learning-rate decay $\eta_t = \eta\, e^{-kt}$ applied per epoch $t$. The history has the keys of
# `fit`'s history, so the shared `plot_curves` draws it.

# %%
@dataclass(frozen=True)
class NumpyConfig:
    hidden: tuple = (1024, 512)
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 1e-3
    l2: float = 1e-4
    lr_decay: float = 0.1  # k in lr * exp(-k * epoch); 0 keeps the rate constant
    batch_size: int = 128
    num_epochs: int = 10


def predict_numpy(net, X, batch_size=2000) -> np.ndarray:
    return np.concatenate([forward_pass(net, X[i:i + batch_size])[0] for i in range(0, len(X), batch_size)])

# %% [markdown]
# `train_numpy_net` is the loop. At the start of each epoch it sets the learning rate $\eta e^{-kt}$ and draws a
# fresh permutation from the run's own generator; then one forward pass, backward pass and update per minibatch.
# After each epoch the whole validation part is scored. The recorded training loss is the data term alone,
# averaged over the epoch while the weights were still changing, so it lags a little behind the loss of the
# end-of-epoch weights. There is no early stopping: the network returned is the one after the last epoch.

# %%
def train_numpy_net(cfg: NumpyConfig, train, val, name="numpy", seed=SEED, verbose=True) -> tuple[dict, dict]:
    (X, y), (X_v, y_v) = train, val
    net = init_network([X.shape[1], *cfg.hidden, 10], cfg.activation, seed)
    state, rng = init_optimizer_state(net), np.random.default_rng(seed)
    history = {"epoch": [], "train_loss": [], "val_loss": [], "val_metric": [], "time_s": []}
    start, seen = time.perf_counter(), 0
    for epoch in range(cfg.num_epochs):
        lr = cfg.lr * math.exp(-cfg.lr_decay * epoch)
        order, running = rng.permutation(len(X)), 0.0
        for s in range(0, len(X), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            probs, cache = forward_pass(net, X[idx])
            running += cross_entropy_np(net, probs, y[idx]) * len(idx)
            update_network(net, backward_pass(net, probs, cache, y[idx], cfg.l2), state, lr, cfg.optimizer)
            seen += len(idx)
        val_probs = predict_numpy(net, X_v)
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(running / len(X))
        history["val_loss"].append(cross_entropy_np(net, val_probs, y_v))
        history["val_metric"].append(float((val_probs.argmax(1) == y_v).mean()))
        history["time_s"].append(time.perf_counter() - start)
        if verbose:
            print(f"[{name}] epoch {epoch + 1:3d}/{cfg.num_epochs} | lr {lr:.2e} | "
                  f"train {history['train_loss'][-1]:.4f} | val {history['val_loss'][-1]:.4f} | "
                  f"acc {100 * history['val_metric'][-1]:5.2f}% | {history['time_s'][-1]:6.1f}s")
    history["samples_per_s"] = seen / history["time_s"][-1]
    return net, history

# %% [markdown]
# **Learning rates, then ablations.** SGD and Adam each get their own learning rate, picked by validation
# accuracy after a short run on a subset. Then four runs on the same subset and budget change one thing each
# against the full recipe (Adam, L2, decay): Adam → SGD, no L2, no decay. The best of them on validation is
# then trained on the whole training part for longer and evaluated once on the test set.

# %%
np_base = NumpyConfig(hidden=P["np_hidden"], num_epochs=P["np_tune_epochs"])
np_sub = slice(0, P["np_ablation_n"])
np_sub_train = (X_np_train[np_sub], y_np_train[np_sub])
NP_LRS = {"adam": [3e-4, 1e-3, 3e-3], "sgd": [0.01, 0.03, 0.1]}
np_lr_rows = []
with section("B numpy network", METRICS):
    for opt, lrs in NP_LRS.items():
        for lr in lrs:
            _, hist = train_numpy_net(replace(np_base, optimizer=opt, lr=lr), np_sub_train, (X_np_val, y_np_val),
                                      name=f"{opt} lr {lr:g}", verbose=False)
            np_lr_rows.append({"optimizer": opt, "lr": lr, "val_acc": hist["val_metric"][-1],
                               "val_loss": hist["val_loss"][-1]})
np_lr_rows = show_table(np_lr_rows, sort_by="val_acc", descending=True)
np_best_lr = {opt: next(r["lr"] for r in np_lr_rows if r["optimizer"] == opt) for opt in NP_LRS}
print("tuned learning rates:", np_best_lr)

# %% [markdown]
# The table above lists every learning rate tried, best first, and each optimizer keeps its own best. The two
# grids sit at different heights on purpose: an SGD step is proportional to the gradient's size, while Adam's is
# normalised by it, so good rates for the two are not comparable. A best value at the edge of its grid means the
# optimum may lie beyond it, and the grid should be extended that way. The next cell trains the four ablation
# runs with the tuned rates, prints their table and draws their curves.

# %%
np_recipe = replace(np_base, lr=np_best_lr["adam"], num_epochs=P["np_ablation_epochs"])
NP_ABLATIONS = {"Adam + L2 + decay (recipe)": np_recipe,
                "SGD instead of Adam": replace(np_recipe, optimizer="sgd", lr=np_best_lr["sgd"]),
                "no L2": replace(np_recipe, l2=0.0),
                "no learning-rate decay": replace(np_recipe, lr_decay=0.0)}
np_histories, np_ablation_rows = {}, []
with section("B numpy network", METRICS):
    for name, cfg in NP_ABLATIONS.items():
        _, np_histories[name] = train_numpy_net(cfg, np_sub_train, (X_np_val, y_np_val), name=name)
        np_ablation_rows.append({"run": name, "optimizer": cfg.optimizer, "lr": cfg.lr, "l2": cfg.l2,
                                 "lr_decay": cfg.lr_decay, "final_val_acc": np_histories[name]["val_metric"][-1],
                                 "best_val_acc": max(np_histories[name]["val_metric"]),
                                 "final_train_loss": np_histories[name]["train_loss"][-1]})
np_ablation_rows = show_table(np_ablation_rows, sort_by="final_val_acc", descending=True)
fig = plot_curves(np_histories, keys=("train_loss", "val_loss", "val_metric"),
                  ylabels=("training loss", "validation loss", "validation accuracy"), legend_cols=2,
                  title=f"NumPy network on {NP_DATASET}: one change at a time ({P['np_ablation_n']} images)")
savefig(fig, FIGURE_DIR / "numpy_ablations")


# %% [markdown]
# **How to read this figure.** Three panels over the epochs: training loss, validation loss and validation
# accuracy, one line per run. The recorded training loss leaves out the L2 term, so the runs with and without L2
# share one scale. A training loss that keeps falling while the validation loss turns upwards is overfitting,
# which is what L2 is there to delay. A curve that is flat from the start points to a learning rate far too small;
# one that jumps up or turns into `nan` points to one too large. Every run is a single seed, so gaps smaller than
# the seed-to-seed spread, which this appendix does not measure, are no evidence either way. The run with the best
# final validation accuracy supplies the settings of the final network.

# %% [markdown]
# **The final NumPy network** takes the best ablation's settings, trains on all of the training part for
# longer, and reads the test set once.

# %%
def numpy_state(net: dict) -> dict:
    """The NumPy network's arrays, and the input standardisation it was trained with, as one flat dict."""
    return {"input_mean": np_mean, "input_std": np_std,
            **{f"{i}.{k}": layer[k] for i, layer in enumerate(net["layers"]) for k in ("W", "b")}}


np_run_config = {"network": asdict(replace(NP_ABLATIONS[np_ablation_rows[0]["run"]], num_epochs=P["np_epochs"])),
                 "dataset": NP_DATASET, "inputs": X_np_train.shape[1]}
np_final_config = final_config("B: NumPy network", np_run_config)  # in verify: the committed run's
if np_final_config["dataset"] != NP_DATASET:  # verify, without the data set of the committed network
    print(f"verify: the committed NumPy network was trained on {np_final_config['dataset']}, which is not here: this "
          f"run trains its own on {NP_DATASET} at the smoke budget, and its test number is not compared")
    VERIFIED["B: NumPy network"] = f"not compared: no {np_final_config['dataset']} here"
    np_final_config = np_run_config

# %% [markdown]
# Train and save, or under `verify` load. A loaded network comes with the input mean and sd it was trained with:
# the same weights applied to differently standardised inputs would compute a different function. The source
# digest ties the checkpoint to the code of `init_network`, `forward_pass`, `softmax`, `np_sigmoid` and
# `NumpyConfig`.

# %%
np_final_cfg = from_dict(NumpyConfig, np_final_config["network"])
np_digest = source_digest(init_network, forward_pass, softmax, np_sigmoid, NumpyConfig)
print(f"final NumPy network: {np_final_cfg}")
with section("B numpy network", METRICS):
    np_state = load_checkpoint("B: NumPy network", np_digest) if VERIFY and not VERIFIED.get("B: NumPy network") \
        else None
    if np_state is not None:  # verify: the committed weights, and the standardisation they were trained with
        np_mean, np_std = np_state.pop("input_mean").numpy(), np_state.pop("input_std").numpy()
        np_final_net = {"activation": np_final_cfg.activation,
                        "layers": [{k: np_state[f"{i}.{k}"].numpy() for k in ("W", "b")}
                                   for i in range(len(np_state) // 2)]}
        np_final_history = loaded_history()
    else:
        np_budget = PROFILES["quick"] if VERIFIED.get("B: NumPy network", "").startswith("trained again") else P
        np_final_net, np_final_history = train_numpy_net(
            replace(np_final_cfg, num_epochs=np_budget["np_epochs"]), (X_np_train, y_np_train), (X_np_val, y_np_val),
            name="numpy")
        save_checkpoint("B: NumPy network", numpy_state(np_final_net), np_final_config, np_digest)

# %% [markdown]
# The single test read, by name. The test images go through the same `standardize` as the training images, with
# the training part's mean and sd.

# %%
images, labels = np_test_set.read("B: NumPy network")
images, labels = np.asarray(images).reshape(len(labels), -1), np.asarray(labels).astype(np.int64)
np_test_acc = float((predict_numpy(np_final_net, standardize(images)).argmax(1) == labels).mean())
print(f"NumPy network on {NP_DATASET}: test accuracy {100 * np_test_acc:.2f}% "
      f"(validation {100 * np_final_history['val_metric'][-1]:.2f}%, "
      f"{np_final_history['samples_per_s']:.0f} samples/s)")
print(f"data: {NP_PROVENANCE}")
METRICS["appendix"]["B"].update({
    "dataset": NP_DATASET, "provenance": NP_PROVENANCE, "config": asdict(np_final_cfg), "test_acc": np_test_acc,
    "val_acc": np_final_history["val_metric"][-1], "samples_per_s": np_final_history["samples_per_s"],
    "train_wall_s": np_final_history["time_s"][-1], "tuned_lr": np_best_lr, "lr_rows": np_lr_rows,
    "ablations": np_ablation_rows, "n_train": len(y_np_train)})

# %% [markdown] tags=["observation"]
# **Observation.** The backward pass agrees with autograd to rounding (relative errors near 1e-16) and with
# finite differences to 2.21e-08, the rounding error of the difference quotient, far below the 1e-6 bar. On
# CIFAR-10 the tuned learning rates are 0.0003 for Adam and 0.01 for SGD, each the smallest value tried, so the
# grids should be widened downwards. At equal budget Adam beats SGD clearly (0.4706 against 0.4272 after six
# epochs); removing L2 or the learning-rate decay changes accuracy by under a point, which a seed could reverse
# (without L2 0.4742, without decay 0.4648, one run each), so they are not ranked. The final network takes the top
# run's settings, hence no L2, on a margin within that noise. This 512-256 network reaches **52.75%** test
# accuracy (validation 53.62%), above the assignment's 42% and our 50% target, in pure NumPy at 7246 samples/s.
# Its validation loss is lowest at epoch 6 (1.4108) and ends slightly higher (1.4185), while the training loss keeps
# falling to 0.7667 and validation accuracy is at its best in the last epoch: the gap between the two losses widens,
# a first sign that the MLP starts to overfit CIFAR-10, likely by growing over-confident. The rise after epoch 6 is
# small and comes from one run; more regularization or augmentation is the next thing to try.
