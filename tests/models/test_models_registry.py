"""The body registry: ``register_body`` makes a factory buildable by name (``build_model``
calls it with the model config and the input shape as a tuple, and keeps what it returns as
the shared body), the decorator hands the factory back unchanged, and the built-in ``mlp``
entry passes the config's widths and dropout on.

(Named test_models_registry.py, not test_registry.py: tests/ has no ``__init__.py`` files, so
two test modules of one basename, this and tests/methods/test_registry.py, cannot both be collected.)"""

import pytest
from torch import nn

from anpyc.config import ModelConfig
from anpyc.errors import ConfigError
from anpyc.models import build_model
from anpyc.models.registry import BODIES, register_body


def test_a_registered_body_is_built_by_name(monkeypatch):
    monkeypatch.setitem(BODIES, "test-tiny", None)  # removed again after the test
    calls = []

    def tiny(cfg, shape):
        calls.append((cfg.hidden, shape))
        return nn.Sequential(nn.Flatten(), nn.Linear(6, 5)), 5

    assert register_body("test-tiny")(tiny) is tiny
    model = build_model(ModelConfig(name="test-tiny", hidden=(3,)), [2, 3])
    assert calls == [((3,), (2, 3))]  # the input shape as a tuple, whatever it came as
    assert model.feature_dim == 5 and isinstance(model.body[1], nn.Linear) and model.body[1].out_features == 5
    assert model.add_head(2) == 0 and model.heads[0].in_features == 5


def test_an_unregistered_name_is_a_config_error_naming_the_known_bodies():
    with pytest.raises(ConfigError, match=r"unknown model 'mpl' \(did you mean 'mlp'\?\); known: .*cnn.*mlp"):
        build_model(ModelConfig(name="mpl"), (1, 4, 4))


def test_the_mlp_entry_passes_the_widths_and_the_dropout_on():
    body, features = BODIES["mlp"](ModelConfig(hidden=(6, 4), dropout=0.25), (1, 2, 2))
    linears = [m for m in body if isinstance(m, nn.Linear)]
    assert features == 4 and [(m.in_features, m.out_features) for m in linears] == [(4, 6), (6, 4)]
    assert [m.p for m in body if isinstance(m, nn.Dropout)] == [0.25, 0.25]
