"""Judging generated images: a fixed classifier, recognition share and Frechet distance.

A small classifier is trained once on a data set's training set and cached in the data dir
(keyed by data set, architecture, epochs, training subsample and seed), so every run and
every method is judged by the same network. For a class ``c``:

* recognition share: the fraction of images generated for ``c`` that the classifier labels
  ``c`` (argmax over all classes). Real test images of ``c`` score the classifier's accuracy
  on ``c``; images unrelated to ``c`` score about ``1 / n_classes`` on average.
* Frechet distance (as FID, Heusel et al. 2017, but on this classifier's penultimate
  features instead of Inception's): ``|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))``
  between Gaussians fitted to real and generated features. 0 for identical sets; it is
  biased upwards for small samples, so compare values only at equal sample sizes.

Example:
    >>> clf, info = load_or_train_classifier("mnist", epochs=2)  # doctest: +SKIP
    >>> recognition_share(clf, images, 3)  # doctest: +SKIP
    0.97
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from anpyc.data import sources
from anpyc.errors import DataError
from anpyc.io import write_with
from anpyc.utils import eval_mode

if TYPE_CHECKING:
    from collections.abc import Iterable

    from anpyc.data.batches import SplitData


log = logging.getLogger(__name__)

ARCHS = ("cnn", "mlp")


class EvalClassifier(nn.Module):
    """``features`` (penultimate layer, used for the Frechet distance) then a linear head."""

    def __init__(self, arch: str = "cnn", n_classes: int = 10, image_shape: tuple[int, ...] = (1, 28, 28)) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown classifier arch {arch!r}; known: {', '.join(ARCHS)}")
        self.arch = arch
        c, h, w = image_shape
        if arch == "cnn":
            self.body = nn.Sequential(
                nn.Conv2d(c, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(32 * (h // 4) * (w // 4), 128), nn.ReLU(),
            )
        else:
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU())
        self.head = nn.Linear(128, n_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def _to_float(x: np.ndarray | Tensor) -> Tensor:
    x = torch.as_tensor(x)
    if x.dtype == torch.uint8:
        x = x.float().div(255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return x.float()


def train_classifier(
    x: np.ndarray | Tensor, y: np.ndarray | Tensor, arch: str = "cnn", epochs: int = 2, seed: int = 0,
    batch_size: int = 128, lr: float = 1e-3,
) -> EvalClassifier:
    """Train an :class:`EvalClassifier` with Adam on images ``x`` (uint8 or [0, 1]) and labels ``y``."""
    x, y = _to_float(x), torch.as_tensor(y).long()
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # the caller's global RNG stream stays as it was
        torch.manual_seed(seed)
        clf = EvalClassifier(arch, int(y.max()) + 1, tuple(x.shape[1:]))
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    clf.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(clf(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    clf.eval()
    return clf


@torch.no_grad()
def predict(clf: EvalClassifier, images: Tensor, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """(predicted labels, penultimate features) for images in [0, 1]."""
    device = next(clf.parameters()).device
    labels, feats = [], []
    with eval_mode(clf):
        for start in range(0, len(images), batch_size):
            f = clf.features(_to_float(images[start : start + batch_size]).to(device))
            feats.append(f.cpu())
            labels.append(clf.head(f).argmax(1).cpu())
    return torch.cat(labels), torch.cat(feats)


def accuracy(clf: EvalClassifier, x: np.ndarray | Tensor, y: np.ndarray | Tensor) -> float:
    pred, _ = predict(clf, _to_float(x))
    return float((pred == torch.as_tensor(y).long()).float().mean())


def recognition_share(clf: EvalClassifier, images: Tensor, cls: int) -> float:
    """Fraction of ``images`` (all meant to show class ``cls``) that ``clf`` labels ``cls``."""
    pred, _ = predict(clf, images)
    return float((pred == int(cls)).float().mean())


def frechet_distance(real: np.ndarray | Tensor, fake: np.ndarray | Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (rows are samples).

    ``Tr((S1 S2)^(1/2))`` is computed as the sum of square roots of the eigenvalues of the
    symmetric ``S1^(1/2) S2 S1^(1/2)``, so no general matrix square root is needed.

    Example:
        >>> a = np.random.default_rng(0).normal(size=(500, 4))
        >>> round(frechet_distance(a, a), 6)
        0.0
    """
    # torch, not numpy: numpy's BLAS ignores torch.set_num_threads and oversubscribes a
    # shared machine (50x slower here); torch's LAPACK follows the run's thread setting
    a = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"need two (n >= 2, d) feature arrays of equal width, got {tuple(a.shape)} and {tuple(b.shape)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    w, v = torch.linalg.eigh(s_a)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T
    mid = root_a @ s_b @ root_a
    tr_sqrt = torch.linalg.eigvalsh((mid + mid.T) / 2).clamp_min(0).sqrt().sum()
    fd = (mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2.0 * tr_sqrt
    return float(fd.clamp_min(0.0))


@dataclass(frozen=True)
class ClassifierKey:
    """Everything that determines the cached classifier."""

    dataset: str
    arch: str = "cnn"
    epochs: int = 2
    seed: int = 0
    subsample: int | None = None

    @property
    def filename(self) -> str:
        n = "all" if self.subsample is None else str(self.subsample)
        return f"eval-classifier-{self.arch}-e{self.epochs}-n{n}-s{self.seed}.pt"


def load_or_train_classifier(
    dataset: str, data_dir: str | Path | None = None, arch: str = "cnn", epochs: int = 2, seed: int = 0,
    subsample: int | None = None,
) -> tuple[EvalClassifier, dict]:
    """The judging classifier for ``dataset`` (``mnist`` or ``fashion-mnist``).

    Loaded from ``<data dir>/<dataset>/eval-classifier-...pt`` when present, otherwise trained
    on the training set (or a ``subsample`` of it, for tests) and written atomically. Returns
    the classifier and ``{"test_acc", "path", "cached", ...}``; the test accuracy is measured on
    the full test set.
    """
    key = ClassifierKey(dataset, arch, epochs, seed, subsample)
    arrays = sources.load(dataset, data_dir)
    folder = sources.resolve_data_dir(data_dir) / sources.get_spec(dataset).name
    path = folder / key.filename
    shape = (1, *arrays["train_x"].shape[1:])
    n_classes = sources.get_spec(dataset).n_classes
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            clf = EvalClassifier(arch, n_classes, shape)
            clf.load_state_dict(saved["state_dict"])
            clf.eval()
            return clf, {"test_acc": float(saved["test_acc"]), "path": str(path), "cached": True, **key.__dict__}
        except Exception as exc:  # a damaged cache is rebuilt, never trusted
            log.warning("ignoring unreadable classifier cache %s (%s); retraining", path, exc)
    x, y = arrays["train_x"], arrays["train_y"].astype(np.int64)
    if subsample is not None and subsample < len(y):
        idx = np.random.default_rng(seed).permutation(len(y))[:subsample]
        x, y = x[idx], y[idx]
    log.info("training the %s judging classifier on %d %s images (%d epochs, cached afterwards)", arch, len(y), dataset, epochs)
    clf = train_classifier(x, y, arch, epochs, seed)
    test_acc = accuracy(clf, arrays["test_x"], arrays["test_y"].astype(np.int64))
    payload = {"state_dict": clf.state_dict(), "test_acc": test_acc}
    try:
        write_with(path, lambda buf: torch.save(payload, buf))
    except Exception as exc:  # a read-only data dir costs the cache, not the run
        log.warning("could not cache the judging classifier at %s: %s", path, exc)
    return clf, {"test_acc": test_acc, "path": str(path), "cached": False, **key.__dict__}


def dataset_of(benchmark: str) -> str:
    """The base data set a split stream draws from (one the judging classifier can learn)."""
    from anpyc.data.streams import STREAMS

    learnable = {n: s.dataset for n, s in STREAMS.items() if s.kind == "split" and s.dataset in sources.DATASETS}
    if benchmark in learnable:
        return learnable[benchmark]
    raise DataError(f"generative models need a split benchmark ({', '.join(learnable)}), got {benchmark!r}")


def real_features(clf: EvalClassifier, data: SplitData, classes: Iterable[int],
                  limit: int | None = None) -> dict[int, np.ndarray]:
    """Penultimate features of real images per class, from any split ``data`` of a task."""
    labels = data.labels()
    out = {}
    for c in classes:
        idx = (labels == c).nonzero(as_tuple=True)[0]
        if limit is not None:
            idx = idx[:limit]
        x, _, _ = data.get(idx)
        out[int(c)] = predict(clf, x)[1].numpy()
    return out


__all__ = [
    "ARCHS",
    "ClassifierKey",
    "EvalClassifier",
    "accuracy",
    "dataset_of",
    "frechet_distance",
    "load_or_train_classifier",
    "predict",
    "real_features",
    "recognition_share",
    "train_classifier",
]
