import pytest
import torch

from anpyc.data.transforms import Compose, Normalize, RandomCropFlip, channel_stats


def _images(n=16, c=3, side=8, seed=0):
    return torch.randint(0, 256, (n, c, side, side), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_channel_stats_match_direct_computation_on_selected_rows():
    x = _images(40)
    rows = torch.arange(0, 40, 3)
    mean, std = channel_stats(x, rows, chunk=5)  # several chunks
    ref = x[rows].double() / 255.0
    torch.testing.assert_close(mean, ref.mean(dim=(0, 2, 3)).float())
    torch.testing.assert_close(std, ref.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False).float())


def test_normalize_gives_zero_mean_unit_std_per_channel():
    x = _images(64)
    out = Normalize(*channel_stats(x))(x.float() / 255.0)
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="positive"):
        Normalize([0.0], [0.0])


def test_crop_flip_is_a_shifted_window_or_its_mirror():
    x = torch.rand(32, 2, 6, 6)
    aug = RandomCropFlip(2, generator=torch.Generator().manual_seed(1))
    out = aug(x)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    seen_flip, seen_shift = False, False
    for i in range(len(x)):
        matches = [
            (dy, dx, f)
            for dy in range(5)
            for dx in range(5)
            for f in (False, True)
            if torch.equal(out[i], (lambda w: w.flip(-1) if f else w)(padded[i, :, dy : dy + 6, dx : dx + 6]))
        ]
        assert matches, f"example {i} is not a crop of its padded input"
        seen_flip |= any(f for _, _, f in matches) and not any(not f for _, _, f in matches)
        seen_shift |= all((dy, dx) != (2, 2) for dy, dx, _ in matches)
    assert seen_flip and seen_shift


def test_crop_flip_reproducible_from_its_seed_and_identity_without_padding_or_flip():
    x = torch.rand(8, 3, 8, 8)
    a = RandomCropFlip(4, generator=torch.Generator().manual_seed(3))
    b = RandomCropFlip(4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a(x), b(x)) and torch.equal(a(x), b(x))
    assert not torch.equal(a(x), a(x))  # fresh draws per batch
    assert torch.equal(RandomCropFlip(0, flip=False)(x), x)


def test_compose_applies_in_order():
    x = torch.ones(2, 1, 2, 2)
    tf = Compose([lambda v: v * 3, Normalize([1.0], [2.0])])
    assert torch.equal(tf(x), torch.ones(2, 1, 2, 2))
