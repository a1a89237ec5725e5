"""The continual model: a head per task (``multi``) or one shared head (``single``), the
shared head's active outputs (kept through a state dict), heads recreated for a saved state,
a new head's own initialisation, the task id given as a tensor, the shared parameters, and
``grouped_logits`` running the body once for a batch of several tasks."""

import pytest
import torch
from torch import nn

from anpyc.models.heads import ContinualModel, grouped_logits


def _model(head="multi", init=None):
    torch.manual_seed(0)
    return ContinualModel(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), 4, head=head, init=init)


def test_each_task_gets_its_own_head_of_its_own_size():
    model = _model()
    assert [model.add_head(n) for n in (2, 5, 3)] == [0, 1, 2] and model.head_sizes == [2, 5, 3]
    x = torch.randn(6, 3)
    assert [model(x, t).shape[1] for t in range(3)] == [2, 5, 3]
    assert not torch.equal(model(x, 0), model(x, 2)[:, :2])  # separate weights


def test_a_single_head_model_makes_its_head_once_and_every_task_uses_it():
    model = _model("single")
    assert [model.add_head(4) for _ in range(3)] == [0, 0, 0] and model.head_sizes == [4]
    x = torch.randn(5, 3)
    assert torch.equal(model(x, 0), model(x, 2)) and model.head_index(7) == 0


def test_a_single_head_model_refuses_a_task_of_another_size():
    model = _model("single")
    model.add_head(4)
    with pytest.raises(ValueError, match="every task must use the same output size"):
        model.add_head(3)
    assert model.head_sizes == [4]


def test_an_unknown_head_mode_is_refused():
    with pytest.raises(ValueError, match="head must be 'multi' or 'single', got 'shared'"):
        _model("shared")


def test_a_task_without_a_head_is_an_index_error_naming_the_count():
    model = _model()
    model.add_head(2)
    with pytest.raises(IndexError, match=r"no head for task 1: the model has 1 head\(s\)"):
        model(torch.zeros(1, 3), 1)


def test_the_active_outputs_cut_the_logits_and_zero_means_all():
    model = _model("single")
    model.add_head(6)
    x = torch.randn(2, 3)
    full = model(x, 0)
    model.set_active_outputs(4)
    assert torch.equal(model(x, 0), full[:, :4])
    model.set_active_outputs(0)
    assert model(x, 0).shape == (2, 6)


def test_the_active_outputs_come_back_with_a_state_dict():
    saved = _model("single")
    saved.add_head(6)
    saved.set_active_outputs(2)
    loaded = _model("single")
    loaded.add_head(6)
    loaded.load_state_dict(saved.state_dict())
    # the forward reads a host copy of the count: loading must refresh it, not only the buffer
    assert loaded(torch.randn(3, 3), 0).shape == (3, 2)


def test_ensure_heads_adds_only_the_missing_heads():
    model = _model()
    model.add_head(2)
    first = model.heads[0]
    model.ensure_heads([2, 5, 3])
    assert model.head_sizes == [2, 5, 3] and model.heads[0] is first
    model.ensure_heads([2])  # fewer than there are: nothing removed
    assert model.head_sizes == [2, 5, 3]


def test_every_new_head_goes_through_the_init():
    def fill(head):
        nn.init.constant_(head.weight, 0.5)
        nn.init.zeros_(head.bias)

    model = _model(init=fill)
    model.add_head(2)
    model.ensure_heads([2, 3])
    assert all(bool((h.weight == 0.5).all()) and bool((h.bias == 0).all()) for h in model.heads)
    assert not bool((model.body[0].weight == 0.5).all())  # the body is not the model's to initialise


def test_a_task_id_tensor_must_hold_one_task():
    model = _model()
    model.add_head(2), model.add_head(2)
    x = torch.randn(4, 3)
    assert torch.equal(model(x, torch.ones(4, dtype=torch.long)), model(x, 1))
    with pytest.raises(ValueError, match="mixed task ids in one batch"):
        model(x, torch.tensor([0, 1, 0, 1]))


def test_the_shared_parameters_are_the_bodys_alone():
    model = _model()
    model.add_head(2)
    names = [n for n, _ in model.shared_parameters()]
    assert names == ["body.0.weight", "body.0.bias"]
    params = dict(model.named_parameters())
    assert all(p is params[n] for n, p in model.shared_parameters())  # the model's own tensors, by its names


def test_grouped_logits_runs_the_body_once_and_each_head_on_its_rows():
    model = _model()
    model.add_head(2), model.add_head(3)
    calls = []
    model.body.register_forward_hook(lambda *_: calls.append(1))
    x, t = torch.randn(5, 3), torch.tensor([1, 0, 1, 1, 0])
    groups = {task: (rows, logits) for rows, logits, task in grouped_logits(model, x, t)}
    assert len(calls) == 1 and sorted(groups) == [0, 1]
    rows, logits = groups[1]
    assert rows.tolist() == [0, 2, 3] and logits.shape == (3, 3)
    assert torch.allclose(logits, model(x[rows], 1))


def test_grouped_logits_of_a_single_head_is_one_group_of_every_row():
    model = _model("single")
    model.add_head(4)
    x, t = torch.randn(4, 3), torch.tensor([2, 0, 1, 2])
    [(rows, logits, _)] = grouped_logits(model, x, t)  # tasks mixed: one head answers them all
    assert rows.tolist() == [0, 1, 2, 3] and torch.equal(logits, model(x, 0))
