"""Parameter-importance estimators shared by the methods, as plain functions.

Every estimator returns ``{param_name: tensor shaped like the parameter}`` for the model's
shared (body) parameters, computed in eval mode (dropout off, batch-norm statistics frozen)
and averaged over batches of the task's data. Under torch.distributed each rank scores its own
share of the batches and the sums are all-reduced (the same mean as one process).

``data`` is any task data of :mod:`anpyc.data` (in-memory ``TaskData``, a lazy
``DatasetData``, a ``BatchIterable`` loader, a ``ConcatData`` of them) or a raw
``torch.utils.data.Dataset`` / ``DataLoader``, wrapped with task id 0 (see
:func:`anpyc.data.user.as_task_data`); batches are regrouped to ``batch_size`` either way.

A model may define ``importance_objective(x, y, t, signal) -> scalar`` (generative models
do); otherwise the objective is computed from the task heads' logits:

* ``entropy``: sum over examples of the softmax entropy (label-free; ANPyC's signal),
* ``loss``: summed cross-entropy with the true labels,
* ``output_norm``: summed squared L2 norm of the logits (MAS, label-free).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from anpyc.data.batches import iterate
from anpyc.data.user import resolve_data
from anpyc.models.heads import grouped_logits
from anpyc.parallel.collectives import all_reduce_mean_, all_reduce_sum_, rank_batches, sum_scalars  # noqa: F401
from anpyc.utils import eval_mode

if TYPE_CHECKING:
    from anpyc.data.batches import SplitData
    from anpyc.models.generative import GenerativeModel
    from anpyc.models.heads import ContinualModel

SIGNALS = ("entropy", "loss", "output_norm")


def batch_objective(model: ContinualModel | GenerativeModel, x: Tensor, y: Tensor, t: Tensor,
                    signal: str = "entropy") -> Tensor:
    """The scalar whose gradient the estimators use, summed over the batch."""
    custom = getattr(model, "importance_objective", None)
    if custom is not None:
        return custom(x, y, t, signal)
    total = x.new_zeros(())
    for rows, logits, _ in grouped_logits(model, x, t):
        if signal == "entropy":
            logp = F.log_softmax(logits, dim=1)
            total = total - (logp.exp() * logp).sum()  # log_softmax: no log(0)
        elif signal == "loss":
            total = total + F.cross_entropy(logits, y[rows], reduction="sum")
        elif signal == "output_norm":
            total = total + logits.pow(2).sum()
        else:
            raise ValueError(f"unknown importance signal {signal!r}; known: {', '.join(SIGNALS)}")
    return total


def _model_device(model: ContinualModel | GenerativeModel) -> torch.device:
    """Where the batches go when the caller names no device: where the model's weights are
    (the data sets live on the CPU; a model on the GPU would otherwise get CPU batches)."""
    return next(model.parameters()).device


def _accumulate(
    model: ContinualModel | GenerativeModel,
    data: SplitData,
    score: Callable[[Tensor, Tensor], Tensor],
    signal: str,
    batch_size: int,
    max_samples: int | None,
    device: torch.device | str | None = None,
    batch_mean: bool = False,
) -> dict[str, Tensor]:
    """Mean over the batches of ``data`` of ``score(gradient, parameter)``, the gradient of
    :func:`batch_objective` summed over the batch (``batch_mean``: averaged over it)."""
    params = model.shared_parameters()
    if not params:  # a body without parameters (features computed beforehand): nothing to score
        return {}
    sums = {name: torch.zeros_like(p) for name, p in params}
    device = _model_device(model) if device is None else device
    n_batches = 0
    with eval_mode(model):
        for x, y, t in rank_batches(data, batch_size, limit=max_samples):  # this rank's batches
            x, y, t = x.to(device), y.to(device), t.to(device)
            obj = batch_objective(model, x, y, t, signal)
            if batch_mean:
                obj = obj / len(y)
            grads = torch.autograd.grad(obj, [p for _, p in params], allow_unused=True)
            for (name, p), g in zip(params, grads):
                if g is not None:
                    sums[name] += score(g, p.detach())
            n_batches += 1
    (n_batches,) = sum_scalars(n_batches)
    for v in sums.values():  # mean over every rank's batches = the one-process mean
        all_reduce_sum_(v).div_(max(n_batches, 1))
    return sums


#: the signs of the first-order term each form adds its clipped score for
_TAYLOR_SIGNS = {"reference": (1.0,), "removal": (-1.0,), "two-sided": (1.0, -1.0)}
TAYLOR_FORMS = tuple(_TAYLOR_SIGNS)


def entropy_taylor(
    model: ContinualModel | GenerativeModel, data: SplitData, signal: str = "entropy",
    batch_size: int = 100, max_samples: int | None = None, device: torch.device | str | None = None,
    form: str = "reference",
) -> dict[str, Tensor]:
    """ANPyC's importance, a first+second-order Taylor score with ``g = dH/dtheta`` (``H``:
    output entropy), averaged over batches (batch 100 as in the reference).

    * ``form='reference'``: ``max(g*theta + 0.5*theta^2*g^2, 0)``, as the authors' code has it;
    * ``form='removal'``: ``max(-g*theta + 0.5*theta^2*g^2, 0)``, the Taylor estimate of the
      change of ``H`` when the parameter is *removed* (``delta theta = -theta``);
    * ``form='two-sided'``: the two added, a change of ``H`` either way (``|g*theta| +
      0.5*theta^2*g^2`` where the first-order term dominates); exactly the sum of the two
      forms' estimates, since each is a mean over the same batches.

    The two differ in the sign of the first-order term. With the reference sign, a parameter
    whose removal would raise ``H`` (or the loss) the most gets its score clipped to 0 and is
    pruned first: measured on permuted MNIST it prunes worse than random (docs/anpyc.md).

    Example:
        >>> omega = entropy_taylor(model, task.train, max_samples=2000)  # doctest: +SKIP
    """
    if form not in TAYLOR_FORMS:
        raise ValueError(f"unknown Taylor form {form!r}; known: {', '.join(TAYLOR_FORMS)}")
    signs = _TAYLOR_SIGNS[form]

    def score(g: Tensor, p: Tensor) -> Tensor:
        first, second = g * p, 0.5 * p.pow(2) * g.pow(2)
        return sum((sign * first + second).clamp_min(0) for sign in signs)

    return _accumulate(model, data, score, signal, batch_size, max_samples, device)


def taylor_abs(model: ContinualModel | GenerativeModel, data: SplitData,
               signal: str = "loss", batch_size: int = 100, max_samples: int | None = None,
               device: torch.device | str | None = None) -> dict[str, Tensor]:
    """``|g * theta|`` averaged over batches (first-order Taylor saliency, Molchanov et al. 2017)."""
    return _accumulate(model, data, lambda g, p: (g * p).abs(), signal, batch_size, max_samples, device)


def gradient_magnitude(model: ContinualModel | GenerativeModel, data: SplitData,
                       signal: str = "output_norm", batch_size: int = 100,
                       max_samples: int | None = None,
                       device: torch.device | str | None = None) -> dict[str, Tensor]:
    """Mean ``|g|`` over batches (MAS with ``signal='output_norm'``, Aljundi et al. 2018)."""
    return _accumulate(model, data, lambda g, p: g.abs(), signal, batch_size, max_samples, device)


@contextlib.contextmanager
def scoring_head(model: ContinualModel | GenerativeModel, with_head: bool = True) -> Iterator[None]:
    """Within the block, the estimators also score the shared head (a single-head model's
    ``heads.0.*``), as if it were part of the body: methods that consolidate the head too."""
    if not with_head or getattr(model, "head_mode", "multi") != "single" or not len(model.heads):
        yield
        return
    body = model.shared_parameters
    model.shared_parameters = lambda: body() + [(f"heads.0.{n}", p) for n, p in model.heads[0].named_parameters()]
    try:
        yield
    finally:
        del model.shared_parameters  # the class's method again


def weight_magnitude(model: ContinualModel | GenerativeModel) -> dict[str, Tensor]:
    """``|theta|``: the magnitude criterion (PackNet, Han et al. 2015)."""
    return {name: p.detach().abs() for name, p in model.shared_parameters()}


def normalize_per_layer(omega: dict[str, Tensor], mode: str = "none", beta: float = 3.0,
                        spread: float = 1.0) -> dict[str, Tensor]:
    """Structure-aware shaping of importance by the network's layers and units.

    * ``none``: unchanged;
    * ``layer_mean``: divide each tensor by its mean (every layer has mean importance 1);
    * ``layer_softmax``: SPP-style sharpening, ``numel * softmax(beta * omega / max(omega))``
      per tensor (mean 1, the largest entries pulled further apart; ``beta=3`` as in SPP);
    * ``neuron``: multiply each weight by its output unit's mean importance relative to the
      layer mean (a weight of an important neuron counts more);
    * ``spread``: add to each weight ``spread`` times the mean importance of the unit it feeds
      (its row; a 1-D tensor, a bias, is scaled by ``1 + spread``): a small or zero weight into
      an important unit is important too, since moving it changes what that unit computes,
      though removing it (the Taylor score) changes nothing.

    Example:
        >>> w = torch.tensor([[2., 0.], [0., 0.]])
        >>> normalize_per_layer({"w": w}, "spread")["w"].tolist()
        [[3.0, 1.0], [0.0, 0.0]]
    """
    if mode == "none":
        return omega
    out = {}
    for name, w in omega.items():
        if w.numel() == 0 or float(w.max()) <= 0:
            out[name] = w.clone()
            continue
        if mode == "spread":
            unit = w.reshape(w.shape[0], -1).mean(1).reshape((-1,) + (1,) * (w.dim() - 1)) if w.dim() > 1 else w
            out[name] = w + spread * unit
        elif mode == "layer_mean":
            out[name] = w / w.mean()
        elif mode == "layer_softmax":
            out[name] = torch.softmax(beta * (w / w.max()).flatten(), 0).reshape(w.shape) * w.numel()
        elif mode == "neuron":
            unit = w.reshape(w.shape[0], -1).mean(1) if w.dim() > 1 else w
            rel = unit / unit.mean().clamp_min(1e-12)
            shape = (-1,) + (1,) * (w.dim() - 1)
            out[name] = w / w.mean() * rel.reshape(shape)
        else:
            raise ValueError(f"unknown normalisation {mode!r}")
    return out


def importance_stats(omega: dict[str, Tensor], bins: int = 40) -> dict:
    """Distribution diagnostics: log10 histogram, kurtosis, share holding 90% of the total.

    "Sparse and polarized" importance shows as high kurtosis and a small ``top90_share``.
    """
    from anpyc.metrics import kurtosis

    flat = torch.cat([v.flatten() for v in omega.values()]).double()
    total = float(flat.sum())
    if flat.numel() == 0 or total <= 0:
        return {"kurtosis": None, "top90_share": None, "hist_edges": [], "hist_counts": [], "zero_share": 1.0}
    ordered = flat.sort(descending=True).values
    k = int(torch.searchsorted(ordered.cumsum(0), torch.tensor(0.9 * total, dtype=torch.float64))) + 1
    positive = flat[flat > 0]
    logs = positive.log10()
    lo, hi = float(logs.min()), float(logs.max())
    if hi <= lo:
        hi = lo + 1.0
    counts = torch.histc(logs, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    return {
        "kurtosis": kurtosis(flat.numpy()),
        "top90_share": k / flat.numel(),
        "zero_share": float((flat == 0).double().mean()),
        "hist_edges": [round(float(e), 4) for e in edges],
        "hist_counts": [int(c) for c in counts],
    }


# --------------------------------------------------------------------------- per-sample
FISHER_KINDS = ("true", "sampled", "empirical", "empirical_batch")


def _shared_linears(model: ContinualModel) -> dict[nn.Linear, dict[str, str]] | None:
    """``{module: {"weight": name, "bias": name}}`` when every shared parameter is the weight
    or bias of an ``nn.Linear`` (an MLP body), else None."""
    shared = {id(p): name for name, p in model.shared_parameters()}
    found: dict[nn.Linear, dict[str, str]] = {}
    for module in model.modules():
        own = {k: shared[id(p)] for k, p in module.named_parameters(recurse=False) if id(p) in shared}
        if not own:
            continue
        if type(module) is not nn.Linear:
            return None
        found[module] = own
    if sum(len(v) for v in found.values()) != len(shared):
        return None
    return found


def _linear_per_sample(
    model: ContinualModel, x: Tensor, task: int, per_example: Callable[[Tensor, Tensor], Tensor],
    y: Tensor, reduce: str,
) -> dict[str, Tensor] | None:
    """Closed form for MLP bodies: a Linear layer's per-sample weight gradient is the outer
    product ``delta_i a_i^T`` of its output gradient and its input, so ``sum_i (delta_i a_i^T)^2
    = (delta^2)^T a^2`` and ``sum_i |delta_i a_i^T| = |delta|^T |a|``: one matmul per layer
    instead of B gradients. Exact in eval mode (no batch coupling). None if it does not apply
    (a layer called twice, inputs that are not 2-D, parameters that do not require grad)."""
    layers = _shared_linears(model)
    if layers is None or not all(p.requires_grad for _, p in model.shared_parameters()):
        return None
    inputs: dict[nn.Linear, Tensor] = {}
    outputs: dict[nn.Linear, Tensor] = {}
    calls: dict[nn.Linear, int] = dict.fromkeys(layers, 0)

    def remember(module: nn.Linear, args: tuple[Tensor, ...], out: Tensor) -> None:
        calls[module] += 1
        inputs[module], outputs[module] = args[0].detach(), out

    handles = [m.register_forward_hook(remember) for m in layers]
    try:
        with torch.enable_grad():
            values = per_example(model(x, task), y)
    finally:
        for h in handles:
            h.remove()
    if any(c != 1 for c in calls.values()) or any(a.dim() != 2 for a in inputs.values()):
        return None
    mods = list(layers)
    deltas = torch.autograd.grad(values.sum(), [outputs[m] for m in mods])
    out: dict[str, Tensor] = {}
    for m, delta in zip(mods, deltas, strict=True):
        a = inputs[m]
        d, a = (delta.pow(2), a.pow(2)) if reduce == "sq" else (delta.abs(), a.abs())
        if "weight" in layers[m]:
            out[layers[m]["weight"]] = d.T @ a
        if "bias" in layers[m]:
            out[layers[m]["bias"]] = d.sum(0)
    return out


def _per_sample_grads(
    model: ContinualModel, x: Tensor, task: int, per_example: Callable[[Tensor, Tensor], Tensor],
    y: Tensor, reduce: str = "sq",
) -> dict[str, Tensor]:
    """Sum over the rows of ``x`` of the squared (``reduce="sq"``) or absolute (``"abs"``)
    per-sample gradient of ``per_example(logits, y)[i]`` (one value per row) with respect to
    the shared parameters. MLP bodies take the closed form of :func:`_linear_per_sample`;
    any other body uses ``torch.func`` (``vmap`` of ``grad``): one batched pass either way.
    A body ``vmap`` cannot batch (``nn.GRU``, ``nn.LSTM``: fused kernels) takes one backward
    pass per example instead, with one warning: the same sums, more slowly."""
    fast = _linear_per_sample(model, x, task, per_example, y, reduce)
    if fast is not None:
        return fast
    from torch.func import functional_call, grad, vmap

    params = {name: p.detach() for name, p in model.shared_parameters()}

    def one(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        logits = functional_call(model, p, (xi.unsqueeze(0), task), strict=False)
        return per_example(logits, yi.unsqueeze(0))[0]

    try:
        with torch.no_grad():  # torch.func.grad still differentiates; no graph for the rest
            grads = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    except (RuntimeError, NotImplementedError) as exc:  # a real error raises again in the loop
        _warn_unbatched(model, exc)
        grads = _stacked_grads(one, params, x, y)
    return {name: (g.pow(2) if reduce == "sq" else g.abs()).sum(0) for name, g in grads.items()}


_WARNED_BODIES: set[str] = set()


def _warn_unbatched(model: ContinualModel, exc: Exception) -> None:
    kind = type(getattr(model, "body", model)).__name__
    if kind not in _WARNED_BODIES:
        _WARNED_BODIES.add(kind)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logging.getLogger(__name__).warning(
            "per-example gradients: torch.func cannot batch this body (%s: %s); one backward pass "
            "per example instead (slower, the same result)", kind, first)


def _stacked_grads(one: Callable[[dict[str, Tensor], Tensor, Tensor], Tensor], params: dict[str, Tensor],
                   x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """What ``vmap(grad(one))`` gives (each row's gradient, stacked), by one backward pass per row."""
    leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
    rows = []
    with torch.enable_grad():
        for xi, yi in zip(x, y):
            grads = torch.autograd.grad(one(leaves, xi, yi), list(leaves.values()), allow_unused=True)
            rows.append([torch.zeros_like(p) if g is None else g for p, g in zip(leaves.values(), grads)])
    return {name: torch.stack(col) for name, col in zip(leaves, zip(*rows))}


def _per_sample_loop(model: ContinualModel, data: SplitData, batch_size: int,
                     max_samples: int | None, device: torch.device | str | None,
                     body: Callable[[Tensor, Tensor, int], dict[str, Tensor]]) -> dict[str, Tensor]:
    """Shared driver: eval mode, batches grouped by task id, mean over examples, rank mean."""
    sums = {name: torch.zeros_like(p) for name, p in model.shared_parameters()}
    if not sums:  # a body without parameters: nothing to score
        return {}
    device = _model_device(model) if device is None else device
    n = 0
    with eval_mode(model):
        for x, y, t in iterate(resolve_data(data), batch_size, limit=max_samples):
            x, y, t = x.to(device), y.to(device), t.to(device)
            for task in t.unique().tolist():
                rows = (t == task).nonzero(as_tuple=True)[0]
                for name, v in body(x[rows], y[rows], int(task)).items():
                    sums[name] += v
                n += len(rows)
    for v in sums.values():
        v.div_(max(n, 1))
        all_reduce_mean_(v)
    return sums


def _log_lik(logits: Tensor, labels: Tensor) -> Tensor:
    """``log p(label | x)`` per row."""
    return -F.cross_entropy(logits, labels, reduction="none")


def fisher_diag(
    model: ContinualModel | GenerativeModel,
    data: SplitData,
    kind: str = "true",
    max_samples: int | None = 1000,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """Diagonal Fisher information of the shared parameters from per-sample gradients.

    ``F_i = E_x E_{y~p(y|x)} [(d log p(y|x) / d theta_i)^2]`` averaged over up to
    ``max_samples`` examples (the first ones of ``data``), in eval mode. ``kind``:

    * ``true``: the exact expectation over the task head's classes (``sum_c p_c g_c^2``),
      deterministic, costs one per-sample gradient per class;
    * ``sampled``: one label per example drawn from the model's predictive distribution
      (Kirkpatrick et al. 2017's Monte-Carlo estimate), with ``generator``;
    * ``empirical``: the true labels (the "empirical Fisher"; Kunstner et al. 2019 on why
      it differs);
    * ``empirical_batch``: the squared gradient of each mini-batch's *mean* loss (true
      labels), averaged over batches: :func:`empirical_batch_fisher`, what Avalanche's
      ``EWCPlugin`` computes. Not per-sample: about ``1/batch_size`` of ``empirical`` where
      the per-example gradients disagree, so its ``lam`` lives on another scale.

    The per-sample kinds do not depend on ``batch_size`` (it only chunks the work).

    Example:
        >>> fisher = fisher_diag(model, task.train, kind="true", max_samples=1000)  # doctest: +SKIP
    """
    if kind not in FISHER_KINDS:
        raise ValueError(f"unknown Fisher kind {kind!r}; known: {', '.join(FISHER_KINDS)}")
    if hasattr(model, "importance_objective"):  # generative models: Fisher of their own objective
        from anpyc.models.generative import objective_fisher  # (Seff et al. 2017); lazy: no cycle

        return objective_fisher(model, data, max_samples=max_samples)
    if kind == "empirical_batch":
        return empirical_batch_fisher(model, data, max_samples=max_samples, batch_size=batch_size, device=device)

    def body(x: Tensor, y: Tensor, task: int) -> dict[str, Tensor]:
        if kind == "empirical":
            return _per_sample_grads(model, x, task, _log_lik, y)
        with torch.no_grad():
            probs = F.softmax(model(x, task), dim=1)
        if kind == "sampled":
            labels = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(x.device)
            return _per_sample_grads(model, x, task, _log_lik, labels)
        total: dict[str, Tensor] = {}
        for c in range(probs.shape[1]):
            # (sqrt(p_c) * g_c)^2 = p_c * g_c^2, with p_c a constant weight
            w = probs[:, c].sqrt()
            part = _per_sample_grads(model, x, task, lambda lg, wi, c=c: wi * F.log_softmax(lg, 1)[:, c], w)
            for name, v in part.items():
                total[name] = total[name] + v if name in total else v
        return total

    return _per_sample_loop(model, data, batch_size, max_samples, device, body)


def empirical_batch_fisher(
    model: ContinualModel | GenerativeModel, data: SplitData,
    max_samples: int | None = None, batch_size: int = 128, device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """The mini-batch "empirical Fisher": ``F_i = 1/K sum_k (d mean_{b in batch k} CE_b / d theta_i)^2``
    over the ``K`` consecutive (unshuffled) batches of ``batch_size`` examples of ``data`` (the
    first ``max_samples``; a last partial batch counts as one), true labels, in eval mode. This
    is Avalanche's ``EWCPlugin.compute_importances`` (0.6.0). The square of a batch mean is
    not a Fisher: it is ``(mean gradient)^2 + variance / batch_size``, so it shrinks with the
    batch size and with how well the task is learnt (``fisher_diag(kind="empirical")`` is the
    per-sample estimate).

    Example:
        >>> fisher = empirical_batch_fisher(model, task.train, batch_size=128)  # doctest: +SKIP
    """
    return _accumulate(model, data, lambda g, p: g.pow(2), "loss", batch_size, max_samples, device, batch_mean=True)


def mas_importance(
    model: ContinualModel, data: SplitData, max_samples: int | None = None,
    batch_size: int = 64, device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """MAS importance (Aljundi et al. 2018, eq. 4): ``Omega_i = 1/N sum_k |d ||F(x_k)||_2^2 / d theta_i|``,
    the mean over examples of the absolute per-sample gradient of the squared L2 norm of the
    task head's output; label-free, in eval mode.

    Example:
        >>> omega = mas_importance(model, task.train, max_samples=1000)  # doctest: +SKIP
    """
    return _per_sample_loop(
        model, data, batch_size, max_samples, device,
        lambda x, y, task: _per_sample_grads(model, x, task, lambda lg, _: lg.pow(2).sum(1), y, reduce="abs"),
    )
