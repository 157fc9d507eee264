"""Cluttered digits: an embedded proxy task on which resolution, depth and width each matter.

The 8x8 digit scans (`data.name: digits`) say nothing about resolution and saturate near 99%. Here one
scan, upscaled to a small digit (`DIGIT_SIZE` px), sits near the middle (`JITTER`) of a larger canvas
(`canvas` px, 48 by default) over a dim crop of one of scikit-learn's two bundled photographs, among
`NUM_FRAGMENTS` fragments of other scans drawn at the same scale. The label is the whole digit's class.

- Resolution: the digit covers 6-11% of the canvas, so resizing the canvas below its size blurs the
  strokes that tell e.g. 3 from 8 from 9 (at 32 px the digit is 8-11 px, at 24 px 6-8 px).
- Width and depth: fragments look like pieces of digits; telling the one whole digit from them and
  from the photo texture is meant to take capacity, and small models stay well below 100% top-1.

Everything is generated in memory from data inside scikit-learn (no download, no new dependency) with
a fixed seed. Train and val canvases are drawn from disjoint scans: the same stratified split as
`load_digits_splits`, so a model trained on `digits` never saw a proxy val digit either.
"""

from __future__ import annotations

import cv2
import numpy as np

DIGIT_SIZE = (12, 16)  # side of the target digit in px on the canvas, drawn uniformly (inclusive)
NUM_FRAGMENTS = (1, 3)  # distractors per canvas (inclusive)
FRAGMENT_SIDE = (3, 5)  # a distractor is a random window of this many scan pixels (of 8) per side
BACKGROUND_GAIN = (0.1, 0.25)  # the photo is scaled to this fraction of its brightness ...
BACKGROUND_CONTRAST = 0.6  # ... and its contrast around its mean
INK_LEVEL = (150, 255)  # per-channel colour of a digit's or fragment's strokes
MARGIN = 1 / 8  # the target stays this fraction of the canvas away from each edge (random crops keep it)
# The target's position is drawn within this fraction of the room between the margins, around the middle: a
# digit anywhere on the canvas is a search that small models learn too slowly for CPU-sized studies.
JITTER = 0.25
SCAN_SIZE = 8  # the scans are 8x8


def digit_scans() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digit scans as float alpha masks in [0, 1] (N, 8, 8), and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def scan_split(labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and val scans: the stratified split `load_digits_splits` uses."""
    from sklearn.model_selection import train_test_split

    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, random_state=seed, stratify=labels
    )
    return np.sort(train_idx), np.sort(val_idx)


def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)  # two 427x640 uint8 RGB photos


def _background(rng: np.random.Generator, photos: list[np.ndarray], canvas: int) -> np.ndarray:
    photo = photos[rng.integers(len(photos))]
    side = int(rng.integers(canvas, 3 * canvas + 1))  # a crop of 1-3 canvas sides, resized: varied texture scales
    top, left = rng.integers(photo.shape[0] - side + 1), rng.integers(photo.shape[1] - side + 1)
    crop = photo[top : top + side, left : left + side]
    crop = cv2.resize(crop, (canvas, canvas), interpolation=cv2.INTER_AREA).astype(np.float32)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    mean = crop.mean(axis=(0, 1), keepdims=True)
    return rng.uniform(*BACKGROUND_GAIN) * (mean + BACKGROUND_CONTRAST * (crop - mean))


def _stamp(image: np.ndarray, alpha: np.ndarray, top: int, left: int, ink: np.ndarray) -> None:
    """Blend strokes `alpha` (h, w) of colour `ink` into `image` at (top, left), clipped to the canvas."""
    h, w = alpha.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, image.shape[0]), min(left + w, image.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    a = alpha[y0 - top : y1 - top, x0 - left : x1 - left, None]
    image[y0:y1, x0:x1] = (1 - a) * image[y0:y1, x0:x1] + a * ink


def _canvases(
    rng: np.random.Generator,
    scans: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    count: int,
    canvas: int,
    photos: list[np.ndarray],
) -> tuple[np.ndarray, list[int], np.ndarray]:
    images = np.empty((count, canvas, canvas, 3), dtype=np.uint8)
    targets = pool[np.arange(count) % len(pool)]  # every scan of the pool used as often as the others
    rng.shuffle(targets)
    margin = round(MARGIN * canvas)
    for n, target in enumerate(targets):
        image = _background(rng, photos, canvas)
        size = int(rng.integers(DIGIT_SIZE[0], DIGIT_SIZE[1] + 1))
        scale = size / SCAN_SIZE
        for _ in range(rng.integers(NUM_FRAGMENTS[0], NUM_FRAGMENTS[1] + 1)):
            scan = scans[pool[rng.integers(len(pool))]]
            fh, fw = rng.integers(FRAGMENT_SIDE[0], FRAGMENT_SIDE[1] + 1, size=2)
            fy, fx = rng.integers(0, SCAN_SIZE - fh + 1), rng.integers(0, SCAN_SIZE - fw + 1)
            out = (max(round(fw * scale), 1), max(round(fh * scale), 1))
            piece = cv2.resize(scan[fy : fy + fh, fx : fx + fw], out, interpolation=cv2.INTER_LINEAR)
            ty, tx = rng.integers(-out[1] // 2, canvas - out[1] // 2, size=2)
            _stamp(image, piece, int(ty), int(tx), rng.uniform(*INK_LEVEL, size=3))
        digit = cv2.resize(scans[target], (size, size), interpolation=cv2.INTER_LINEAR)
        room = canvas - 2 * margin - size  # top-left positions margin .. margin + room
        low = margin + round(room * (1 - JITTER) / 2)
        ty, tx = rng.integers(low, low + round(room * JITTER) + 1, size=2)
        _stamp(image, digit, int(ty), int(tx), rng.uniform(*INK_LEVEL, size=3))
        images[n] = np.clip(np.rint(image), 0, 255)
    return images, labels[targets].tolist(), targets


def cluttered_digits_with_scans(
    num_train: int = 4000, num_val: int = 1000, canvas: int = 48, seed: int = 0
) -> tuple[np.ndarray, list[int], np.ndarray, list[int], np.ndarray, np.ndarray]:
    """`cluttered_digits` plus, per canvas, the index of its target scan in `load_digits()` (train, val)."""
    if canvas < 2 * round(MARGIN * canvas) + DIGIT_SIZE[1]:
        raise ValueError(f"canvas {canvas} px is too small for a {DIGIT_SIZE[1]} px digit and its margins")
    scans, labels = digit_scans()
    train_pool, val_pool = scan_split(labels)
    photos = _photos()
    rng = np.random.default_rng(seed)
    train_images, train_labels, train_scans = _canvases(rng, scans, labels, train_pool, num_train, canvas, photos)
    val_images, val_labels, val_scans = _canvases(rng, scans, labels, val_pool, num_val, canvas, photos)
    return train_images, train_labels, val_images, val_labels, train_scans, val_scans


def cluttered_digits(
    num_train: int = 4000, num_val: int = 1000, canvas: int = 48, seed: int = 0
) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    """Train images (num_train, canvas, canvas, 3) uint8, their labels 0-9, val images, val labels.

    Train canvases use only the train scans of the digits split and val canvases only its val scans;
    distractor fragments come from the same side of the split as the canvas. Deterministic for a seed.
    """
    return cluttered_digits_with_scans(num_train, num_val, canvas, seed)[:4]
