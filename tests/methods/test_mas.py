import torch

from anpyc.data.taskdata import TaskData
from anpyc.kernels import importance


def test_regulariser_contract(quadratic_contract):
    quadratic_contract("mas", {"lam": 1.0, "samples": 100})
    quadratic_contract("mas", {"lam": 1.0, "samples": 100, "per_sample": False})


def test_per_sample_importance_matches_a_loop_and_is_label_free(one_task):
    model, _, stream = one_task("finetune")
    data = stream[0].train
    x, _, _ = data.get(torch.arange(16))
    params = [p for _, p in model.shared_parameters()]
    ref = [torch.zeros_like(p) for p in params]
    for i in range(16):
        g = torch.autograd.grad(model(x[i : i + 1], 0).pow(2).sum(), params)
        for r, gi in zip(ref, g):
            r += gi.abs() / 16
    got = importance.mas_importance(model, data, max_samples=16, batch_size=5)
    for (name, _), r in zip(model.shared_parameters(), ref):
        torch.testing.assert_close(got[name], r, rtol=1e-4, atol=1e-8)
    relabelled = TaskData(data.x, (data.y + 1) % 4, data.task_id, data.index, data.transform)
    again = importance.mas_importance(model, relabelled, max_samples=16, batch_size=5)
    for name in got:
        torch.testing.assert_close(again[name], got[name])


def test_forgets_less_than_finetune(forgetting_of, finetune_forgetting):
    # lam = 0.1 won the validation sweep over 0.03, 0.1, 0.3 on this stream
    m = forgetting_of("mas", {"lam": 0.1, "samples": 200})
    assert m["forgetting"] < finetune_forgetting - 0.02
    assert m["importance_stats"][0]["kurtosis"] > 0
