import torch

from anpyc import importance
from anpyc.methods import create
from anpyc.scenario import HookContext


def test_regulariser_contract(quadratic_contract):
    for kind in ("sampled", "empirical"):  # "true" is checked against a loop below
        quadratic_contract("ewc", {"lam": 10, "fisher": kind, "fisher_samples": 100})


def test_fisher_is_per_sample_and_matches_a_loop(one_task):
    model, _, stream = one_task("finetune")
    x, y, _ = stream[0].train.get(torch.arange(20))
    params = [p for _, p in model.shared_parameters()]
    ref = [torch.zeros_like(p) for p in params]
    for i in range(20):  # reference: one backward per example and class
        logp = torch.log_softmax(model(x[i : i + 1], 0), 1)[0]
        for c in range(logp.numel()):
            g = torch.autograd.grad(logp[c], params, retain_graph=True)
            for r, gi in zip(ref, g):
                r += logp[c].exp().detach() * gi.pow(2) / 20
    got = importance.fisher_diag(model, stream[0].train, kind="true", max_samples=20, batch_size=7)
    for (name, _), r in zip(model.shared_parameters(), ref):
        torch.testing.assert_close(got[name], r, rtol=1e-4, atol=1e-8)


def test_fisher_sums_over_tasks_and_reports_stats(one_task):
    model, method, stream = one_task("ewc", {"fisher_samples": 50})
    first = {n: method.omega(n).clone() for n, _ in model.shared_parameters()}
    method.after_task(model, stream[1], HookContext(1, len(stream)))
    name = model.shared_parameters()[0][0]
    assert (method.omega(name) >= first[name]).all() and (method.omega(name) > first[name]).any()
    stats = method.summary()["importance_stats"]
    assert [s["task"] for s in stats] == [0, 1] and stats[0]["kurtosis"] > 0


def test_forgets_less_than_finetune(forgetting_of, finetune_forgetting):
    # lam = 30 won a validation sweep over 10, 30, 100 on this stream (val ACC)
    m = forgetting_of("ewc", {"lam": 30, "fisher_samples": 200})
    assert m["forgetting"] < finetune_forgetting - 0.02


def test_estimation_runs_in_eval_mode_and_restores_train_mode(one_task):
    model, method, stream = one_task("ewc", {"fisher_samples": 20})
    model.train()
    method.after_task(model, stream[1], HookContext(1, len(stream)))
    assert model.training
    assert create("ewc").scale == 0.5
