import numpy as np
import pytest
import torch

from anpyc.data import sources
from anpyc.errors import DataError
from anpyc.generative.evaluation import (
    ClassifierKey,
    accuracy,
    dataset_of,
    frechet_distance,
    load_or_train_classifier,
    predict,
    recognition_share,
    train_classifier,
)


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # b = 2a + 1 has covariance 4 S (commutes with S): FD = |mu_a - mu_b|^2 + Tr(S)
    b = 2 * a + 1
    s = np.cov(a, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError):
        frechet_distance(a, a[:, :3])


@pytest.fixture(scope="module")
def small_judge():
    """A quickly trained MLP judge on a 3000-image MNIST subsample, with test images."""
    status = sources.verify(sources.MNIST)
    if not all(v == "ok" for v in status.values()):
        pytest.skip("MNIST not fetched")
    arrays = sources.load("mnist")
    idx = np.random.default_rng(0).permutation(60000)[:3000]
    clf = train_classifier(arrays["train_x"][idx], arrays["train_y"][idx].astype(np.int64), "mlp", epochs=2, seed=0)
    test_x = torch.from_numpy(arrays["test_x"][:2000]).float().div(255).unsqueeze(1)
    test_y = torch.from_numpy(arrays["test_y"][:2000].astype(np.int64))
    return clf, test_x, test_y


def test_recognition_of_real_images_is_the_classifier_accuracy(small_judge):
    clf, x, y = small_judge
    acc = accuracy(clf, x, y)
    assert acc > 0.75
    shares = [recognition_share(clf, x[y == c], c) for c in range(10)]
    weights = np.array([(y == c).sum().item() for c in range(10)]) / len(y)
    # per-class shares weighted by class frequency are exactly the accuracy; the plain mean is close
    assert float(np.dot(shares, weights)) == pytest.approx(acc, abs=1e-6)
    assert abs(float(np.mean(shares)) - acc) < 0.03


def test_recognition_of_noise_is_chance_and_its_distance_is_large(small_judge):
    clf, x, y = small_judge
    g = torch.Generator().manual_seed(0)
    shares = [recognition_share(clf, torch.rand(300, 1, 28, 28, generator=g), c) for c in range(10)]
    assert abs(float(np.mean(shares)) - 0.1) < 0.05
    real_a = predict(clf, x[:1000][y[:1000] == 3])[1]
    real_b = predict(clf, x[1000:][y[1000:] == 3])[1]
    noise = predict(clf, torch.rand(100, 1, 28, 28, generator=g))[1]
    assert frechet_distance(real_a, noise) > 5 * frechet_distance(real_a, real_b)


def test_classifier_is_cached_per_key_in_the_data_dir(private_mnist_dir, caplog):
    clf, info = load_or_train_classifier("mnist", private_mnist_dir, "mlp", epochs=1, seed=0, subsample=500)
    assert not info["cached"] and info["path"].endswith(ClassifierKey("mnist", "mlp", 1, 0, 500).filename)
    assert info["path"].startswith(private_mnist_dir) and 0.5 < info["test_acc"] <= 1.0
    again, info2 = load_or_train_classifier("mnist", private_mnist_dir, "mlp", epochs=1, seed=0, subsample=500)
    assert info2["cached"] and info2["test_acc"] == info["test_acc"]
    probe = torch.rand(20, 1, 28, 28)
    assert torch.equal(predict(clf, probe)[0], predict(again, probe)[0])
    other, info3 = load_or_train_classifier("mnist", private_mnist_dir, "mlp", epochs=1, seed=1, subsample=500)
    assert not info3["cached"] and info3["path"] != info["path"]
    with open(info["path"], "wb") as fh:  # a damaged cache is retrained, not trusted
        fh.write(b"garbage")
    _, info4 = load_or_train_classifier("mnist", private_mnist_dir, "mlp", epochs=1, seed=0, subsample=500)
    assert not info4["cached"] and "unreadable" in caplog.text


def test_generative_runs_need_a_split_benchmark():
    assert dataset_of("split-fashion-mnist") == "fashion-mnist"
    with pytest.raises(DataError, match="split benchmark"):
        dataset_of("permuted-mnist")
