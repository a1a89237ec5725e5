import torch

from anpyc.methods import create


def test_distillation_zero_after_task_grows_and_round_trips(one_task, batch_of):
    model, method, stream = one_task("lwf", {"lam": 1.0})
    x, y, t = batch_of(stream)
    assert abs(float(method.penalty(model, x, y, t).detach())) < 1e-6
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    vals = []
    gen = torch.Generator().manual_seed(0)
    noise = {n: torch.randn(p.shape, generator=gen) for n, p in model.named_parameters()}
    for step in (0.02, 0.1, 0.5):
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(base[n] + step * noise[n])
        vals.append(float(method.penalty(model, x, y, t).detach()))
    assert 0 < vals[0] < vals[1] < vals[2]
    fresh = create("lwf", {"lam": 1.0})
    fresh.load_state_dict(method.state_dict())
    assert float(fresh.penalty(model, x, y, t).detach()) == vals[-1]


def test_teacher_is_frozen_and_in_eval_mode(one_task, batch_of):
    model, method, stream = one_task("lwf")
    x, y, t = batch_of(stream)
    before = [z.clone() for z in method.teacher_logits(model, x)]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # the student moves; the teacher must not
    model.train()
    after = method.teacher_logits(model, x)
    assert model.training
    assert len(after) == 1  # one old head after one task
    torch.testing.assert_close(before[0], after[0])
    assert all(not b.requires_grad for b in method.buffers())


def test_forgets_less_than_finetune(forgetting_of, finetune_forgetting):
    # lam = 3 won the validation sweep over 1, 3 on this stream
    m = forgetting_of("lwf", {"lam": 3})
    assert m["forgetting"] < finetune_forgetting - 0.02
