"""Small shared helpers: ``eval_mode`` restoring every submodule's mode (an exception too),
``seed_everything`` seeding python, numpy and torch (deterministic kernels asked on CUDA
only), ``seeded_generator`` giving one stream per (seed, salt) without touching the global
RNG, ``peak_rss_mb`` in MiB, and ``buffer_key`` turning a parameter name into a buffer name."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from anpyc import utils
from anpyc.utils import buffer_key, eval_mode, peak_rss_mb, seed_everything, seeded_generator


def test_eval_mode_yields_the_model_and_restores_the_modes_after_an_exception():
    model = nn.Sequential(nn.Dropout(), nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2)))
    model[1][1].eval()  # one submodule left in eval mode on purpose
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(model) as inside:
            assert inside is model and not any(m.training for m in model.modules())
            raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == [True, True, True, True, False]


def test_seed_everything_repeats_python_numpy_and_torch_draws():
    def draws(seed):
        seed_everything(seed)
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    assert draws(5) == draws(5)
    assert all(a != b for a, b in zip(draws(5), draws(6)))  # each library seeded, not one of them


def test_seed_everything_takes_a_seed_beyond_numpys_32_bits():
    seed_everything(2**40 + 7)  # numpy refuses seeds >= 2**32; torch takes it as it is
    a = float(np.random.rand())
    seed_everything(7)
    assert float(np.random.rand()) == a  # numpy gets the seed modulo 2**32


def test_deterministic_kernels_are_asked_on_cuda_only(monkeypatch):
    # the switch costs every process seconds of imports, and the CPU kernels are deterministic
    asked = []
    monkeypatch.setattr(utils.torch, "use_deterministic_algorithms", lambda *a, **kw: asked.append((a, kw)))
    seed_everything(0, "cpu")
    seed_everything(0, torch.device("cpu"))
    assert asked == []
    seed_everything(0, "cuda:1")  # only the device's type is read: no GPU is needed for this
    assert asked == [((True,), {"warn_only": True})]


def test_seeded_generator_one_stream_per_seed_and_salt():
    def first(*key):
        return torch.rand(4, generator=seeded_generator(*key))

    assert torch.equal(first(0, 1, 2), first(0, 1, 2))
    others = [first(1, 1, 2), first(0, 2, 2), first(0, 1, 3), first(0, 2, 1)]  # the order of the salts counts
    assert all(not torch.equal(first(0, 1, 2), o) for o in others)


def test_seeded_generator_leaves_the_global_generator_alone():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    seeded_generator(3, 4).manual_seed(5)
    torch.rand(2, generator=seeded_generator(3, 4))
    assert torch.equal(torch.rand(3), expected)


def test_seeded_generator_takes_negative_and_large_seeds():
    assert torch.equal(torch.rand(2, generator=seeded_generator(-1)), torch.rand(2, generator=seeded_generator(2**32 - 1)))
    seeded_generator(2**63 - 1, 7)  # no overflow: the seed is cut to 32 bits before mixing


@pytest.mark.parametrize("platform, kib_or_bytes, mib", [("linux", 3 * 1024, 3.0), ("darwin", 3 * 1024 * 1024, 3.0)])
def test_peak_rss_is_in_mib_on_linux_and_macos(monkeypatch, platform, kib_or_bytes, mib):
    # getrusage reports KiB on Linux, bytes on macOS
    monkeypatch.setattr(utils.sys, "platform", platform)
    monkeypatch.setattr(utils.resource, "getrusage", lambda who: type("Usage", (), {"ru_maxrss": kib_or_bytes})())
    assert peak_rss_mb() == mib


def test_peak_rss_of_this_process_is_plausible():
    assert 10 < peak_rss_mb() < 1024 * 1024  # torch is loaded: tens of MiB at least, and not a KiB count


def test_buffer_key_has_no_dots_and_keeps_names_apart():
    key = buffer_key("fisher", "body.0.weight")
    assert key == "fisher__body__0__weight"
    nn.Module().register_buffer(key, torch.zeros(1))  # a dot would be refused here
    assert buffer_key("fisher", "body.0.weight") != buffer_key("anchor", "body.0.weight")
    assert buffer_key("fisher", "body.0.weight") != buffer_key("fisher", "body.1.weight")
