import pytest
import torch

from anpyc.kernels import masking
from anpyc.kernels.masking import FrozenEntries, Ownership, hide, lowest_fraction_mask


def test_lowest_fraction_only_among_candidates():
    scores = torch.tensor([0.1, 5.0, 0.2, 3.0, 0.0])
    cand = torch.tensor([False, True, True, True, True])
    assert lowest_fraction_mask(scores, cand, 0.5).tolist() == [False, False, True, False, True]
    assert not lowest_fraction_mask(scores, cand, 0.0).any()
    assert lowest_fraction_mask(scores, cand, 1.0).tolist() == cand.tolist()


def test_lowest_fraction_rounds_the_count_to_the_nearest():
    """Two thirds of three candidates is two entries (1.98 rounded), not one (truncated)."""
    mask = lowest_fraction_mask(torch.tensor([3.0, 1.0, 2.0]), torch.ones(3, dtype=torch.bool), 0.66)
    assert mask.tolist() == [False, True, True]


def test_unit_pruning_ranks_units_by_their_candidate_entries_only():
    """A unit's held entries (not candidates) do not count toward its score: unit 0's large
    held entry would otherwise save its weak free one."""
    scores = torch.tensor([[100.0, 0.1], [1.0, 1.0]])
    cand = torch.tensor([[False, True], [True, True]])
    mask = lowest_fraction_mask(scores, cand, 0.5, unit_dim=0)
    assert mask.tolist() == [[False, True], [False, False]]


def test_unit_pruning_removes_whole_rows():
    scores = torch.tensor([[1.0, 1.0], [0.1, 0.1], [5.0, 5.0], [0.2, 0.3]])
    mask = lowest_fraction_mask(scores, torch.ones(4, 2, dtype=torch.bool), 0.5, unit_dim=0)
    assert mask.all(1).tolist() == [False, True, False, True] and (mask.any(1) == mask.all(1)).all()


class _Body(torch.nn.Module):
    """A model with shared parameters only, as the kernels see one."""

    def __init__(self, *shapes) -> None:
        super().__init__()
        self.params = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(s)) for s in shapes])

    def shared_parameters(self):
        return [(f"p{i}", p) for i, p in enumerate(self.params)]


def _train_masked(opt_cls, steps: int = 20, **opt_kw):
    torch.manual_seed(0)
    body = _Body((50,), (6, 7))
    start = {n: p.detach().clone() for n, p in body.shared_parameters()}
    trainable = {n: torch.rand(p.shape) > 0.5 for n, p in body.shared_parameters()}
    opt = opt_cls(body.parameters(), **opt_kw)
    frozen = None
    for _ in range(steps):
        loss = sum((p * torch.randn(p.shape)).sum() + p.pow(2).sum() for p in body.parameters())
        opt.zero_grad()
        loss.backward()
        frozen = frozen or FrozenEntries(body, trainable)
        frozen.gate_grads_(body)
        opt.step()
        frozen.restore_(body, opt)
    return body, start, trainable, opt


def test_frozen_entries_stay_bit_identical_with_momentum_and_weight_decay():
    body, start, trainable, _ = _train_masked(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=0.1)
    for name, p in body.shared_parameters():
        assert torch.equal(p.detach()[~trainable[name]], start[name][~trainable[name]])
        assert not torch.equal(p.detach()[trainable[name]], start[name][trainable[name]])


def test_adam_state_cleared_for_frozen_entries():
    body, _, trainable, opt = _train_masked(torch.optim.Adam, steps=5, lr=0.1, weight_decay=0.1)
    for name, p in body.shared_parameters():
        assert opt.state[p]["exp_avg"][~trainable[name]].abs().sum() == 0
        assert opt.state[p]["exp_avg"][trainable[name]].abs().sum() > 0


def _two_phases(opt_cls, settle: bool, nan_step: int | None = None, **opt_kw):
    """Five steps training every entry (the optimizer's slots fill everywhere), then fifteen
    with about half the entries frozen. ``settle=False`` forces the full write-back at every
    step (as before restores were skipped); ``nan_step``: that step's gradient is NaN at one
    frozen entry."""
    torch.manual_seed(0)
    body = _Body((50,), (6, 7))
    opt = opt_cls(body.parameters(), **opt_kw)

    def step(frozen=None, nan=False):
        loss = sum((p * torch.randn(p.shape)).sum() + p.pow(2).sum() for p in body.parameters())
        opt.zero_grad()
        loss.backward()
        if nan:
            body.params[0].grad[int((~trainable["p0"]).nonzero()[0])] = float("nan")
        if frozen is not None:
            frozen.gate_grads_(body)
        opt.step()
        if frozen is not None:
            frozen._settled = frozen._settled if settle else None
            frozen.restore_(body, opt)

    for _ in range(5):
        step()
    trainable = {n: torch.rand(p.shape) > 0.5 for n, p in body.shared_parameters()}
    start = {n: p.detach().clone() for n, p in body.shared_parameters()}
    frozen = FrozenEntries(body, trainable)
    for i in range(15):
        step(frozen, nan=i == nan_step)
    state = {n: {k: v.clone() for k, v in opt.state[p].items() if isinstance(v, torch.Tensor) and v.shape == p.shape}
             for n, p in body.shared_parameters()}
    return {n: p.detach().clone() for n, p in body.shared_parameters()}, state, start, trainable


@pytest.mark.parametrize("opt_cls, kw", [(torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
                                         (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
                                         (torch.optim.Adam, {"lr": 0.1}),
                                         (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1})])
def test_restores_skipped_once_settled_leave_the_same_bits(opt_cls, kw, monkeypatch):
    """After the first step of a phase cleared the frozen entries' slots, SGD and Adam without
    weight decay cannot move them: the write-back is skipped, and parameters and optimizer
    state are what writing back at every step gives, bit for bit."""
    skipped, state_skipped, start, trainable = _two_phases(opt_cls, True, **kw)
    written, state_written, _, _ = _two_phases(opt_cls, False, **kw)
    for name in written:
        assert torch.equal(skipped[name], written[name]) and torch.equal(skipped[name].signbit(), written[name].signbit())
        assert torch.equal(skipped[name][~trainable[name]], start[name][~trainable[name]])
        assert not torch.equal(skipped[name][trainable[name]], start[name][trainable[name]])
        for key, value in state_written[name].items():
            assert torch.equal(state_skipped[name][key], value), key
    writes = []
    monkeypatch.setattr(masking, "_write_at_", lambda *a: writes.append(a))
    _two_phases(opt_cls, True, **kw)
    per_step = 2 * (2 + (opt_cls is torch.optim.Adam))  # two parameters: each its values and its slots
    assert len(writes) == (per_step * 15 if kw.get("weight_decay") else per_step)  # settled: the first step only


def test_a_non_finite_gradient_at_a_frozen_entry_is_still_written_back():
    skipped, _, start, trainable = _two_phases(torch.optim.SGD, True, nan_step=6, lr=0.1, momentum=0.9)
    written, _, _, _ = _two_phases(torch.optim.SGD, False, nan_step=6, lr=0.1, momentum=0.9)
    for name in written:
        assert torch.equal(skipped[name][~trainable[name]], start[name][~trainable[name]])
        assert torch.equal(skipped[name], written[name])


def _assert_restore_is_a_boolean_select(body, trainable) -> None:
    """After a step moved every entry, ``restore_`` leaves what ``torch.where`` over the mask would."""
    frozen = FrozenEntries(body, trainable)
    before = body.params[0].detach().clone()
    with torch.no_grad():
        body.params[0].add_(1.0)
    expected = torch.where(trainable["p0"], body.params[0].detach(), before)
    frozen.restore_(body)
    assert torch.equal(body.params[0].detach(), expected)


def test_frozen_entries_write_what_a_boolean_select_would_also_for_a_non_contiguous_parameter():
    torch.manual_seed(1)
    body = _Body((5, 4))
    body.params[0] = torch.nn.Parameter(torch.randn(4, 5).t())  # a transposed view
    _assert_restore_is_a_boolean_select(body, {"p0": torch.rand(5, 4) > 0.5})


def test_frozen_entries_take_a_mask_that_broadcasts_per_unit():
    torch.manual_seed(4)
    _assert_restore_is_a_boolean_select(_Body((4, 3)), {"p0": torch.tensor([[True], [False], [True], [False]])})  # as HAT's


def test_hide_zeroes_what_a_fill_would_and_restores_every_entry():
    torch.manual_seed(2)
    body = _Body((30,), (3, 4))
    body.params[0].data[0] = -0.0
    hidden = {n: torch.rand(p.shape) > 0.4 for n, p in body.shared_parameters()}
    before = {n: p.detach().clone() for n, p in body.shared_parameters()}
    with hide(body, hidden):
        for name, p in body.shared_parameters():
            filled = before[name].masked_fill(hidden[name], 0.0)
            assert torch.equal(p, filled)
            assert torch.equal(torch.signbit(p[hidden[name]]), torch.zeros(int(hidden[name].sum()), dtype=torch.bool))
    for name, p in body.shared_parameters():
        assert torch.equal(p.detach(), before[name]) and torch.equal(torch.signbit(p), torch.signbit(before[name]))


def test_hide_fills_a_parameter_with_a_non_finite_entry():
    body = _Body((4,))
    body.params[0].data.copy_(torch.tensor([float("inf"), 1.0, float("nan"), 2.0]))
    with hide(body, {"p0": torch.tensor([True, False, True, False])}):
        assert body.params[0].tolist() == [0.0, 1.0, 0.0, 2.0]
    assert body.params[0][0] == float("inf") and body.params[0][2].isnan()


def test_ownership_view_follows_claims_after_it_was_cached():
    torch.manual_seed(3)
    body = _Body((10,))
    own = Ownership()
    own.ensure(body)
    first = torch.zeros(10, dtype=torch.bool)
    first[:3] = True
    own.claim("p0", first, 0)
    own.finish_task(body, 0)
    values = body.params[0].detach().clone()
    with own.view(body, 0):
        assert torch.equal(body.params[0].detach() != 0, first)
    second = torch.zeros(10, dtype=torch.bool)
    second[3:6] = True
    own.claim("p0", second, 1)
    own.finish_task(body, 1)
    with own.view(body, 0):  # task 1's entries now hidden from task 0, the free ones still
        assert torch.equal(body.params[0].detach() != 0, first)
    with own.view(body, 1):
        assert torch.equal(body.params[0].detach() != 0, first | second)
    own.release("p0", first)
    with own.view(body, 1):
        assert torch.equal(body.params[0].detach() != 0, second)
    assert torch.equal(body.params[0].detach(), values)


# ------------------------------------------------------------------ the pruning guard
class _Pruned:
    """A stand-in for a model whose validation accuracy depends on what was pruned."""

    def __init__(self, acc_at: dict[float, float], retrained: dict[float, float]) -> None:
        self.w = torch.nn.Linear(1, 1)
        self.acc_at, self.retrained, self.keep, self.trained = acc_at, retrained, 1.0, False

    def state_dict(self):
        return self.w.state_dict()

    def prune_from(self, keep: float, retrain: bool):
        self.keep, self.trained = keep, retrain
        return {"w": torch.tensor([keep < 1.0])}

    def validate(self) -> float:
        if self.keep >= 1.0:
            return 0.9
        return (self.retrained if self.trained else self.acc_at)[self.keep]


def _guard(model, tol=0.01, chance=0.25):
    from anpyc.kernels.masking import PruneGuard, guarded_prune

    return guarded_prune(PruneGuard(tolerance=tol, search_drop=0.1, z=0.0), model, 0.15, model.prune_from,
                         model.validate, 10_000, chance)


def test_guard_grows_the_keep_share_until_the_pruned_task_holds():
    model = _Pruned({0.15: 0.5, 0.3: 0.82, 0.6: 0.89}, {0.3: 0.895})
    keep, pruned, record = _guard(model)
    assert keep == 0.3 and model.trained and pruned is not None
    assert record["val_before"] == 0.9 and record["val_pruned"] == 0.82 and record["val_retrained"] == 0.895


def test_guard_keeps_more_without_retraining_when_retraining_falls_short():
    model = _Pruned({0.15: 0.85, 0.3: 0.86, 0.6: 0.895}, {0.15: 0.86})
    keep, _, record = _guard(model)
    assert keep == 0.6 and not model.trained and "kept 0.6" in record["reason"]


def test_guard_undoes_a_retraining_that_hurts_and_keeps_the_planned_share():
    model = _Pruned({0.15: 0.895}, {0.15: 0.8})  # pruned: within tolerance; retrained: far below
    keep, pruned, record = _guard(model)
    assert keep == 0.15 and not model.trained and pruned is not None and record["budget_spent"]


def test_guard_leaves_a_task_at_chance_unpruned_without_a_budget_to_train_on():
    model = _Pruned({}, {})
    model.validate = lambda: 0.27
    keep, pruned, record = _guard(model)
    assert keep == 1.0 and pruned is None and "near chance" in record["reason"] and not record["budget_spent"]


def _guard_training_on(model, learns: bool):
    from anpyc.kernels.masking import PruneGuard, guarded_prune

    state = {"trained_on": False}
    before = model.validate

    def validate() -> float:  # at chance until trained on; then learnt (``before``) or still at chance
        if state["trained_on"] and learns:
            return before()
        return 0.27 if model.keep >= 1.0 or not state["trained_on"] else 0.26

    def train_on() -> None:
        state["trained_on"] = True

    out = guarded_prune(PruneGuard(tolerance=0.01, search_drop=0.1, z=0.0), model, 0.15, model.prune_from,
                        validate, 10_000, 0.25, train_on)
    return (*out, state["trained_on"])


def test_guard_trains_a_task_at_chance_on_then_prunes_it_without_retraining():
    model = _Pruned({0.15: 0.85, 0.3: 0.895}, {})
    keep, pruned, record, trained_on = _guard_training_on(model, learns=True)
    assert trained_on and record["budget_spent"] and record["val_trained_on"] == 0.9
    assert keep == 0.3 and pruned is not None and not model.trained  # within tolerance, not retrained


def test_guard_gives_a_task_that_learnt_nothing_only_the_planned_share():
    model = _Pruned({}, {})
    keep, pruned, record, trained_on = _guard_training_on(model, learns=False)
    assert trained_on and keep == 0.15 and pruned is not None and "planned share" in record["reason"]


def test_guarded_anpyc_keeps_the_task_within_tolerance_where_unguarded_pruning_breaks_it():
    """Keeping 2% of the weights, with no retraining, breaks the first task; the guard keeps
    its validation accuracy within the tolerance of its accuracy before pruning."""
    import numpy as np

    from anpyc.config import RunConfig
    from anpyc.runner import run

    cfg = {"method": "anpyc-masks", "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 800},
           "model": {"hidden": [32, 32]}, "train": {"epochs": 6, "batch_size": 32},
           "method_params": {"keep_first": 0.02, "keep_min": 0.02, "retrain_epochs": 0, "reinit": "zero"}}
    guarded = run(RunConfig.from_dict(cfg), quiet=True)
    cfg["method_params"]["guard"] = False
    unguarded = run(RunConfig.from_dict(cfg), quiet=True)
    record = guarded.metrics["prune_guard"][0]
    before, tol = record["val_before"], record["tolerance"]
    assert before > 0.5  # the task learnt (chance 0.25)
    assert unguarded.val_acc_matrix[0, 0] < before - tol
    assert guarded.val_acc_matrix[0, 0] >= before - tol and record["keep"] > 0.02
    assert np.array_equal(guarded.val_acc_matrix[1, :1], guarded.val_acc_matrix[0, :1])  # and kept exactly


def test_a_body_without_parameters_is_all_free():
    """Nothing is owned there, so no pool runs out (anpyc-masks warned of an exhausted pool)."""
    from torch import nn

    from anpyc.models import ContinualModel

    model = ContinualModel(nn.Flatten(), feature_dim=4)
    own = Ownership()
    own.ensure(model)
    assert own.free_share(model) == 1.0
