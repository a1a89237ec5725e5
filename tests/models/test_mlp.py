"""The MLP body: the input flattened whatever its shape, a Linear + ReLU per hidden width (a
Dropout after each only when asked), and the last width as the feature size."""

import torch
from torch import nn

from anpyc.models.mlp import mlp_body


def test_the_body_flattens_then_one_linear_and_relu_per_width():
    body, features = mlp_body((3, 4, 5), (16, 7))
    assert features == 7
    assert [type(m) for m in body] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU]
    assert (body[1].in_features, body[1].out_features, body[3].in_features) == (60, 16, 16)


def test_the_output_is_the_feature_size_and_non_negative():
    body, features = mlp_body((2, 3), (5,))
    out = body(torch.randn(4, 2, 3))
    assert out.shape == (4, features) and bool((out >= 0).all())  # the last layer's ReLU


def test_dropout_follows_each_relu_only_when_asked():
    plain, _ = mlp_body((4,), (8, 8))
    assert not any(isinstance(m, nn.Dropout) for m in plain)
    body, _ = mlp_body((4,), (8, 8), dropout=0.3)
    assert [type(m) for m in body] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout]
    assert all(m.p == 0.3 for m in body if isinstance(m, nn.Dropout))


def test_a_flat_input_shape_is_taken_as_it_is():
    body, features = mlp_body((10,), (3,))
    assert body[1].in_features == 10 and body(torch.zeros(2, 10)).shape == (2, 3)
