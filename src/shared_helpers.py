# %% [markdown]
# ## Shared helpers
# The cells of this section are identical in both homework notebooks (a test keeps them so). They hold
# everything the sections below reuse: data loading with validation, index batching, one training loop
# `fit`, evaluation, the optimizer and activation registries, figure saving and the metrics record.
# First, `set_seed` seeds Python, NumPy and PyTorch at once, and `pick_device` prefers CUDA, then Apple's MPS, then
# the CPU; results on a GPU may differ from a CPU run in the last digits.

# %%
def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a CPU generator for batch order and augmentation."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(preference: str = "auto") -> torch.device:
    if preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")

# %% [markdown]
# Threads and device. PyTorch threads that wait for a core that another process keeps busy slow every operation
# down, so on a busy machine the notebook uses only the free cores (`HW_THREADS` overrides). TF32 is switched off so
# that matrix products and convolutions on a GPU run in full float32.

# %%
def busy_cores(interval: float = 0.5) -> float:
    """How many cores other processes keep busy right now (Linux /proc/stat; 0 where it cannot tell)."""
    def times():
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait
    try:
        (total0, idle0), _, (total1, idle1) = times(), time.sleep(interval), times()
    except (OSError, IndexError, ValueError):
        return 0.0
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / max(total1 - total0, 1e-9))


if NUM_THREADS > 0:
    torch.set_num_threads(NUM_THREADS)
elif (free := max(1, round((os.cpu_count() or 1) - busy_cores()))) < torch.get_num_threads():
    # threads that wait for a busy core make PyTorch many times slower; a run on fewer threads is only slower
    print(f"the machine is busy ({free} of {os.cpu_count()} cores free): using {free} threads (HW_THREADS overrides)")
    torch.set_num_threads(free)
device = pick_device(DEVICE)
# TF32 matrix products (the default for convolutions on recent NVIDIA GPUs) keep 10 mantissa bits: the checks
# below that compare two computations of the same function (batch-norm folding, stacked vs single models) need
# float32 on every device, and results then agree with the CPU run up to rounding.
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
print(f"device: {device} | torch {torch.__version__} | threads {torch.get_num_threads()}")

# %% [markdown]
# **FashionMNIST** is read from its four gzipped IDX files, looked for in this order: `DATA_DIR/FashionMNIST/raw/`
# (torchvision's layout), the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`),
# then downloaded from the dataset's mirrors into `DATA_DIR/FashionMNIST/raw/` (Colab, a fresh laptop). Each
# file is checked by the SHA-256 of its *decompressed* bytes (the Debian package recompressed the files, so
# their `.gz` digests differ from the published ones while the images are the same). A download goes to a
# `.part.gz` file that is renamed only once it checks out, so an interrupted one leaves nothing that looks
# complete; a file of ours that fails is fetched again, never parsed. `HW_FASHION_MIRRORS` (space-separated
# URLs) replaces the mirror list, for example with a local server in the tests.

# %%
import hashlib
import http.client
import urllib.request

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
                 "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
FASHION_SHA256 = {  # of the decompressed IDX bytes
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"}
FASHION_MIRRORS = tuple(os.environ.get("HW_FASHION_MIRRORS", " ".join((
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"))).split())
DEBIAN_FASHION_DIR = Path(os.environ.get("HW_DEBIAN_FASHION_DIR", "/usr/share/datasets/fashion-mnist"))
DATA_FIX = ("Fix: delete the file and run again (it is downloaded anew), run `make data` (or "
            "`python tools/fetch_data.py`), or copy the four *-ubyte.gz files of "
            "https://github.com/zalandoresearch/fashion-mnist into {dir}.")


def idx_bytes(path: Path) -> bytes:
    """The decompressed bytes of an IDX file, `.gz` or not; a clear error naming the file otherwise."""
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ValueError(f"{path}: cannot be read ({err}). " + DATA_FIX.format(dir=path.parent)) from None

# %% [markdown]
# `read_idx` parses the IDX format: a big-endian magic number whose last byte is the number of dimensions, the
# dimensions, then the raw bytes. A wrong checksum, magic number or length stops with the file's name and the fix.

# %%
def read_idx(path: Path, sha256: str | None = None) -> np.ndarray:
    """Parse one (optionally gzipped) IDX file: magic 2049 = labels, 2051 = images."""
    raw = idx_bytes(path)
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise ValueError(f"{path}: wrong content (SHA-256 of the decompressed file differs from the "
                         f"published data). " + DATA_FIX.format(dir=path.parent))
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if magic not in (2049, 2051):
        raise ValueError(f"{path}: not an IDX file (magic {magic}). " + DATA_FIX.format(dir=path.parent))
    ndim = magic - 2048
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset, expected = 4 + 4 * ndim, int(np.prod(dims))
    if len(raw) - offset != expected:
        raise ValueError(f"{path}: truncated or padded: {len(raw) - offset} bytes of data, "
                         f"expected {expected} for shape {dims}. " + DATA_FIX.format(dir=path.parent))
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def idx_path(folder: Path, name: str) -> Path | None:
    """The file `name` in folder, gzipped or not, or None."""
    return next((p for p in (folder / f"{name}.gz", folder / name) if p.exists()), None)

# %% [markdown]
# `download_verified` tries each mirror in turn, streams the file to a temporary name, checks its size (when the
# server states one) and its checksum, and only then gives it its final name.

# %%
def download_verified(name: str, sha256: str, folder: Path, mirrors=FASHION_MIRRORS, timeout: float = 60) -> Path:
    """Fetch NAME.gz from the first mirror that serves it with the right content; write it atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    target, part = folder / f"{name}.gz", folder / f"{name}.part.gz"  # never matches a name we read
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"{name}.gz", leave=False) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
            if total is not None and part.stat().st_size != total:
                raise OSError(f"incomplete download: {part.stat().st_size} of {total} bytes")
            if hashlib.sha256(idx_bytes(part)).hexdigest() != sha256:
                raise ValueError("wrong content (SHA-256 of the decompressed file differs)")
            os.replace(part, target)  # only a verified file ever carries the final name
            print(f"downloaded {url} -> {target}")
            return target
        except (OSError, ValueError, http.client.HTTPException) as err:  # URLError, timeouts, cut-off body
            failures.append(f"{url}: {err}")
        finally:
            part.unlink(missing_ok=True)
    raise FileNotFoundError(f"{target}: could not be downloaded from any mirror:\n  " + "\n  ".join(failures)
                            + "\n" + DATA_FIX.format(dir=folder))

# %% [markdown]
# `load_fashion_mnist` ties these together: find a complete copy, fetch what is missing or corrupt, parse the four
# files and return tensors.

# %%
def fetch_idx_files(folder: Path, checksums: dict[str, str], mirrors=FASHION_MIRRORS) -> dict[str, Path]:
    """Make sure every file of checksums is in folder with the right content, downloading what is missing or
    wrong; return name -> path."""
    paths = {}
    for name, sha256 in checksums.items():
        path = idx_path(folder, name)
        if path is not None:
            try:
                read_idx(path, sha256)
            except ValueError as err:
                print(f"{err.args[0].split('. Fix')[0]}: fetching it again")
                path.unlink()
                path = None
        paths[name] = path or download_verified(name, sha256, folder, mirrors)
    return paths


def find_fashion_dir(data_dir: Path) -> Path | None:
    """The first folder holding all four files: DATA_DIR's, then the Debian package's."""
    for folder in (data_dir / "FashionMNIST" / "raw", DEBIAN_FASHION_DIR):
        if all(idx_path(folder, name) is not None for name in FASHION_FILES.values()):
            return folder
    return None


def load_fashion_mnist(data_dir: Path, mirrors=FASHION_MIRRORS) -> dict[str, torch.Tensor]:
    """Return uint8 images (N, 28, 28) and int64 labels for train and test, checked; download if needed."""
    folder = find_fashion_dir(data_dir)
    if folder is None or folder != DEBIAN_FASHION_DIR:  # our own copy: complete it and re-fetch bad files
        folder = data_dir / "FashionMNIST" / "raw"
        fetch_idx_files(folder, FASHION_SHA256, mirrors)
    # the checksums pin the content, so shapes and class balance need no further check
    arrays = {key: read_idx(idx_path(folder, name), FASHION_SHA256[name]) for key, name in FASHION_FILES.items()}
    print(f"FashionMNIST from {folder}: train {arrays['train_images'].shape}, test {arrays['test_images'].shape}")
    return {key: torch.from_numpy(a.copy()).long() if "labels" in key else torch.from_numpy(a.copy())
            for key, a in arrays.items()}


# %% [markdown]
# **The test sets are sealed.** A `SealedTestSet` is the only place that keeps a test split. Each final model
# (a model whose test number the notebook reports; each notebook lists them in one place) reads it once, by
# name: `read(model)` loads the data on the first read, logs the name and returns the data; a second read for
# the same model, or a read for a model not on the list, raises. The metrics record the log. Analyses that
# compare final models on the test set reuse the predictions of those single reads.

# %%
class SealedTestSet:
    def __init__(self, name: str, load, final_models: tuple[str, ...]):
        self.name, self.final_models, self.log = name, tuple(final_models), []
        self._load, self._data = load, None

    def read(self, model: str):
        if model not in self.final_models:
            raise ValueError(f"{model!r} is not a final model of the {self.name} test set {self.final_models}")
        if model in self.log:
            raise RuntimeError(f"the {self.name} test set was read for {model!r} already")
        if self._data is None:
            self._data = self._load()  # a load that fails (a bad file) leaves the model unread
        self.log.append(model)
        return self._data


def labels_digest(labels) -> str:
    """SHA-256 of the labels written as one digit string: names a test split's order without holding it."""
    return hashlib.sha256("".join(map(str, torch.as_tensor(labels).tolist())).encode()).hexdigest()


def seal_arrays(name: str, X, y, final_models: tuple[str, ...]) -> SealedTestSet:
    """A SealedTestSet holding X and y (the caller keeps no reference of its own)."""
    return SealedTestSet(name, lambda: (X, y), final_models)


def seal_test_split(data: dict, name: str, final_models: tuple[str, ...]) -> SealedTestSet:
    """Move the test split out of the loader's dict into a SealedTestSet: afterwards nothing else holds it."""
    return seal_arrays(name, data.pop("test_images"), data.pop("test_labels"), final_models)


# %% [markdown]
# **CIFAR-10**, for the parts beyond the homeworks (Homework 1's appendix B, Homework 2's section 7.4):
# `load_cifar10` reads `DATA_DIR/cifar10.npz` (uint8 arrays `x_train`, `y_train`, `x_test`, `y_test`, optionally a
# `provenance` note). If the file is missing it downloads CIFAR-10 with torchvision and writes that cache; without
# either it returns `None` and says why, and the caller carries on without CIFAR-10. A file of the wrong shape stops
# with the fix.

# %%
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def load_cifar10(path: Path) -> dict | None:
    fix = f"Fix: delete {path} and run again (it is rebuilt from a torchvision download), or write it anew."
    if not path.exists():
        try:
            import torchvision
            sets = [torchvision.datasets.CIFAR10(str(path.parent / "cifar-10"), train=t, download=True)
                    for t in (True, False)]
            np.savez(path, x_train=sets[0].data, y_train=np.array(sets[0].targets, np.uint8), x_test=sets[1].data,
                     y_test=np.array(sets[1].targets, np.uint8),
                     provenance=np.array("CIFAR-10 downloaded by torchvision"))
        except Exception as err:  # no torchvision or no network
            print(f"CIFAR-10 not available: {path} is missing and the download failed ({type(err).__name__}).")
            return None
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: cannot be read ({err}). {fix}") from None
    expected = {"x_train": (50000, 32, 32, 3), "y_train": (50000,), "x_test": (10000, 32, 32, 3), "y_test": (10000,)}
    for key, shape in expected.items():
        if key not in data or data[key].shape != shape:
            found = data[key].shape if key in data else "missing"
            raise ValueError(f"{path}: {key} is {found}, expected {shape}. {fix}")
    return data


# %% [markdown]
# Data stay in memory as tensors on the device; a batch is a slice of a `torch.randperm` permutation drawn
# from an explicit generator, so batch order is reproducible and no `DataLoader` worker is needed.

# %%
def batches(n: int, batch_size: int, generator: torch.Generator | None = None):
    """Yield index tensors covering range(n): shuffled when a generator is given, in order otherwise."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def random_shift_flip(X: torch.Tensor, generator: torch.Generator, max_shift: int = 2,
                      flip: bool = True) -> torch.Tensor:
    """Per-image random translation by up to `max_shift` pixels (zero-padded) and horizontal flip."""
    n, c, h, w = X.shape
    padded = F.pad(X, (max_shift,) * 4, value=float(X.amin()))
    shifts = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).to(X.device)
    rows = (shifts[0, :, None] + torch.arange(h, device=X.device))[:, None, :, None]
    cols = (shifts[1, :, None] + torch.arange(w, device=X.device))[:, None, None, :]
    out = padded[torch.arange(n, device=X.device)[:, None, None, None],
                 torch.arange(c, device=X.device)[None, :, None, None], rows, cols]
    if flip:
        mirror = (torch.rand(n, generator=generator) < 0.5).to(X.device)[:, None, None, None]
        out = torch.where(mirror, out.flip(3), out)
    return out


# %% [markdown]
# **One training loop for every model.** `fit` takes a `loss_fn(model, xb, yb) -> loss`, so the classifier,
# the regressor and (in Homework 2) the autoencoders differ only in that closure. `train` is a tuple of tensors
# indexed alike, usually (inputs, targets); a further tensor (a per-point mask) reaches `loss_fn` as well. It
# optionally transforms each training batch (augmentation, noise), steps a per-batch scheduler, evaluates on
# validation data after each epoch with `val_criterion(outputs, targets)` (the plain objective, without
# penalties), and with `patience` stops after that many epochs without improvement and restores the best weights.

# %%
@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    return torch.cat([model(X[idx]) for idx in batches(len(X), batch_size)])


def evaluate(model: nn.Module, criterion, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
             metric_fn=None) -> dict[str, float]:
    """criterion(outputs, y) over all of (X, y), e.g. F.cross_entropy, plus metric_fn(outputs, y) if given."""
    outputs = predict(model, X, batch_size)
    result = {"loss": float(criterion(outputs, y))}
    if metric_fn is not None:
        result["metric"] = float(metric_fn(outputs, y))
    return result


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item()

# %% [markdown]
# `train_epoch` is one pass over shuffled minibatches: forward, loss, `zero_grad`, backward, optimizer step, and
# the scheduler's step, if any, per batch. The loss it returns is averaged while the weights change, so it lags
# slightly behind the loss of the weights at the end of the epoch.

# %%
def epoch_summary(name: str, num_epochs: int, history: dict) -> str:
    """The progress line `fit` prints after each epoch, from the history so far."""
    line = f"[{name}] epoch {history['epoch'][-1]:3d}/{num_epochs} | train {history['train_loss'][-1]:.4f}"
    if history["val_loss"]:
        line += f" | val {history['val_loss'][-1]:.4f}"
        if not math.isnan(history["val_metric"][-1]):
            line += f" | acc {100 * history['val_metric'][-1]:5.2f}%"
    return line + f" | {history['time_s'][-1]:6.1f}s"


def train_epoch(model: nn.Module, loss_fn, train: tuple, *, optimizer, batch_size: int,
                generator: torch.Generator, scheduler=None, transform=None) -> float:
    """One pass over `train` = (X, y, ...) in minibatches drawn from `generator`; the mean training loss."""
    model.train()
    running = 0.0
    for idx in batches(len(train[0]), batch_size, generator):
        xb, *rest = (t[idx] for t in train)
        if transform is not None:
            xb = transform(xb, generator)
        loss = loss_fn(model, xb, *rest)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        running += loss.item() * len(idx)
    return running / len(train[0])

# %% [markdown]
# `fit` repeats `train_epoch` and scores the validation data after each epoch, keeping a copy of the weights with
# the lowest validation loss. With `patience` set, it stops after that many epochs without improvement and restores
# those weights; without it, the last weights are kept. `samples_per_s` counts the training steps only.

# %%
def fit(model: nn.Module, loss_fn, train: tuple, val: tuple | None = None, *, optimizer,
        num_epochs: int, batch_size: int = 256, scheduler=None, transform=None, patience: int | None = None,
        generator: torch.Generator, val_criterion=None, metric_fn=None, on_epoch_end=None,
        name: str = "model", verbose: bool = True) -> dict:
    """Train `model` on `train` = (X, y, ...) with minibatches drawn from `generator`; return the history."""
    history = {"epoch": [], "train_loss": [], "val_loss": [], "val_metric": [], "time_s": []}
    best_loss, best_state, best_epoch, bad_epochs = math.inf, None, 0, 0
    start, train_s = time.perf_counter(), 0.0
    for epoch in range(1, num_epochs + 1):
        epoch_start = time.perf_counter()
        train_loss = train_epoch(model, loss_fn, train, optimizer=optimizer, batch_size=batch_size,
                                 generator=generator, scheduler=scheduler, transform=transform)
        train_s += time.perf_counter() - epoch_start
        history["epoch"].append(epoch)
        history["train_loss"].append(train_loss)
        history["time_s"].append(time.perf_counter() - start)
        if val is not None:
            scores = evaluate(model, val_criterion, *val, metric_fn=metric_fn)
            history["val_loss"].append(scores["loss"])
            history["val_metric"].append(scores.get("metric", math.nan))
            if scores["loss"] < best_loss:
                best_loss, best_epoch, bad_epochs = scores["loss"], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_epochs += 1
        if on_epoch_end is not None:
            on_epoch_end(epoch, model)
        if verbose:
            print(epoch_summary(name, num_epochs, history))
        if patience is not None and bad_epochs >= patience:
            if verbose:
                print(f"[{name}] early stop: no val improvement for {patience} epochs")
            break
    if restored := best_state is not None and patience is not None:
        model.load_state_dict(best_state)
    done = len(history["epoch"])
    history.update(best_epoch=best_epoch if val is not None else done, wall_s=time.perf_counter() - start,
                   final_epoch=best_epoch if restored else done,  # the epoch of the returned weights
                   samples_per_s=done * len(train[0]) / max(train_s, 1e-9))  # training steps only, evaluation excluded
    return history


# %% [markdown]
# **Registries** turn every comparison into a loop over names. Each optimizer factory takes the parameters,
# a learning rate and a weight decay; L2 here is the coupled `weight_decay` of the classic optimizers and the
# decoupled one of AdamW.

# %%
OPTIMIZERS = {
    "sgd": lambda p, lr, wd=0.0: torch.optim.SGD(p, lr=lr, weight_decay=wd),
    "momentum": lambda p, lr, wd=0.0: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=wd),
    "nesterov": lambda p, lr, wd=0.0: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd),
    "rmsprop": lambda p, lr, wd=0.0: torch.optim.RMSprop(p, lr=lr, weight_decay=wd),
    "adam": lambda p, lr, wd=0.0: torch.optim.Adam(p, lr=lr, weight_decay=wd),
    "adamw": lambda p, lr, wd=0.0: torch.optim.AdamW(p, lr=lr, weight_decay=wd),
}
ACTIVATIONS = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU,
    "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def shape_trace(model: nn.Sequential, x: torch.Tensor) -> list[tuple[str, tuple]]:
    """Run x through each top-level layer and record the output shapes (a check a grader can read)."""
    x = x.to(next(model.parameters()).device)
    rows = [("input", tuple(x.shape))]
    with torch.no_grad():
        for name, layer in model.named_children():
            x = layer(x)
            rows.append((f"{name}: {layer.__class__.__name__}", tuple(x.shape)))
    for label, shape in rows:
        print(f"  {label:28s} -> {shape}")
    return rows


# %% [markdown]
# **Training recipes.** A `TrainConfig` names everything about how a model learns: optimizer (from the
# registry), learning rate, weight decay, an optional L1 penalty, batch size, epochs, the learning-rate
# schedule, label smoothing, augmentation and early stopping. `make_optimizer` turns it into an optimizer over
# the trainable weights and a per-step schedule; the warm-up + cosine schedule is PyTorch's `LinearLR` followed
# by `CosineAnnealingLR`. `train_classifier` builds the cross-entropy loss from the config and calls `fit`;
# its validation loss is always the plain cross-entropy, so runs with different penalties share one scale.

# %%
@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    l1: float = 0.0
    batch_size: int = 128
    num_epochs: int = 10
    schedule: str = "constant"
    label_smoothing: float = 0.0
    augment: bool = False  # random shifts and flips of each training batch
    patience: int | None = None  # early stopping on the validation loss


def warmup_cosine(optimizer, steps: int, warmup: float = 0.2):
    """Linear warm-up over the first 20% of the steps, then cosine decay to zero; stepped once per batch."""
    n_warm = max(1, int(warmup * steps))
    schedulers = torch.optim.lr_scheduler
    return schedulers.SequentialLR(optimizer, [
        schedulers.LinearLR(optimizer, start_factor=1 / n_warm, total_iters=n_warm - 1),
        schedulers.CosineAnnealingLR(optimizer, T_max=max(1, steps - n_warm))], milestones=[n_warm])


SCHEDULES = {"constant": lambda optimizer, steps: None, "warmup_cosine": warmup_cosine}

# %% [markdown]
# `make_optimizer` optimises only the trainable parameters and sizes the schedule in batches, not epochs.
# `train_classifier` adds label smoothing and the optional L1 penalty (on weight matrices, not biases) to the
# cross-entropy, then calls `fit`.

# %%
def make_optimizer(model: nn.Module, cfg: TrainConfig, n_train: int):
    params = [p for p in model.parameters() if p.requires_grad]  # a frozen encoder is not optimised
    optimizer = OPTIMIZERS[cfg.optimizer](params, cfg.lr, cfg.weight_decay)
    return optimizer, SCHEDULES[cfg.schedule](optimizer, cfg.num_epochs * math.ceil(n_train / cfg.batch_size))


def cross_entropy(model, xb, yb):
    return F.cross_entropy(model(xb), yb)


def weight_l1(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in model.parameters() if p.ndim > 1)


def train_classifier(model: nn.Module, cfg: TrainConfig, train: tuple, val: tuple | None = None, *, seed: int,
                     name: str = "model", verbose: bool = True, on_epoch_end=None) -> dict:
    optimizer, scheduler = make_optimizer(model, cfg, len(train[0]))

    def loss_fn(m, xb, yb):
        loss = F.cross_entropy(m(xb), yb, label_smoothing=cfg.label_smoothing)
        return loss + cfg.l1 * weight_l1(m) if cfg.l1 else loss

    return fit(model, loss_fn, train, val, optimizer=optimizer, num_epochs=cfg.num_epochs,
               batch_size=cfg.batch_size, scheduler=scheduler, transform=random_shift_flip if cfg.augment else None,
               patience=cfg.patience, val_criterion=F.cross_entropy, metric_fn=accuracy,
               generator=torch.Generator().manual_seed(seed), on_epoch_end=on_epoch_end, name=name, verbose=verbose)

# %% [markdown]
# **Homework 1's convolutional network**, here because Homework 2 trains the same recipe to compare with its
# pretrained encoder. Three stages of 3×3 convolutions (batch norm and ReLU after each) with max-pooling after
# every stage, dropout and one linear layer; each stage doubles the channels while pooling halves the
# resolution, so the work per layer stays balanced. Tensors use the `channels_last` memory layout, which the
# CPU convolution kernels run faster. `CNN_TRAIN` is the recipe that Homework 1's design study starts from.

# %%
class ChannelsLast(nn.Module):
    def forward(self, x):
        return x.contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class CNNConfig:
    channels: tuple = (24, 48, 96)
    dropout: float = 0.3
    batch_norm: bool = True


def conv_block(c_in: int, c_out: int, batch_norm: bool) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)] + \
        ([nn.BatchNorm2d(c_out)] if batch_norm else []) + [nn.ReLU()]


def make_cnn(cfg: CNNConfig) -> nn.Sequential:
    c1, c2, c3 = cfg.channels
    model = nn.Sequential(
        ChannelsLast(),
        *conv_block(1, c1, cfg.batch_norm), *conv_block(c1, c1, cfg.batch_norm),
        nn.MaxPool2d(2),  # 28x28 -> 14x14
        *conv_block(c1, c2, cfg.batch_norm), *conv_block(c2, c2, cfg.batch_norm),
        nn.MaxPool2d(2),  # 14x14 -> 7x7
        *conv_block(c2, c3, cfg.batch_norm),
        nn.MaxPool2d(2),  # 7x7 -> 3x3
        nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(c3 * 9, 10))
    return model.to(memory_format=torch.channels_last)

# %% [markdown]
# `fold_batch_norm` makes an evaluation copy in which each batch norm is merged into the convolution before it.
# `build` seeds PyTorch before constructing a model, so two models built with the same seed start from the same
# weights and differ only in how they are trained.

# %%
def fold_batch_norm(model: nn.Sequential) -> nn.Sequential:
    """An evaluation copy of `model` in which every Conv2d followed by a BatchNorm2d is one Conv2d: in eval mode
    the batch norm is a fixed per-channel affine map, which folds into the convolution's weights and bias
    (`fuse_conv_bn_eval`). Same outputs up to rounding, one layer less per block; the model is left unchanged."""
    layers, modules = [], list(model)
    i = 0
    while i < len(modules):
        if isinstance(modules[i], nn.Conv2d) and i + 1 < len(modules) and isinstance(modules[i + 1], nn.BatchNorm2d):
            layers.append(fuse_conv_bn_eval(copy.deepcopy(modules[i]).eval(), copy.deepcopy(modules[i + 1]).eval()))
            i += 2
        else:
            layers.append(copy.deepcopy(modules[i]))
            i += 1
    return nn.Sequential(*layers).to(memory_format=torch.channels_last).eval()


def build(make, cfg, device: torch.device, seed: int) -> nn.Module:
    """make(cfg) on `device`, with weights initialised from `seed`."""
    torch.manual_seed(seed)
    return make(cfg).to(device)


CNN_TRAIN = TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=5e-4, batch_size=128, schedule="warmup_cosine",
                        label_smoothing=0.1)

# %% [markdown]
# **Figures and metrics.** `savefig` writes every figure as PNG and PDF for the report; `METRICS` collects
# every headline number, `section` times each graded item into `METRICS["wall_time_s"]`, and `progress` shows
# how far a long silent loop has come.

# %%
from matplotlib.ticker import Formatter

plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 150, "axes.grid": True, "grid.alpha": 0.3,
                     "axes.spines.top": False, "axes.spines.right": False})
# Inches at which the reports print a figure: across the text width, or in one column of a two-column grid.
# Each figure is drawn at the width it prints, so matplotlib's 10 pt text prints at 10 pt; text is kept >= 8 pt.
PRINT_WIDTH = {"full": 6.7, "half": 3.3}
COLORS = dict(zip(list(OPTIMIZERS) + ["mlp", "cnn"], plt.get_cmap("tab10").colors))


def savefig(fig: plt.Figure, path: Path) -> None:
    """Write the figure as path.png (notebook, README) and path.pdf (report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(path.with_name(f"{path.name}.{ext}"), bbox_inches="tight")


class _PlainLogFormatter(Formatter):
    """Log-axis tick labels as plain numbers (0.02, 1e-5; not 2×10⁻²): matplotlib sets an exponent at 0.7 × the
    tick size, too small in print. Decades are labelled always; within a decade, 2, 3 and 5 when the axis spans less
    than 1.5 decades, and every tick when it spans less than half a decade (more would crowd a short axis)."""

    def __call__(self, x, pos=None):
        low, high = self.axis.get_view_interval()
        span = np.log10(high / low)
        coefficient = round(x / 10 ** np.floor(np.log10(x) + 1e-9))
        if not (coefficient in (1, 10) or span <= 0.5 or (span <= 1.5 and coefficient in (2, 3, 5))):
            return ""
        return f"{x:g}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


def plain_log_ticks(axis) -> None:
    """Label a log axis (ax.xaxis or ax.yaxis, after set_*scale("log")) with plain numbers."""
    axis.set_major_formatter(_PlainLogFormatter())
    axis.set_minor_formatter(_PlainLogFormatter())


METRICS: dict = {"profile": PROFILE, "seed": SEED, "wall_time_s": {}}

# %% [markdown]
# `section` adds a block's wall time to the metrics, `progress` is a text progress bar that a saved notebook keeps
# as one line, and `write_metrics` writes `METRICS` as JSON together with the software versions that produced it.

# %%
@contextlib.contextmanager
def section(name: str, metrics: dict):
    """Time the block into metrics["wall_time_s"][name]."""
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start  # a section may be entered more than once: times add up
    times = metrics.setdefault("wall_time_s", {})
    times[name] = round(times.get(name, 0.0) + elapsed, 1)
    print(f"[time] {name}: {times[name]:.1f}s")


def progress(iterable=None, desc: str = "", total: int | None = None) -> tqdm:
    """A text progress bar for a long loop that prints nothing itself: never a widget, redrawn at most every
    10 s; a saved notebook keeps only its closing line (the runner merges carriage-return updates)."""
    return tqdm(iterable, desc=desc, total=total, file=sys.stdout, mininterval=10, ncols=100)


def to_builtin(value):
    """Convert NumPy/PyTorch scalars and containers to JSON-serialisable Python values."""
    if isinstance(value, dict):
        return {str(k): to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item() if getattr(value, "ndim", 0) == 0 else value.tolist()
    return value


def write_metrics(metrics: dict, path: Path, device: torch.device) -> None:
    """Write the metrics as JSON, with the environment that produced them."""
    metrics["environment"] = {"device": str(device), "torch": torch.__version__, "numpy": np.__version__,
                              "python": platform.python_version(), "cpu_threads": torch.get_num_threads(),
                              "platform": platform.platform()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_builtin(metrics), indent=2, sort_keys=True) + "\n")
    print(f"metrics written to {path}")


# %% [markdown]
# Results are tables: `show_table` prints a list of rows, optionally sorted, and `within_noise` says when two
# mean ± sd results overlap, in which case they are not ranked.

# %%
def within_noise(a: dict, b: dict, key: str = "best_val_acc") -> bool:
    """Whether two table rows' mean ± sd intervals of `key` overlap (the sd in `key`_sd): such rows are not ranked."""
    return abs(a[key] - b[key]) <= a[f"{key}_sd"] + b[f"{key}_sd"]


def show_table(rows: list[dict], columns: list[str] | None = None, sort_by: str | None = None,
               descending: bool = False) -> list[dict]:
    """Print rows (one dict per run) as a fixed-width table, optionally sorted; return them sorted."""
    if sort_by is not None:
        rows = sorted(rows, key=lambda r: r[sort_by], reverse=descending)
    columns = columns or list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    widths = [max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(fmt(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)))
    return rows

# %% [markdown]
# `plot_confusions` draws confusion matrices with each row as a percentage of its true class, so the diagonal
# reads as per-class recall.

# %%
def plot_confusions(matrices: dict[str, np.ndarray], class_names, title: str,
                    width: float | None = None) -> plt.Figure:
    """One panel per confusion matrix (rows: true class), each cell the % of its true class. The width (inches)
    defaults to half the text width per panel, at most the full width."""
    k = len(class_names)
    width = width or min(PRINT_WIDTH["half"] * len(matrices), PRINT_WIDTH["full"])
    # the class names label the rows of the first panel only (sharey), so the panels after it get their room
    side = (width - 1.0) / len(matrices)  # each square panel's side: about 1 in goes to the class names
    fig, axes = plt.subplots(1, len(matrices), figsize=(width, side + 1.3), squeeze=False, sharey=True)
    for ax, (name, cm) in zip(axes[0], matrices.items()):
        share = cm / cm.sum(1, keepdims=True)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i, j in np.ndindex(cm.shape):
            ax.text(j, i, f"{100 * share[i, j]:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
        ax.set(xticks=range(k), yticks=range(k), xlabel="predicted class", title=name)
        ax.set_xticklabels(class_names, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
        ax.set_yticklabels(class_names, fontsize=8)
        ax.grid(False)
    axes[0][0].set_ylabel("true class")
    fig.suptitle(title, fontsize="medium")  # at 12 pt a long title would widen a half-width figure
    fig.tight_layout()
    return fig

# %% [markdown]
# `plot_curves` draws training histories: one panel per history key (for example training loss, validation loss),
# one line per run, each run with its own line style so that curves that coincide stay visible.

# %%
def plot_curves(histories: dict[str, dict], keys=("train_loss", "val_loss"), ylabels=None, title="",
                colors: dict | None = None, logy=False, width: float = PRINT_WIDTH["full"],
                height: float = 2.6, legend_cols: int | None = None) -> plt.Figure:
    """One panel per history key, one line per run; x is the epoch. The figure is drawn at the width (inches)
    the report prints it, so its text prints at its own size. The legend sits in the last panel, or, with
    legend_cols, under the panels in that many columns (many runs or long names would cover a narrow panel)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(width, height), squeeze=False)
    for ax, key, ylabel in zip(axes[0], keys, ylabels or keys):
        for i, (name, h) in enumerate(histories.items()):
            if h.get(key):
                color = (colors or {}).get(name, plt.get_cmap("tab10")(i % 10))
                # a line style per run as well: curves that coincide (Adam and AdamW) stay visible, also in grey
                ax.plot(h["epoch"][:len(h[key])], h[key], label=name, color=color,
                        linestyle=("-", "--", "-.", ":")[i % 4])
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
            plain_log_ticks(ax.yaxis)
    fig.suptitle(title)
    fig.tight_layout()
    if legend_cols is None:
        axes[0][-1].legend(fontsize=8)
    else:  # below the axes: the saved figure (tight bounding box) grows downwards, not wider
        fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0),
                   ncol=legend_cols, fontsize=8, frameon=False, handlelength=2.2, columnspacing=1.2)
    return fig


# %% [markdown]
# **Checkpoints of the final models, and the `verify` profile.** Every run but `verify` saves the weights of each
# final model (its `state_dict`, floating-point tensors stored in float16: half the bytes of float32, and the
# reported numbers still reproduce within `VERIFY_TOLERANCE`) to `CHECKPOINT_DIR`, and records in the metrics the
# file's SHA-256, the configuration the model was trained with and a digest of the code that defines it. The
# `verify` profile takes each final model's configuration from the committed metrics, checks the file, its
# checksum, that configuration and the code, and loads the weights (`weights_only=True`: tensors, never pickled
# objects) instead of training; the other sections run at the smoke budget. Where a check fails it names the
# file and what differs, and trains that model with the quick profile's budget instead, labelled as such.

# %%
import inspect
import re

VERIFY = PROFILE == "verify"
CHECKPOINT_DTYPE = torch.float16
VERIFY_TOLERANCE = {"accuracy": 0.002, "relative": 0.002}  # absolute for accuracies, relative for the others
VERIFIED: dict[str, str] = {}  # in verify: final model -> "committed weights", or why it was trained again


def load_committed_metrics(path: Path) -> dict:
    """verify: the committed run's metrics, whose configurations and checkpoints it reproduces; {} otherwise."""
    if not VERIFY:
        return {}
    if not path.exists():
        raise FileNotFoundError(f"The verify profile reproduces the committed full run, but {path} is missing. Fix: "
                                f"run it in a clone of the repository (it holds report/ and checkpoints/), or set "
                                f"HW_VERIFY_METRICS to the metrics file of the run to reproduce.")
    committed = json.loads(path.read_text())
    if not committed.get("checkpoints"):
        raise ValueError(f"{path} records no checkpoints (it comes from a run before they were saved). Fix: run "
                         f"the full profile once, or point HW_VERIFY_METRICS at a run that saved them.")
    return committed


COMMITTED = load_committed_metrics(VERIFY_METRICS_PATH)


def class_sources(cls: type) -> list[str]:
    """A class's code, method by method (inspect cannot read a class defined in a notebook cell as a whole); a
    dataclass's fields with their defaults (the methods a dataclass generates have no source to read)."""
    fields_ = [repr((name, f.default)) for name, f in getattr(cls, "__dataclass_fields__", {}).items()]
    written = [f for f in vars(cls).values()
               if inspect.isfunction(f) and inspect.unwrap(f).__code__.co_filename != "<string>"]
    return [cls.__name__, *fields_, *map(inspect.getsource, written)]

# %% [markdown]
# Committed weights are loaded only if the code that defines the model is unchanged: `source_digest` hashes the
# layer tree and the source of the classes and functions that build it. `final_config` returns the committed
# configuration under `verify`, and this run's otherwise.

# %%
def source_digest(*objects) -> str:
    """SHA-256 of what defines a model: for a module, its layer tree (types, shapes, settings) and the code of each
    layer class defined in this notebook; for a function or a class, its source."""
    parts = []
    for obj in objects:
        if isinstance(obj, nn.Module):
            parts.append(repr(obj))
            local = {type(m) for m in obj.modules() if type(m).__module__ == "__main__"}
            parts += [src for cls in sorted(local, key=lambda c: c.__name__) for src in class_sources(cls)]
        else:
            parts += class_sources(obj) if isinstance(obj, type) else [inspect.getsource(obj)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def from_dict(cls, values: dict):
    """A config dataclass from its asdict() form after a JSON round trip (lists back to tuples)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def final_config(name: str, config: dict) -> dict:
    """The configuration of final model `name`: the one this run chose, or in verify the committed run's."""
    record = COMMITTED.get("checkpoints", {}).get(name)
    if VERIFY and record is None:
        print(f"verify: the committed metrics have no checkpoint of {name!r}: it uses this run's configuration")
    return record["config"] if VERIFY and record is not None else config

# %% [markdown]
# `save_checkpoint` writes the weights atomically and records the file's SHA-256. `checkpoint_problem` says why a
# committed file cannot be used: missing, wrong checksum, unreadable, another configuration, or changed code.

# %%
def save_checkpoint(name: str, state: dict, config: dict, digest: str) -> None:
    """Write final model `name`'s weights to CHECKPOINT_DIR and record the file in METRICS["checkpoints"]."""
    CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
    path = CHECKPOINT_DIR / (re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") + ".pt")
    weights = {k: torch.as_tensor(v).detach().cpu() for k, v in state.items()}
    payload = {"name": name, "config": json.dumps(to_builtin(config), sort_keys=True), "source_sha256": digest,
               "state": {k: v.to(CHECKPOINT_DTYPE) if v.is_floating_point() else v for k, v in weights.items()}}
    partial = path.with_suffix(".part")
    torch.save(payload, partial)
    os.replace(partial, path)  # an interrupted save leaves no file that looks complete
    METRICS.setdefault("checkpoints", {})[name] = {
        "file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
        "dtype": str(CHECKPOINT_DTYPE).removeprefix("torch."), "config": to_builtin(config), "source_sha256": digest}


def checkpoint_problem(path: Path, record: dict, digest: str) -> tuple[dict | None, str]:
    """Load a committed checkpoint; return (payload, "") when it checks out, else (None, what differs)."""
    if not path.exists():
        return None, "file not found"
    if (actual := file_sha256(path)) != record["sha256"]:
        return None, (f"its SHA-256 {actual[:12]}… is not the recorded {record['sha256'][:12]}… (a corrupt, "
                      f"truncated or replaced file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (whatever the reason, the file cannot be used)
        return None, f"it cannot be read ({type(error).__name__}: {error})"
    saved = json.loads(payload["config"])
    if saved != record["config"]:
        keys = sorted({k for k in saved.keys() | record["config"].keys() if saved.get(k) != record["config"].get(k)})
        return None, f"it was trained with another configuration (differs in {', '.join(keys)})"
    if payload["source_sha256"] != digest:
        return None, "the code that defines the model changed since the weights were saved (its source digest differs)"
    return payload, ""

# %% [markdown]
# `load_checkpoint` and `train_or_load` decide whether a final model is trained or loaded: train and save, or under
# `verify` load the committed weights, falling back to training at the quick budget, with a printed reason, when a
# check fails.

# %%
def load_checkpoint(name: str, digest: str) -> dict | None:
    """verify: final model `name`'s committed weights (float32 again) once they check out; None after saying why
    not (the caller then trains the model with the quick profile's budget)."""
    record = COMMITTED.get("checkpoints", {}).get(name)
    path = VERIFY_CHECKPOINT_DIR / record["file"] if record else VERIFY_CHECKPOINT_DIR
    payload, problem = checkpoint_problem(path, record, digest) if record else (None, "no checkpoint is recorded")
    if payload is None:
        print(f"verify: {name}: {path}: {problem}. It is TRAINED AGAIN with the quick profile's budget: its numbers "
              f"below are not the committed model's.")
        VERIFIED[name] = f"trained again (quick budget): {problem}"
        return None
    VERIFIED[name] = "committed weights"
    return {k: v.float() if v.is_floating_point() else v for k, v in payload["state"].items()}


def loaded_history(**extra) -> dict:
    """The history of a model that was loaded, not trained: one entry with no scores, no time, no samples."""
    nan = float("nan")
    return {"epoch": [0], "train_loss": [nan], "val_loss": [nan], "val_metric": [nan], "time_s": [0.0],
            "samples_per_s": 0.0, "wall_s": 0.0, "loaded": True, **extra}


def train_or_load(name: str, model: nn.Module, config: dict, train, loaded: dict | None = None) -> dict:
    """Final model `name`: train(budget) trains `model` in place and returns its history, after which its weights
    are saved; in verify the committed weights are loaded instead (returning `loaded`, by default
    `loaded_history()`), or, if they do not check out, train(the quick profile's budget) runs."""
    digest = source_digest(model)
    if VERIFY and (state := load_checkpoint(name, digest)) is not None:
        model.load_state_dict(state)
        return loaded if loaded is not None else loaded_history()
    history = train(PROFILES["quick"] if VERIFY else P)
    save_checkpoint(name, model.state_dict(), config, digest)
    return history

# %% [markdown]
# Under `verify`, `verify_against_committed` puts each reported test number beside the committed one and checks
# it against `VERIFY_TOLERANCE`; in the other profiles it does nothing.

# %%
def dig(metrics: dict, path: tuple):
    for key in path:
        metrics = metrics[key]
    return metrics


def verify_against_committed(reported: dict[str, tuple]) -> list[dict]:
    """verify: each final model's reported test number (final model -> its path in the metrics), as committed and as
    reproduced here, and whether they agree within VERIFY_TOLERANCE; nothing in the other profiles."""
    if not VERIFY:
        return []
    rows = []
    for name, path in reported.items():
        committed, reproduced = dig(COMMITTED, path), dig(METRICS, path)
        tolerance = VERIFY_TOLERANCE["accuracy"] if "acc" in ".".join(path) else \
            VERIFY_TOLERANCE["relative"] * abs(committed)
        loaded = VERIFIED.get(name) == "committed weights"
        rows.append({"final model": name, "metric": ".".join(path), "committed": committed, "reproduced": reproduced,
                     "tolerance": tolerance, "agrees": abs(reproduced - committed) <= tolerance if loaded else None,
                     "weights": VERIFIED.get(name, "not run")})
    show_table(rows)
    agree = sum(r["agrees"] is True for r in rows)
    print(f"verify: {agree} of {len(rows)} reported test numbers reproduced within the tolerance "
          f"({VERIFY_TOLERANCE['accuracy']} for accuracies, {VERIFY_TOLERANCE['relative']:.1%} relative otherwise)"
          + ("" if agree == len(rows) else "; see the rows above for the others"))
    METRICS["verify"] = {"rows": rows, "tolerance": VERIFY_TOLERANCE, "source": str(VERIFY_METRICS_PATH)}
    return rows
