"""Mixup and CutMix as the official code mixes a batch: halves, mirrors, max(l, 1 - l), labels by area."""

import numpy as np
import pytest
import torch

from lit_effnet.training.mixing import Mixing

N, C, SIZE = 8, 5, 16


def batch():
    # Image i is constant i + 1, so every pixel tells which images it came from.
    images = torch.arange(1, N + 1, dtype=torch.float32).view(N, 1, 1, 1).expand(N, 3, SIZE, SIZE).clone()
    return images, torch.arange(N) % C


def test_both_on_mixes_the_first_half_with_mixup_and_the_second_with_cutmix_each_with_its_mirror():
    np.random.seed(0)
    images, labels = batch()
    mixed, targets = Mixing(C, mixup_alpha=0.8, cutmix_alpha=1.0)(images, labels)
    half = N // 2
    for i in range(half):  # mixup: blend of image i and image half-1-i, the own share >= 0.5
        partner = half - 1 - i
        lam = (mixed[i, 0, 0, 0] - (partner + 1)) / ((i + 1) - (partner + 1))
        assert torch.allclose(mixed[i], lam * images[i] + (1 - lam) * images[partner])
        assert 0.5 <= lam <= 1.0
        assert targets[i, labels[i]] == pytest.approx(float(lam), abs=1e-5)
    for i in range(half, N):  # CutMix: pixels are either the own image's or the mirror's; labels by area
        partner = N - 1 - (i - half)
        values = set(mixed[i].unique().tolist())
        assert values <= {float(i + 1), float(partner + 1)}
        kept = float((mixed[i] == i + 1).float().mean())
        assert targets[i, labels[i]] == pytest.approx(kept, abs=1e-5)
        assert targets[i, labels[partner]] == pytest.approx(1 - kept, abs=1e-5)
    assert torch.allclose(targets.sum(1), torch.ones(N))


def test_one_of_them_alone_mixes_the_whole_batch():
    np.random.seed(1)
    images, labels = batch()
    mixed, _ = Mixing(C, mixup_alpha=0.5)(images, labels)
    assert not torch.equal(mixed[-1], images[-1])  # the second half is blended too
    assert all(len(mixed[i].unique()) == 1 for i in range(N))  # mixup: each image stays uniform
    mixed, _ = Mixing(C, cutmix_alpha=1.0)(images, labels)
    assert any(len(mixed[i].unique()) == 2 for i in range(N // 2))  # CutMix in the first half too


def test_cutmix_boxes_follow_the_official_rule_side_sqrt_1_minus_area():
    # Beta(1, 1): the box side is s = sqrt(u) of the image, u ~ U(0, 1), centred uniformly and clipped. Per axis
    # the expected covered fraction is s - s^2 / 4, so the expected replaced area is
    # E[(s - s^2/4)^2] = E[u] - E[u^1.5] / 2 + E[u^2] / 16 = 1/2 - 1/5 + 1/48 = 0.321 (less a little for the
    # integer box sides).
    np.random.seed(2)
    images = torch.zeros(4000, 1, 32, 32)
    images[::2] = 1.0  # mirrors differ: image i is 0 or 1, its mirror (3999 - i) the other
    labels = (torch.arange(4000) + 1) % 2  # image i's label says whether it is 1 or 0
    mixed, targets = Mixing(2, cutmix_alpha=1.0)(images, labels)
    replaced = (mixed != images).float().mean((1, 2, 3))
    assert float(replaced.mean()) == pytest.approx(0.321, abs=0.03)
    assert torch.allclose(1 - replaced, targets[torch.arange(4000), labels], atol=1e-5)


def test_each_cutmix_box_is_rows_and_columns_centre_minus_half_to_centre_plus_half_clipped_to_the_image():
    # The draws by hand, in the order the official code makes them: area ~ Beta(a, a), then the centre row and
    # column uniformly over the whole image; half side = int(sqrt(1 - area) * size) // 2, clipped at 0 and size.
    n, h, w = 64, 12, 20
    np.random.seed(14)
    area = np.random.beta(0.6, 0.6, n)
    cy, cx = np.random.randint(0, h, n), np.random.randint(0, w, n)
    np.random.seed(14)
    images = torch.zeros(n, 1, h, w)
    images[: n // 2] = 1.0  # every image differs from its mirror (n - 1 - i)
    mixed, _ = Mixing(2, cutmix_alpha=0.6)(images, torch.zeros(n, dtype=torch.long))
    clipped = empty = 0
    for i in range(n):
        side = np.sqrt(np.float32(1.0 - area[i]))
        half_h, half_w = int(np.float32(side * h)) // 2, int(np.float32(side * w)) // 2
        top, bottom = max(0, cy[i] - half_h), min(h, cy[i] + half_h)
        left, right = max(0, cx[i] - half_w), min(w, cx[i] + half_w)
        expected = torch.zeros(h, w, dtype=torch.bool)
        expected[top:bottom, left:right] = True
        assert torch.equal(mixed[i, 0] != images[i, 0], expected), i
        clipped += top == 0 or left == 0
        empty += bool(half_h == 0 and cy[i] == 0) + bool(half_w == 0 and cx[i] == 0)
    assert clipped > 5  # boxes cut by the top or left border were among them
    assert empty >= 2  # and boxes of no height (width) on the first row (column): they replace nothing


def test_a_box_under_two_pixels_wide_replaces_nothing_however_tall_also_on_the_first_column():
    # half width = int(side * 2) // 2 = 0 for every side < 1, so each box of a 2-pixel-wide image is empty;
    # where the centre column is 0 the box's right edge is clipped to 0, not widened to one column.
    n, h, w = 32, 24, 2
    np.random.seed(3)
    area = np.random.beta(1.0, 1.0, n)
    _, cx = np.random.randint(0, h, n), np.random.randint(0, w, n)
    half_h = (np.sqrt(1.0 - area) * h).astype(int) // 2
    assert ((cx == 0) & (half_h > 0)).sum() >= 5  # boxes with height on the first column are among them
    np.random.seed(3)
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, h, w).clone()
    mixed, targets = Mixing(2, cutmix_alpha=1.0)(images, torch.zeros(n, dtype=torch.long))
    assert torch.equal(mixed, images)
    assert torch.equal(targets, torch.tensor([[1.0, 0.0]]).expand(n, 2))  # all of each image kept: label 0 alone


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mixed_images_and_targets_keep_the_batchs_dtype(mixup, cutmix):
    images, labels = batch()
    np.random.seed(0)
    mixed, targets = Mixing(C, mixup_alpha=mixup, cutmix_alpha=cutmix)(images.bfloat16(), labels)
    assert mixed.dtype == targets.dtype == torch.bfloat16  # bf16-true runs: no float32 batch sneaks in
