import torch

from anpyc.kernels import importance
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


def test_keeps_one_fisher_and_anchor_per_task_and_reports_stats(one_task):
    model, method, stream = one_task("ewc", {"fisher_samples": 50})
    name = model.shared_parameters()[0][0]
    first_f, first_a = method.fishers(name)[0].clone(), method.anchors(name)[0].clone()
    with torch.no_grad():  # the body moves on task 1
        for _, p in model.shared_parameters():
            p.add_(0.05)
    method.after_task(model, stream[1], HookContext(1, len(stream)))
    f, a = method.fishers(name), method.anchors(name)
    assert f.shape[0] == a.shape[0] == 2 == method.n_tasks_kept()
    torch.testing.assert_close(f[0], first_f)  # task 0's Fisher and anchor are kept as they were
    torch.testing.assert_close(a[0], first_a)
    torch.testing.assert_close(a[1], dict(model.shared_parameters())[name].detach())
    stats = method.summary()
    assert [s["task"] for s in stats["importance_stats"]] == [0, 1] and stats["importance_stats"][0]["kurtosis"] > 0
    assert stats["ewc_state_grows_with_tasks"] is True and stats["ewc_tasks_kept"] == 2


def test_penalty_is_one_term_per_task_around_its_own_anchor(one_task, batch_of):
    model, method, stream = one_task("ewc", {"lam": 3.0, "fisher_samples": 50})
    with torch.no_grad():
        for _, p in model.shared_parameters():
            p.add_(0.05)
    method.after_task(model, stream[1], HookContext(1, len(stream)))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in model.shared_parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    expected = 0.0
    for name, p in model.shared_parameters():
        for t in range(2):
            expected += float((method.fishers(name)[t] * (p.detach() - method.anchors(name)[t]).pow(2)).sum())
    x, y, t = batch_of(stream)
    got = float(method.penalty(model, x, y, t).detach())
    assert abs(got - 0.5 * 3.0 * expected) <= 1e-5 * abs(got)


def test_one_task_equals_online_ewc_and_two_tasks_differ(one_task, batch_of):
    """After one task EWC and online EWC hold the same Fisher and anchor; after two, online EWC
    (gamma 1: the Fishers summed around the latest anchor) and EWC (one anchor per task) part."""
    same = {"fisher_samples": 50, "lam": 100.0, "fisher": "sampled"}  # their defaults differ
    m1, ewc, stream = one_task("ewc", same)
    m2, online, _ = one_task("online-ewc", {**same, "gamma": 1.0})
    x, y, t = batch_of(stream)
    for m in (m1, m2):
        with torch.no_grad():
            for _, p in m.shared_parameters():
                p.add_(0.05)
    torch.testing.assert_close(ewc.penalty(m1, x, y, t), online.penalty(m2, x, y, t))
    ewc.after_task(m1, stream[1], HookContext(1, len(stream)))
    online.after_task(m2, stream[1], HookContext(1, len(stream)))
    name = m1.shared_parameters()[0][0]
    torch.testing.assert_close(online.omega(name), ewc.fishers(name).sum(0))  # gamma 1: the sum
    with torch.no_grad():
        for m in (m1, m2):
            for _, p in m.shared_parameters():
                p.add_(0.05)
    assert float(ewc.penalty(m1, x, y, t).detach()) > float(online.penalty(m2, x, y, t).detach())  # task 0's own anchor is further


def test_state_round_trips_into_a_fresh_instance(one_task, batch_of):
    model, method, stream = one_task("ewc", {"fisher_samples": 50})
    method.after_task(model, stream[1], HookContext(1, len(stream)))
    fresh = create("ewc", {"fisher_samples": 50})
    fresh.load_state_dict(method.state_dict())
    assert fresh.n_tasks_kept() == 2
    x, y, t = batch_of(stream)
    with torch.no_grad():
        for _, p in model.shared_parameters():
            p.add_(0.05)
    torch.testing.assert_close(fresh.penalty(model, x, y, t), method.penalty(model, x, y, t))


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


def test_penalty_gradient_is_the_per_task_sum_s(one_task, batch_of):
    """The penalty is computed merged (one term, Fisher-weighted mean anchor): its value and
    gradient are those of one term per task."""
    model, method, stream = one_task("ewc", {"lam": 2.0, "fisher_samples": 50})
    with torch.no_grad():
        for _, p in model.shared_parameters():
            p.add_(0.05)
    method.after_task(model, stream[1], HookContext(1, len(stream)))
    with torch.no_grad():
        for _, p in model.shared_parameters():
            p.sub_(0.02)
    x, y, t = batch_of(stream)
    params = [p for _, p in model.shared_parameters()]
    got = torch.autograd.grad(method.penalty(model, x, y, t), params)
    direct = sum((method.fishers(n) * (p.unsqueeze(0) - method.anchors(n)).pow(2)).sum() for n, p in model.shared_parameters())
    want = torch.autograd.grad(0.5 * 2.0 * direct, params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(method.penalty(model, x, y, t).detach(), (0.5 * 2.0 * direct).detach(), rtol=1e-5, atol=1e-9)


def test_empirical_batch_fisher_is_the_squared_mean_batch_gradient(one_task):
    model, _, stream = one_task("finetune")
    data = stream[0].train
    params = [p for _, p in model.shared_parameters()]
    ref = [torch.zeros_like(p) for p in params]
    sizes = [16, 16, 8]  # 40 examples in batches of 16: the last one partial, counted as one
    start = 0
    for n in sizes:
        x, y, _ = data.get(torch.arange(start, start + n))
        loss = torch.nn.functional.cross_entropy(model(x, 0), y)
        for r, g in zip(ref, torch.autograd.grad(loss, params), strict=True):
            r += g.pow(2) / len(sizes)
        start += n
    got = importance.fisher_diag(model, data, kind="empirical_batch", max_samples=40, batch_size=16)
    for (name, _), r in zip(model.shared_parameters(), ref, strict=True):
        torch.testing.assert_close(got[name], r, rtol=1e-5, atol=1e-10)
    per_sample = importance.fisher_diag(model, data, kind="empirical", max_samples=40, batch_size=16)
    total = sum(float(v.sum()) for v in got.values())
    assert total < sum(float(v.sum()) for v in per_sample.values())  # the batch mean cancels


def test_fisher_reads_the_whole_task_by_default_and_counts_it(one_task):
    model, method, stream = one_task("ewc")
    assert method.config.fisher_samples is None
    assert method.importance_examples(0) == len(stream[0].train)


def test_the_true_fisher_is_a_choice_from_yaml_and_the_command_line():
    from anpyc.cli import parse_params

    params = parse_params(["fisher=true"])  # YAML reads `true` as a bool
    assert create("ewc", params).config.fisher == "true"
    assert create("online-ewc", {"fisher": "empirical_batch"}).config.fisher == "empirical_batch"


def test_consolidate_head_holds_a_shared_head_and_never_a_task_s_head():
    from anpyc.config import ModelConfig, StreamConfig
    from anpyc.data import make_stream
    from anpyc.models import build_model

    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=100), seed=0)
    for head, held in (("single", True), ("multi", False)):
        model = build_model(ModelConfig(hidden=(8,), head=head), stream.input_shape)
        model.add_head(stream[0].n_outputs)
        method = create("ewc", {"consolidate_head": True, "fisher_samples": 30})
        method.before_task(model, stream[0], HookContext(0, 2))
        method.after_task(model, stream[0], HookContext(0, 2, scenario="domain" if head == "single" else "task"))
        names = {n for n, _ in method.penalized(model)}
        assert ("heads.0.weight" in names) is held and method.fishers("body.1.weight") is not None
        assert (method.fishers("heads.0.weight") is not None) is held
        x, y, t = stream[0].train.get(torch.arange(8))
        with torch.no_grad():
            model.heads[0].weight.add_(0.1)  # only a held head costs
        assert (float(method.penalty(model, x, y, t).detach()) > 0) is held
