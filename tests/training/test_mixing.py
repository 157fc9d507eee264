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
