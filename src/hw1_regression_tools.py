# %% [markdown]
# **The simulation family.** The course's files are not part of this repository, so the regression pipeline is
# judged on a family of functions whose truth is known. Each data set copies the course's layout: 100 training
# inputs on [-5, 5] with two gaps, about (-3, -1) and (1.7, 3.1), denser towards x = 5, labels with noise of
# sd 0.5; 100 test inputs evenly spread over the whole interval with noise of sd 0.12. Every function is a sum of
# smooth parts (sines with periods of at least 2, low-degree polynomials, Gaussian bumps centred outside the
# gaps), so its shape inside the gaps and at the edges is no rougher than elsewhere and can be inferred from the
# data. `gap_surprise` makes "can be inferred" a check: inside each gap, a function may depart from the cubic
# bridge through its values and slopes at the gap's two ends by less than half the noise sd (a function with a
# valley hidden in a gap, which no data can reveal, fails it). A method is scored by its mean squared error
# against the function itself on 1,001 evenly spaced points: the ground truth of a simulation study, which is not
# a test set.

# %%
REGRESSION_GAPS = ((-3.0, -1.0), (1.7, 3.1))
SIMULATION_FAMILY = {  # name -> (formula as printed, function)
    "slope + sine": ("0.5x + 2 sin(0.9x + 0.3)", lambda x: 0.5 * x + 2 * np.sin(0.9 * x + 0.3)),
    "cubic": ("0.05x³ − 0.6x + 1", lambda x: 0.05 * x**3 - 0.6 * x + 1),
    "three bumps": ("2.5 e^{−(x+4)²/2} − 2 e^{−x²/1.2} + 3 e^{−(x−4.3)²/1.5}",
                    lambda x: 2.5 * np.exp(-(x + 4) ** 2 / 2) - 2 * np.exp(-x**2 / 1.2)
                    + 3 * np.exp(-(x - 4.3) ** 2 / 1.5)),
    "two waves": ("1.5 sin(1.1x) + 0.7 cos(1.3x + 1)", lambda x: 1.5 * np.sin(1.1 * x) + 0.7 * np.cos(1.3 * x + 1)),
    "bowl + wave": ("0.15x² − 1 + sin(1.4x)", lambda x: 0.15 * x**2 - 1 + np.sin(1.4 * x)),
    "step + bump": ("2 tanh(0.8x) + 1.5 e^{−(x+3.8)²}", lambda x: 2 * np.tanh(0.8 * x) + 1.5 * np.exp(-(x + 3.8) ** 2)),
}
TRUTH_GRID = np.linspace(-5, 5, 1001)


def in_gaps(x, gaps=REGRESSION_GAPS) -> np.ndarray:
    return np.array([any(lo < v < hi for lo, hi in gaps) for v in np.atleast_1d(x)], dtype=bool)


def gap_surprise(f, gaps=REGRESSION_GAPS, h=1e-4) -> float:
    """Largest |f - cubic Hermite bridge| inside the gaps, the bridge built from f and f' at each gap's ends."""
    largest = 0.0
    for lo, hi in gaps:
        ends, x = np.array([lo, hi]), np.linspace(lo, hi, 201)
        bridge = CubicHermiteSpline(ends, f(ends), (f(ends + h) - f(ends - h)) / (2 * h))
        largest = max(largest, float(np.abs(f(x) - bridge(x)).max()))
    return largest


def simulate_regression(f, seed: int, n: int = 100) -> dict:
    """Training and test points in the course's layout for the function f."""
    rng = np.random.default_rng(seed)
    x_train = []
    while len(x_train) < n:  # 70% uniform, 30% piled up towards x = 5
        x = rng.uniform(-5, 5) if rng.random() < 0.7 else 5 - 3 * rng.beta(1, 2)
        if not in_gaps(x)[0]:
            x_train.append(x)
    x_train, x_test = np.sort(x_train), np.linspace(-5, 5, n)
    return {"x": x_train, "y": f(x_train) + rng.normal(0, 0.5, n),
            "x_test": x_test, "y_test": f(x_test) + rng.normal(0, 0.12, n)}

# %% [markdown]
# **Why the error against the truth:** it is the sum of the bias² and variance terms of the decomposition under
# "What limits the error" in section 1.1 above, free of the noise floor $\sigma^2$ that every test MSE contains.

# %% [markdown]
# **Folds that look like the task.** Shuffled k-fold holds out scattered points, each with close neighbours in
# the training part, while the task's error lives in the gaps and at the edges. So every data set gets both
# kinds: `k` shuffled folds, and `k` block folds. For the latter the sorted inputs are cut into `2k` contiguous
# runs and block fold f holds out runs f and f + k: two gap-like holes, as in the task, and the first and last
# folds each hold out one edge of the interval. A configuration's CV score is the mean over all `2k` folds; the
# two kinds are also reported apart.

# %%
def regression_folds(x: np.ndarray, k: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """k shuffled folds and k folds of two contiguous runs of the sorted inputs: (kind, train index, held-out index)."""
    folds = [("random", tr, va) for tr, va in KFold(k, shuffle=True, random_state=seed).split(x)]
    order = np.argsort(x, kind="stable")
    runs = np.array_split(order, 2 * k)
    for f in range(k):
        held_out = np.sort(np.concatenate([runs[f], runs[f + k]]))
        folds.append(("block", np.setdiff1d(order, held_out), held_out))
    return folds


def check_folds(x: np.ndarray, folds) -> None:
    """Each held-out part is disjoint from its training part; each kind covers every point once; a block fold holds
    out two contiguous ranges: no training input lies inside either."""
    for kind, tr, va in folds:
        assert not set(tr) & set(va) and len(tr) + len(va) == len(x), f"{kind} fold overlaps its training part"
        if kind == "block":
            ranks = np.sort(np.argsort(np.argsort(x, kind="stable"), kind="stable")[va])  # places in sorted order
            assert (np.diff(ranks) > 1).sum() <= 1, "a block fold holds out more than two contiguous runs"
    for kind in ("random", "block"):
        held_out = np.concatenate([va for k_, _, va in folds if k_ == kind])
        assert np.array_equal(np.sort(held_out), np.arange(len(x))), f"{kind} folds do not cover the data once"

# %% [markdown]
# **Many small networks as one.** A search trains configurations × data sets × folds × seeds networks of a few
# thousand weights on 100 points each. One at a time, the cost would be PyTorch's per-operation overhead, paid
# thousands of times. `StackedMLP` holds K independent networks `1 → w → … → 1` as stacked weight tensors and
# runs all of them with one batched matrix product per layer (`torch.baddbmm`); each member has its own inputs,
# so members may come from different data sets. Members of different widths share one model: member k uses the
# first `widths[k]` hidden units and the others are multiplied by 0, so they receive no gradient and the member
# is exactly a network of width `widths[k]` (initialised with its own fan-in, like `nn.Linear`). Dropout, too,
# has a rate per member.
#
# In formulas, with $H^{(0)}_k$ member $k$'s inputs as a column, layer $l$ computes
# $H^{(l)}_k = \phi\big(H^{(l-1)}_k W^{(l)}_k + b^{(l)}_k\big)$ for every $k$ in one call, and the last layer
# leaves out $\phi$. Dropout is the inverted form: during training each unit is kept with probability $1 - p_k$
# and the kept ones are divided by $1 - p_k$, so the expected activation is unchanged and evaluation needs no
# rescaling.

# %%
class StackedMLP(nn.Module):
    def __init__(self, widths, depth: int, activation: str, dropout=0.0):
        super().__init__()
        widths = torch.as_tensor(widths)
        n_models, width = len(widths), int(widths.max())
        self.register_buffer("unit_mask", (torch.arange(width) < widths[:, None]).float()[:, None, :])
        self.mixed_widths = bool((widths < width).any())  # with one width for all, the mask is skipped
        self.register_buffer("dropout", torch.as_tensor(dropout, dtype=torch.float32).expand(n_models).clone())
        dims, fan_in = [1] + [width] * depth + [1], [torch.ones(n_models)] + [widths.float()] * depth
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for d_in, d_out, fan in zip(dims[:-1], dims[1:], fan_in):
            bound = fan.rsqrt().view(-1, 1, 1)  # nn.Linear's default bound, 1/sqrt(fan-in), per member
            self.weights.append(nn.Parameter((torch.rand(n_models, d_in, d_out) * 2 - 1) * bound))
            self.biases.append(nn.Parameter((torch.rand(n_models, 1, d_out) * 2 - 1) * bound))
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x):  # x: (K, N) inputs, one row per member -> (K, N) predictions
        h = x.unsqueeze(-1)
        for i, (W, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, W)
            if i < len(self.weights) - 1:
                h = self.activation(h) * self.unit_mask if self.mixed_widths else self.activation(h)
                if self.training and self.dropout.any():
                    p = self.dropout.view(-1, 1, 1)
                    h = h * (torch.rand_like(h) >= p) / (1 - p)
        return h[..., 0]

# %% [markdown]
# **The second training loop.** `fit` (in the shared helpers) trains one model on mini-batches; regression needs
# thousands of tiny models on full batches, which one loss cannot express as one model's training. `fit_stacked`
# is the plain loop for that case, beside `fit`. Every member minimises its own masked mean squared error (the
# loss is their sum, so member k receives exactly the gradient it would receive alone), with its own learning
# rate, decoupled weight decay (AdamW's: `w ← w − lr_k·λ_k·w`) and L1 coefficient. Every `eval_every` steps it
# records each member's predictions for all points: the held-out curves of a cross-validation come from them, and
# so does early stopping by CV, which picks the step with the lowest held-out error. `stop_at` stops each member at
# its own step: its weights are copied at that step and restored at the end (a per-member mask, not a Python
# loop).

# %%
def rated_step(opt, params: list, lr: torch.Tensor, decay: torch.Tensor) -> None:
    """Decoupled weight decay, then one step of `opt` (built at rate 1) with each member's update scaled by its own
    rate lr (K, 1, 1): the optimizers' state (momentum, Adam's moments) does not depend on the rate, so this is
    exactly each member at its own rate."""
    with torch.no_grad():
        for p in params:
            p.mul_(1 - lr * decay)
        before = [p.clone() for p in params]
    opt.step()
    with torch.no_grad():
        for p, b in zip(params, before):
            p.copy_(b + (p - b) * lr)

# %% [markdown]
# Why `rated_step` is exact: Adam's change $-\eta\,\hat m_t/(\sqrt{\hat v_t}+\epsilon)$ is proportional to $\eta$, and
# its moments $m$ and $v$ do not depend on $\eta$; the same holds for the momentum buffer of PyTorch's SGD and for
# RMSprop's running mean of squares. So a step at rate 1, scaled by $\eta_k$, is exactly a step at rate $\eta_k$.
# The loop below minimises, for all members at once and on full batches,
# $$\mathcal L = \sum_k \Big[\frac{1}{n_k}\sum_i m_{ki}\,(\hat y_{ki} - y_{ki})^2
#   + \lambda_{1,k}\sum_l \lVert W^{(l)}_k\rVert_1\Big],$$
# with $m_{ki} = 1$ on member $k$'s $n_k$ training points and 0 elsewhere; member $k$'s parameters appear only in
# its own term. The L1 term (on weights, not biases) pulls every weight towards 0 with the same force whatever its
# size, which favours networks with many near-zero weights; weight decay instead shrinks each weight in proportion
# to its size.

# %%
def fit_stacked(model: StackedMLP, X, Y, train_mask, *, steps: int, optimizer: str = "adam", lr=1e-2,
                weight_decay=0.0, l1=0.0, eval_every: int = 25, stop_at=None) -> dict:
    """X, Y, train_mask: (K, N) tensors; lr, weight_decay, l1: floats or (K,) tensors; stop_at: (K,) steps or None.
    Returns the training loss per step and member, and the predictions every eval_every steps."""
    n_models = len(X)
    lr, decay = (torch.as_tensor(v, dtype=torch.float32).expand(n_models).reshape(-1, 1, 1) for v in (lr, weight_decay))
    l1 = torch.as_tensor(l1, dtype=torch.float32).expand(n_models)
    params = list(model.parameters())
    opt = OPTIMIZERS[optimizer](params, 1.0)  # rate 1: see rated_step
    for group in opt.param_groups:  # the multi-tensor update: a few operations per step instead of a few per tensor
        group["foreach"] = True
    n_points = train_mask.sum(1).clamp(min=1)
    snapshot = [p.detach().clone() for p in params] if stop_at is not None else None
    losses, predictions, eval_steps = [], [], []
    for step in range(1, steps + 1):
        model.train()
        loss = ((model(X) - Y) ** 2 * train_mask).sum(1) / n_points  # (K,): each member's own MSE
        penalty = l1 * sum(W.abs().sum((1, 2)) for W in model.weights) if l1.any() else 0.0
        opt.zero_grad()
        (loss + penalty).sum().backward()
        rated_step(opt, params, lr, decay)
        losses.append(loss.detach())
        if stop_at is not None:  # members whose stopping step this is keep these weights
            with torch.no_grad():
                stops = (stop_at == step).view(-1, 1, 1)
                snapshot = [torch.where(stops, p, s) for p, s in zip(params, snapshot)]
        if step % eval_every == 0:
            model.eval()
            with torch.no_grad():
                predictions.append(model(X))
            eval_steps.append(step)
    if stop_at is not None:
        with torch.no_grad():
            for p, s in zip(params, snapshot):
                p.copy_(s)
    return {"train_loss": torch.stack(losses), "predictions": torch.stack(predictions), "eval_steps": eval_steps}

# %% [markdown]
# Check: member k of a `StackedMLP` of mixed widths computes the same function as an `nn.Sequential` network of
# its own width with its weights, and the stacked loop gives each member the losses it gets when trained alone.

# %%
def sequential_twin(model: StackedMLP, k: int, activation: str) -> nn.Sequential:
    """Member k of a StackedMLP as an nn.Sequential of its own width, with the same weights."""
    width = int(model.unit_mask[k].sum())
    layers = []
    for i, (W, b) in enumerate(zip(model.weights, model.biases)):
        d_in = 1 if i == 0 else width
        d_out = 1 if i == len(model.weights) - 1 else width
        linear = nn.Linear(d_in, d_out)
        with torch.no_grad():
            linear.weight.copy_(W[k, :d_in, :d_out].T)
            linear.bias.copy_(b[k, 0, :d_out])
        layers += [linear] if i == len(model.weights) - 1 else [linear, ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


def check_stacked_equals_single(optimizer: str = "adamw", steps: int = 30, seed: int = SEED) -> tuple[float, float]:
    """Largest |difference| of the outputs, and of the training losses over `steps` steps of `optimizer` (AdamW with
    weight decay 0.01), between three stacked members (widths 4, 8, 6; learning rates 1e-2, 3e-3, 3e-2) and the
    same networks trained one by one with the registry's optimizer."""
    torch.manual_seed(seed)
    widths, depth, act, rates = [4, 8, 6], 2, "tanh", [1e-2, 3e-3, 3e-2]
    decay = 0.01 if optimizer == "adamw" else 0.0
    model = StackedMLP(widths, depth, act)
    X = torch.randn(3, 20)
    Y, mask = torch.sin(2 * X), (torch.rand(3, 20) < 0.7).float()
    twins = [sequential_twin(model, k, act) for k in range(3)]
    out_diff = max((model(X)[k] - twins[k](X[k, :, None])[:, 0]).abs().max().item() for k in range(3))
    stacked = fit_stacked(model, X, Y, mask, steps=steps, optimizer=optimizer, lr=torch.tensor(rates),
                          weight_decay=decay, eval_every=steps)["train_loss"]
    loss_diff = 0.0
    for k, twin in enumerate(twins):
        opt = OPTIMIZERS[optimizer](twin.parameters(), rates[k], decay)
        for step in range(steps):
            loss = ((twin(X[k, :, None])[:, 0] - Y[k]) ** 2 * mask[k]).sum() / mask[k].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_diff = max(loss_diff, abs(loss.item() - stacked[step, k].item()))
    return out_diff, loss_diff


# %% [markdown]
# **Cross-validating many networks at once.** A *row* is one training problem: a data set with one fold's
# training points (or all of them), its inputs and targets standardised with that data set's training mean and
# sd. `train_members` trains every pair (configuration, row) with `n_seeds` seeds; configurations that share
# depth, activation and optimizer go into one `StackedMLP`, whatever their width, learning rate, weight decay, L1
# or dropout.
# `network_cv` turns the recorded predictions into held-out curves: for each configuration, data set and fold,
# the MSE (in the data's units) of the seeds' mean prediction on the held-out points, every `eval_every` steps.

# %%
@dataclass(frozen=True)
class RegressionConfig:
    width: int = 32
    depth: int = 2
    activation: str = "tanh"
    optimizer: str = "adam"
    lr: float = 1e-2
    weight_decay: float = 0.0  # decoupled, per step: w <- w - lr * weight_decay * w
    l1: float = 0.0
    dropout: float = 0.0


def describe(choice) -> str:
    """A configuration, a polynomial degree, a bandwidth or a kernel, in a few words."""
    if isinstance(choice, RegressionConfig):
        return (f"{choice.depth}×{choice.width} {choice.activation}, {choice.optimizer} lr {choice.lr:.3g}, "
                f"decay {choice.weight_decay:.3g}")
    return f"{choice:.3g}" if isinstance(choice, float) else str(choice)


def standardize_rows(datasets: list[dict]) -> dict:
    """Inputs and targets of each data set scaled by its training mean and sd, padded to one length N."""
    n = max(len(d["x"]) for d in datasets)
    out = {k: torch.zeros(len(datasets), n) for k in ("X", "Y", "valid")}
    stats = np.array([[d["x"].mean(), d["x"].std(), d["y"].mean(), d["y"].std()] for d in datasets])
    for i, d in enumerate(datasets):
        m = len(d["x"])
        out["X"][i, :m] = torch.as_tensor((d["x"] - stats[i, 0]) / stats[i, 1], dtype=torch.float32)
        out["Y"][i, :m] = torch.as_tensor((d["y"] - stats[i, 2]) / stats[i, 3], dtype=torch.float32)
        out["valid"][i, :m] = 1
    out["stats"] = stats
    return out

# %% [markdown]
# Depth, activation and optimizer fix the shape of the computation and the kind of update, so each combination
# of them gets its own `StackedMLP`; everything else is a per-member tensor. Each group seeds PyTorch from `seed`
# and the group's index before building its model, so every initial weight follows from that one seed.

# %%
def train_members(configs, pairs, X, Y, train_mask, *, n_seeds: int, steps: int, seed: int, eval_every=25,
                  stop_at=None) -> dict:
    """Train n_seeds networks for each (config index, row index) pair; rows are X, Y, train_mask: (R, N).
    stop_at: (len(pairs),) steps or None. Returns predictions (E, P, S, N) every eval_every steps, the
    training losses (steps, P, S), and the models as
    (StackedMLP, pair positions) with member j * n_seeds + s = seed s of pair positions[j]."""
    n_pairs, n_eval = len(pairs), steps // eval_every
    out = {"predictions": torch.empty(n_eval, n_pairs, n_seeds, X.shape[1]),
           "train_loss": torch.empty(steps, n_pairs, n_seeds), "eval_steps": None, "models": []}
    groups: dict = {}
    for p, (c, _) in enumerate(pairs):
        groups.setdefault((configs[c].depth, configs[c].activation, configs[c].optimizer), []).append(p)
    for g, ((depth, activation, optimizer), members) in enumerate(sorted(groups.items())):
        cfgs = [configs[pairs[p][0]] for p in members for _ in range(n_seeds)]
        rows = torch.as_tensor([pairs[p][1] for p in members]).repeat_interleave(n_seeds)
        torch.manual_seed(seed + 1000 * g)  # one stream per group, derived from SEED
        model = StackedMLP([c.width for c in cfgs], depth, activation, [c.dropout for c in cfgs])
        history = fit_stacked(
            model, X[rows], Y[rows], train_mask[rows], steps=steps, optimizer=optimizer,
            lr=torch.tensor([c.lr for c in cfgs]), weight_decay=torch.tensor([c.weight_decay for c in cfgs]),
            l1=torch.tensor([c.l1 for c in cfgs]),
            eval_every=eval_every,
            stop_at=None if stop_at is None else torch.as_tensor(stop_at)[members].repeat_interleave(n_seeds))
        index = torch.as_tensor(members)
        out["predictions"][:, index] = history["predictions"].view(n_eval, len(members), n_seeds, -1)
        out["train_loss"][:, index] = history["train_loss"].view(steps, len(members), n_seeds)
        out["eval_steps"] = history["eval_steps"]
        out["models"].append((model, members))
    return out

# %% [markdown]
# `network_cv` lays out one row per (data set, fold), trains every configuration on every row, and scores every
# recorded step $t$: for configuration $c$, data set $d$ and fold $f$,
# $$\text{MSE}_{c,d,f,t} = \frac{s_{y,d}^2}{|V_f|}\sum_{i\in V_f}\big(\bar y^{(t)}_{i} - y_{i}\big)^2,$$
# where $V_f$ holds the fold's held-out points, $\bar y^{(t)}_i$ is the seeds' mean prediction and $y_i$ the label,
# both standardised, and $s_{y,d}$ is the data set's label sd, which turns the error back into the data's units.
# The scaling statistics come from all of a data set's points, held-out folds included, rather than from each
# fold's training part: a small leak of two numbers per variable.

# %%
def network_cv(configs, datasets: list[dict], folds: list[list], *, n_seeds: int, steps: int, seed: int,
               **train_kw) -> dict:
    """Held-out curves of every config on every fold of every data set: mse (C, D, F, E) in the data's units."""
    rows = standardize_rows(datasets)
    n_data, n_folds = len(datasets), len(folds[0])
    train = torch.zeros(n_data, n_folds, rows["X"].shape[1])
    held_out = torch.zeros_like(train)
    for d, data_folds in enumerate(folds):
        for f, (_, tr, va) in enumerate(data_folds):
            train[d, f, tr], held_out[d, f, va] = 1, 1
    X, Y = (rows[k].repeat_interleave(n_folds, 0) for k in ("X", "Y"))  # row r = (data set r // F, fold r % F)
    pairs = [(c, r) for c in range(len(configs)) for r in range(n_data * n_folds)]
    run = train_members(configs, pairs, X, Y, train.flatten(0, 1), n_seeds=n_seeds, steps=steps, seed=seed,
                        **train_kw)
    pred = run["predictions"].mean(2).view(-1, len(configs), n_data, n_folds, X.shape[1])  # seeds' mean
    y_sd = torch.as_tensor(rows["stats"][:, 3], dtype=torch.float32).view(1, 1, -1, 1)
    err = ((pred - Y.view(n_data, n_folds, -1)) ** 2 * held_out).sum(-1) / held_out.sum(-1) * y_sd**2
    return {"mse": err.permute(1, 2, 3, 0).double().numpy(), "eval_steps": np.array(run["eval_steps"]),
            "train_loss": (run["train_loss"].mean(2).view(steps, len(configs), n_data, n_folds).mean(-1)
                           * y_sd.view(1, 1, -1) ** 2).double().numpy()}  # an MSE scales with the variance

# %% [markdown]
# **Baselines** get the same folds and the same selection rule. A polynomial (degree by CV), a local-linear
# kernel smoother (Gaussian kernel, bandwidth by CV) and a Gaussian process (scikit-learn; a constant times an
# RBF or a Matérn 5/2 kernel plus a white-noise kernel, hyper-parameters by marginal likelihood on each training
# part, the kernel by CV). Each candidate list runs from the smoothest fit to the roughest.
#
# The local-linear smoother fits, at each query point $x_0$, a weighted least-squares line,
# $$\min_{a,\, b}\ \sum_i w_i\,\big(y_i - a - b\,(x_i - x_0)\big)^2,\qquad
#   w_i = \exp\!\Big(-\frac{(x_i - x_0)^2}{2h^2}\Big),$$
# and predicts its intercept $a$; the bandwidth $h$ sets how far the smoother looks. Fitting a line rather than a
# weighted mean (the Nadaraya-Watson estimator) removes the first-order bias where the data around $x_0$ are
# lopsided, at the edges and at the sides of a gap. The Gaussian process puts a prior on functions whose smoothness
# is set by the kernel: the RBF kernel gives infinitely differentiable functions, Matérn 5/2 twice differentiable
# ones. Its prediction is the posterior mean, and the white-noise term absorbs the label noise. The polynomial is
# fitted by least squares; `Polynomial.fit` maps the inputs to $[-1, 1]$ first, which keeps high degrees well
# conditioned.

# %%
def local_linear(x, y, x_query, bandwidth):
    """Kernel-weighted least-squares line at each query point; its intercept is the prediction."""
    d = x[None, :] - x_query[:, None]
    log_w = -0.5 * (d / bandwidth) ** 2
    w = np.exp(log_w - log_w.max(1, keepdims=True))  # rescaled per query point: far from the data, no underflow
    s0, s1, s2 = w.sum(1), (w * d).sum(1), (w * d * d).sum(1)
    t0, t1 = (w * y).sum(1), (w * d * y).sum(1)
    det = s0 * s2 - s1**2
    line = det > 1e-9 * s0 * s2  # with one point in reach, a line is undetermined: fall back to the weighted mean
    return np.where(line, (s2 * t0 - s1 * t1) / np.where(line, det, 1), t0 / s0)


def gaussian_process(x, y, x_query, kernel):
    shape = RBF(1.0) if kernel == "RBF" else Matern(1.0, nu=2.5)
    gp = GaussianProcessRegressor(ConstantKernel(1.0) * shape + WhiteKernel(0.25), normalize_y=True,
                                  n_restarts_optimizer=1, random_state=SEED)
    with warnings.catch_warnings():  # a length scale at its bound is a valid, if boring, answer
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(x[:, None], y)
    return gp.predict(x_query[:, None])


BASELINES = {  # name -> (candidates from smoothest to roughest, fit-and-predict(x, y, x_query, candidate))
    "polynomial": (list(range(1, 13)), lambda x, y, xq, deg: np.polynomial.Polynomial.fit(x, y, deg)(xq)),
    "local linear": (list(np.geomspace(2.0, 0.15, 14).round(3)), local_linear),
    "Gaussian process": (["RBF", "Matérn 5/2"], gaussian_process),
}

# %% [markdown]
# **The one-standard-error rule.** Let $s_{c,f}$ be candidate $c$'s held-out error on fold $f$ of $F$, $\bar s_c$
# its mean over the folds, and $b$ the candidate with the lowest mean. The rule takes the first candidate in the
# list, the smoothest, with
# $$\bar s_c \le \bar s_b + \frac{\operatorname{sd}_f\big(s_{c,f} - s_{b,f}\big)}{\sqrt F}.$$
# Taking the minimum outright rewards a candidate for noise in the fold scores; the rule prefers the simplest model
# that the data cannot tell from the best. The differences are paired fold by fold, because a hard fold raises every
# candidate's error together. `one_se_set` returns all candidates that pass, `one_se_choice` the first of them.

# %%
def baseline_cv(name: str, datasets: list[dict], folds: list[list]) -> np.ndarray:
    """Held-out MSE of every candidate of a baseline on every fold of every data set: (candidates, D, F)."""
    candidates, fit_predict = BASELINES[name]
    return np.array([[[np.mean((fit_predict(d["x"][tr], d["y"][tr], d["x"][va], c) - d["y"][va]) ** 2)
                       for _, tr, va in data_folds] for d, data_folds in zip(datasets, folds)]
                     for c in candidates])


def one_se_set(scores: np.ndarray) -> np.ndarray:
    """scores: (candidates, folds). Every candidate whose mean CV error exceeds the best one's by at most one
    standard error of their fold-by-fold difference: the candidates CV cannot tell from the best."""
    scores = np.nan_to_num(scores, nan=np.inf)
    means = scores.mean(1)
    best = int(np.argmin(means))
    with np.errstate(invalid="ignore"):
        se = (scores - scores[best]).std(1, ddof=1) / math.sqrt(scores.shape[1])
    return np.flatnonzero(means <= means[best] + np.nan_to_num(se, nan=0.0))


def one_se_choice(scores: np.ndarray) -> int:
    """scores: (candidates, folds), candidates ordered from smoothest to roughest. The smoothest candidate whose
    mean CV error exceeds the best one's by at most one standard error of their fold-by-fold difference (the
    one-standard-error rule, paired: folds differ far more in difficulty than candidates do on one fold)."""
    scores = np.nan_to_num(scores, nan=np.inf)  # a diverged candidate is never chosen
    means = scores.mean(1)
    best = int(np.argmin(means))
    with np.errstate(invalid="ignore"):  # inf - inf for a diverged candidate: its se is NaN, and it loses anyway
        se = (scores - scores[best]).std(1, ddof=1) / math.sqrt(scores.shape[1])
    return int(np.flatnonzero(means <= means[best] + np.nan_to_num(se, nan=0.0))[0])


# %% [markdown]
# **The pipeline**, identical for every data set, the course's files included. Networks: each configuration is
# cross-validated with `n_seeds` seeds per fold, each fold scored by the seeds' mean prediction (one seed's
# curve is too noisy to choose by); the stopping step is the one with the lowest mean held-out error (early
# stopping by CV); the configuration is picked by the one-standard-error rule, the smoothest first (strongest
# weight decay, then fewest units). The
# final model is a committee: `n_final` networks trained on all points, spread round-robin over every
# configuration within one standard error of the best, each up to its own stopping step. CV cannot tell those
# configurations apart, and which of them the rule picks can hinge on a tie, such as the order of two equally
# smooth configurations, although their fits can differ in the gaps; averaging them removes that choice. The
# members' spread is the band drawn in the figures. Baselines: each candidate by CV with the same
# rule, then refit on all points. Nothing in it looks at the function's truth or at a test file.

# %%
def smoothness_order(configs) -> list[int]:
    return sorted(range(len(configs)), key=lambda i: (-configs[i].weight_decay, configs[i].depth * configs[i].width,
                                                      configs[i].activation != "tanh"))


def scores_at_best_step(cv: dict) -> tuple[np.ndarray, np.ndarray]:
    """Early stopping by CV: per config and data set, the step whose mean held-out MSE is lowest, and the fold
    MSEs there: (C, D) steps and (C, D, F) scores."""
    best = cv["mse"].mean(2).argmin(-1)
    return cv["eval_steps"][best], np.take_along_axis(cv["mse"], best[:, :, None, None], -1)[..., 0]


def fit_final(configs, stop_at, datasets: list[dict], x_query: np.ndarray, *, n_seeds: int, seed: int,
              eval_every: int = 25) -> dict:
    """For each data set i, n_seeds networks of configs[i] trained on all its points up to step stop_at[i]:
    their predictions on x_query in the data's units (D, S, Q) and the models."""
    rows = standardize_rows(datasets)
    run = train_members(configs, [(i, i) for i in range(len(datasets))], rows["X"], rows["Y"], rows["valid"],
                        n_seeds=n_seeds, steps=max(stop_at), seed=seed, eval_every=eval_every, stop_at=stop_at)
    final = {"models": run["models"], "stats": rows["stats"], "n_seeds": n_seeds}
    final["members"] = predict_final(final, x_query)
    return final


def predict_final(final: dict, x: np.ndarray) -> np.ndarray:
    """The members' predictions (D, S, len(x)) of fit_final's ensembles at inputs x, in the data's units."""
    stats, n_seeds = final["stats"], final["n_seeds"]
    X = torch.as_tensor((x[None] - stats[:, :1]) / stats[:, 1:2], dtype=torch.float32)
    out = np.empty((len(stats), n_seeds, len(x)))
    for model, members in final["models"]:  # a pair position of fit_final is its data set's index
        model.eval()
        with torch.no_grad():
            pred = model(X[members].repeat_interleave(n_seeds, 0)).view(len(members), n_seeds, -1).numpy()
        out[members] = pred * stats[members, 3, None, None] + stats[members, 2, None, None]
    return out

# %% [markdown]
# `regression_pipeline` in order: the folds of each data set and their checks; the configurations sorted smoothest
# first; cross-validation of every network configuration; per data set the stopping step and the
# one-standard-error choice; the committee, trained on all points; then each baseline with the same folds and the
# same rule. A stopping step found on folds with fewer training points is reused for training on all of them, a
# common approximation: with more points the best step may come somewhat later.

# %%
def regression_pipeline(datasets: list[dict], configs, x_query: np.ndarray, *, k: int, steps: int, n_seeds: int,
                        n_final: int, seed: int) -> dict:
    """Folds, network search with early stopping by CV, one-standard-error choice, final ensembles, and the
    baselines, for every data set; the methods' predictions on x_query."""
    folds = [regression_folds(d["x"], k, seed) for d in datasets]
    for d, data_folds in zip(datasets, folds):
        check_folds(d["x"], data_folds)
    order = smoothness_order(configs)
    configs = [configs[i] for i in order]
    cv = network_cv(configs, datasets, folds, n_seeds=n_seeds, steps=steps, seed=seed)
    best_steps, scores = scores_at_best_step(cv)
    chosen = [one_se_choice(scores[:, d]) for d in range(len(datasets))]
    stop_at = [int(best_steps[c, d]) for d, c in enumerate(chosen)]
    committees = [one_se_set(scores[:, d]) for d in range(len(datasets))]
    member_cfg = [committees[d][m % len(committees[d])] for d in range(len(datasets)) for m in range(n_final)]
    member_data = [d for d in range(len(datasets)) for _ in range(n_final)]
    member_stop = [int(best_steps[c, d]) for c, d in zip(member_cfg, member_data)]
    final = fit_final([configs[c] for c in member_cfg], member_stop, [datasets[d] for d in member_data], x_query,
                      n_seeds=1, seed=seed + 1)
    # the network's CV: the mean over its committee's configurations (each scored alone)
    methods = {"network": {"cv": np.array([scores[committees[d], d].mean(0) for d in range(len(datasets))]),
                           "choice": [configs[c] for c in chosen],
                           "committee": [[configs[c] for c in committee] for committee in committees],
                           "members": final["members"].reshape(len(datasets), n_final, -1)}}
    for name, (candidates, fit_predict) in BASELINES.items():
        cv_scores = baseline_cv(name, datasets, folds)
        picks = [one_se_choice(cv_scores[:, d]) for d in range(len(datasets))]
        methods[name] = {"cv": np.array([cv_scores[c, d] for d, c in enumerate(picks)]),
                         "choice": [candidates[c] for c in picks],
                         "members": np.array([fit_predict(d["x"], d["y"], x_query, candidates[c])[None]
                                              for d, c in zip(datasets, picks)])}
    return {"folds": folds, "configs": configs, "network_cv": cv, "network_scores": scores, "best_steps": best_steps,
            "chosen": chosen, "stop_at": stop_at, "final": final, "methods": methods}
