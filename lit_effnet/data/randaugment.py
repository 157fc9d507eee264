"""RandAugment as in the papers' TF code (automl autoaugment.py), as an albumentations transform.

albumentations has no RandAugment and its ops are parameterised differently from TF's level scale, so
the 16 TF ops are written here on uint8 arrays with cv2/numpy. Per layer: one op drawn uniformly,
applied with probability U(0.2, 0.8), at the level `magnitude` on TF's 0-10 scale (above 10 is
stronger than the nominal maximum, as V2-L's 20). Two deliberate differences from the TF code:
Posterize and Solarize grow stronger with the level (TF's mapping weakens them, the inverse of the
RandAugment paper's intent), and Translate/Cutout are relative to the image (100 and 40 px at 224),
so progressive learning's small stages are not distorted more than its large ones.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from albumentations.core.transforms_interface import ImageOnlyTransform

MAX_LEVEL = 10.0
FILL = (128, 128, 128)  # TF's replace value for geometric ops and cutout
TRANSLATE_FRACTION = 100 / 224  # TF translate_const 100 px at 224
CUTOUT_FRACTION = 40 / 224  # TF cutout_const 40 px at 224


def _blend(degenerate: np.ndarray, image: np.ndarray, factor: float) -> np.ndarray:
    """PIL ImageEnhance: degenerate + factor * (image - degenerate), clipped to uint8."""
    out = degenerate.astype(np.float32) + factor * (image.astype(np.float32) - degenerate)
    return np.clip(out, 0, 255).astype(np.uint8)


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _affine(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=FILL)


def auto_contrast(image: np.ndarray, _: float) -> np.ndarray:
    lo, hi = image.min(axis=(0, 1), keepdims=True), image.max(axis=(0, 1), keepdims=True)
    scale = np.where(hi > lo, 255.0 / np.maximum(hi - lo, 1), 1.0)
    return np.where(hi > lo, (image - lo) * scale, image).clip(0, 255).astype(np.uint8)


def equalize(image: np.ndarray, _: float) -> np.ndarray:
    return np.stack([cv2.equalizeHist(np.ascontiguousarray(image[..., c])) for c in range(3)], axis=-1)


def invert(image: np.ndarray, _: float) -> np.ndarray:
    return 255 - image


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    return _affine(image, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0))


def posterize(image: np.ndarray, shift: float) -> np.ndarray:
    shift = int(min(max(shift, 0), 7))  # keep at least one bit
    return (image >> shift) << shift


def solarize(image: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(image < threshold, image, 255 - image).astype(np.uint8)


def solarize_add(image: np.ndarray, addition: float) -> np.ndarray:
    added = np.clip(image.astype(np.int16) + int(addition), 0, 255).astype(np.uint8)
    return np.where(image < 128, added, image)


def color(image: np.ndarray, factor: float) -> np.ndarray:
    return _blend(np.repeat(_gray(image)[..., None], 3, axis=-1), image, factor)


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    return _blend(np.full_like(image, int(_gray(image).mean())), image, factor)


def brightness(image: np.ndarray, factor: float) -> np.ndarray:
    return _blend(np.zeros_like(image), image, factor)


def sharpness(image: np.ndarray, factor: float) -> np.ndarray:
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13.0
    smooth = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    smooth[0, :], smooth[-1, :], smooth[:, 0], smooth[:, -1] = image[0, :], image[-1, :], image[:, 0], image[:, -1]
    return _blend(smooth, image, factor)


def shear_x(image: np.ndarray, shear: float) -> np.ndarray:
    return _affine(image, np.array([[1, shear, 0], [0, 1, 0]], np.float32))


def shear_y(image: np.ndarray, shear: float) -> np.ndarray:
    return _affine(image, np.array([[1, 0, 0], [shear, 1, 0]], np.float32))


def translate_x(image: np.ndarray, fraction: float) -> np.ndarray:
    return _affine(image, np.array([[1, 0, fraction * image.shape[1]], [0, 1, 0]], np.float32))


def translate_y(image: np.ndarray, fraction: float) -> np.ndarray:
    return _affine(image, np.array([[1, 0, 0], [0, 1, fraction * image.shape[0]]], np.float32))


# op -> (function, level -> argument, argument negated at random)
OPS: dict[str, tuple[Any, Any, bool]] = {
    "AutoContrast": (auto_contrast, lambda level: 0.0, False),
    "Equalize": (equalize, lambda level: 0.0, False),
    "Invert": (invert, lambda level: 0.0, False),
    "Rotate": (rotate, lambda level: level / MAX_LEVEL * 30.0, True),
    "Posterize": (posterize, lambda level: level / MAX_LEVEL * 4.0, False),
    "Solarize": (solarize, lambda level: 256.0 - level / MAX_LEVEL * 256.0, False),
    "Color": (color, lambda level: level / MAX_LEVEL * 1.8 + 0.1, False),
    "Contrast": (contrast, lambda level: level / MAX_LEVEL * 1.8 + 0.1, False),
    "Brightness": (brightness, lambda level: level / MAX_LEVEL * 1.8 + 0.1, False),
    "Sharpness": (sharpness, lambda level: level / MAX_LEVEL * 1.8 + 0.1, False),
    "ShearX": (shear_x, lambda level: level / MAX_LEVEL * 0.3, True),
    "ShearY": (shear_y, lambda level: level / MAX_LEVEL * 0.3, True),
    "TranslateX": (translate_x, lambda level: level / MAX_LEVEL * TRANSLATE_FRACTION, True),
    "TranslateY": (translate_y, lambda level: level / MAX_LEVEL * TRANSLATE_FRACTION, True),
    "Cutout": (None, lambda level: level / MAX_LEVEL * CUTOUT_FRACTION, False),
    "SolarizeAdd": (solarize_add, lambda level: level / MAX_LEVEL * 110.0, False),
}


def cutout(image: np.ndarray, half_fraction: float, center: tuple[float, float]) -> np.ndarray:
    """A grey square of side 2 * half_fraction * size around a relative centre (TF cutout)."""
    h, w = image.shape[:2]
    pad = round(half_fraction * min(h, w))
    cy, cx = int(center[0] * h), int(center[1] * w)
    out = image.copy()
    out[max(cy - pad, 0) : cy + pad, max(cx - pad, 0) : cx + pad] = FILL
    return out


class RandAugment(ImageOnlyTransform):
    """`num_ops` TF RandAugment layers at `magnitude` (0-10 scale; 0 turns the transform off)."""

    def __init__(self, num_ops: int = 2, magnitude: float = 10.0, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.num_ops, self.magnitude = num_ops, float(magnitude)

    def get_params(self) -> dict[str, Any]:
        layers = []
        if self.magnitude > 0:
            names = list(OPS)
            for _ in range(self.num_ops):
                name = names[self.py_random.randrange(len(names))]
                if self.py_random.random() >= self.py_random.uniform(0.2, 0.8):
                    continue  # TF applies the drawn op with probability U(0.2, 0.8)
                _, level_to_arg, signed = OPS[name]
                arg = level_to_arg(self.magnitude)
                if signed and self.py_random.random() < 0.5:
                    arg = -arg
                center = (self.py_random.random(), self.py_random.random())
                layers.append((name, arg, center))
        return {"layers": layers}

    def apply(self, img: np.ndarray, layers: list = (), **params: Any) -> np.ndarray:
        for name, arg, center in layers:
            img = cutout(img, arg, center) if name == "Cutout" else OPS[name][0](img, arg)
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("num_ops", "magnitude")
