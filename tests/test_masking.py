import torch

from anpyc.masking import gate_grad_, lowest_fraction_mask, restore_frozen_


def test_lowest_fraction_only_among_candidates():
    scores = torch.tensor([0.1, 5.0, 0.2, 3.0, 0.0])
    cand = torch.tensor([False, True, True, True, True])
    assert lowest_fraction_mask(scores, cand, 0.5).tolist() == [False, False, True, False, True]
    assert not lowest_fraction_mask(scores, cand, 0.0).any()
    assert lowest_fraction_mask(scores, cand, 1.0).tolist() == cand.tolist()


def test_unit_pruning_removes_whole_rows():
    scores = torch.tensor([[1.0, 1.0], [0.1, 0.1], [5.0, 5.0], [0.2, 0.3]])
    mask = lowest_fraction_mask(scores, torch.ones(4, 2, dtype=torch.bool), 0.5, unit_dim=0)
    assert mask.all(1).tolist() == [False, True, False, True] and (mask.any(1) == mask.all(1)).all()


def test_frozen_entries_stay_bit_identical_with_momentum_and_weight_decay():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(50))
    frozen_values = p.detach().clone()
    trainable = torch.rand(50) > 0.5
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(20):
        loss = (p * torch.randn(50)).sum() + p.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        gate_grad_(p, trainable)
        opt.step()
        restore_frozen_(p, trainable, frozen_values, opt)
    assert torch.equal(p.detach()[~trainable], frozen_values[~trainable])
    assert not torch.equal(p.detach()[trainable], frozen_values[trainable])


def test_adam_state_cleared_for_frozen_entries():
    p = torch.nn.Parameter(torch.ones(4))
    trainable = torch.tensor([True, False, True, False])
    opt = torch.optim.Adam([p], lr=0.1, weight_decay=0.1)
    for _ in range(5):
        opt.zero_grad()
        (p.sum() * 2).backward()
        opt.step()
        restore_frozen_(p, trainable, torch.ones(4), opt)
    assert p.detach()[~trainable].tolist() == [1.0, 1.0]
    assert opt.state[p]["exp_avg"][~trainable].abs().sum() == 0
