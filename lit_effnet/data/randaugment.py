"""RandAugment as the official EfficientNetV2 code applies it, as an albumentations transform on uint8 HxWx3.

The official code (automl efficientnetv2/autoaugment.py, distort_image_with_randaugment), docs/facts.md
section 4: each of `num_ops` layers draws one of 16 ops uniformly (with replacement) and always applies it, at the
level `magnitude` on TF's 0..10 scale (above 10 is allowed, as V2's Table 6 magnitudes 15-25). albumentations has
no such transform and parameterises its ops differently, so the TF ops are written here with numpy/cv2.
The per-op table (level -> argument, above level 10, fill, TF and timm): docs/randaugment.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import cv2
import numpy as np
from albumentations.core.transforms_interface import ImageOnlyTransform

MAX_LEVEL = 10.0
FILL = 128  # the official code's replace value: empty pixels of geometric ops, and the cutout square


class AugmentParams(NamedTuple):
    """The official code's augmentation_params for RandAugment, in absolute pixels (tuned for 224-300 px)."""

    translate_const: float = 100.0
    cutout_const: float = 40.0


# --- colour ops -------------------------------------------------------------------------------------------------


def _blend(degenerate: np.ndarray, image: np.ndarray, factor: float) -> np.ndarray:
    """TF blend: degenerate + factor * (image - degenerate) in float32, clipped, truncated to uint8."""
    low = degenerate.astype(np.float32)
    out = low + np.float32(factor) * (image.astype(np.float32) - low)
    return np.clip(out, 0.0, 255.0).astype(np.uint8)


def _grayscale(image: np.ndarray) -> np.ndarray:
    """tf.image.rgb_to_grayscale on uint8: luma of the [0, 1] image, back to uint8 by truncating x * 255.5."""
    luma = (image.astype(np.float32) * np.float32(1 / 255)) @ np.float32([0.2989, 0.5870, 0.1140])
    return (luma * np.float32(255.5)).astype(np.uint8)


def auto_contrast(image: np.ndarray, _: float = 0.0) -> np.ndarray:
    """Per channel, stretch [min, max] to [0, 255] (a flat channel stays as it is)."""
    out = image.copy()
    for c in range(image.shape[-1]):
        lo, hi = np.float32(image[..., c].min()), np.float32(image[..., c].max())
        if hi > lo:
            scale = np.float32(255.0) / (hi - lo)
            stretched = image[..., c].astype(np.float32) * scale - lo * scale
            out[..., c] = np.clip(stretched, 0.0, 255.0).astype(np.uint8)
    return out


def equalize(image: np.ndarray, _: float = 0.0) -> np.ndarray:
    """Per channel, PIL's histogram equalisation (the official code's port of ImageOps.equalize)."""
    out = image.copy()
    for c in range(image.shape[-1]):
        hist = np.bincount(image[..., c].ravel(), minlength=256)
        nonzero = hist[hist > 0]
        step = (nonzero.sum() - nonzero[-1]) // 255
        if step:  # a channel with one grey level (or nearly) stays as it is
            lut = (np.cumsum(hist) + step // 2) // step
            lut = np.clip(np.concatenate([[0], lut[:-1]]), 0, 255).astype(np.uint8)
            out[..., c] = lut[image[..., c]]
    return out


def invert(image: np.ndarray, _: float = 0.0) -> np.ndarray:
    return 255 - image


def posterize(image: np.ndarray, bits: float) -> np.ndarray:
    """Keep the top `bits` bits. TF's shift kernels clamp the shift to 7, so 0 bits (level < 2.5) keeps 1 bit;
    8 or more bits (level >= 20) is the identity (more than 8 would be a negative shift: docs/randaugment.md)."""
    shift = min(8 - int(bits), 7)
    if shift <= 0:
        return image
    return (image >> shift) << shift


def solarize(image: np.ndarray, threshold: float) -> np.ndarray:
    """Invert the pixels at or above `threshold`. A threshold above 255 (level >= 10) changes nothing, where the
    official code's uint8 cast wraps it modulo 256 (docs/randaugment.md)."""
    return np.where(image.astype(np.int32) < threshold, image, 255 - image)


def solarize_add(image: np.ndarray, addition: float) -> np.ndarray:
    """Add `addition` to the pixels below 128, clipping at 255."""
    added = np.clip(image.astype(np.int32) + int(addition), 0, 255).astype(np.uint8)
    return np.where(image < 128, added, image)


def color(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the image's grey version (factor 0: grey, 1: unchanged)."""
    return _blend(np.repeat(_grayscale(image)[..., None], 3, axis=-1), image, factor)


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with a constant grey, as the official code computes it: its "mean" is the sum of the grey
    histogram's counts over 256, i.e. (pixel count) / 256 clipped to 255, not the mean grey level (PIL's and
    timm's). Kept, since the papers trained with it: 64 at 128 px, 196 at 224 px, 255 from 256 px."""
    h, w = image.shape[:2]
    return _blend(np.full_like(image, int(min(h * w / 256.0, 255.0))), image, factor)


def brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with black."""
    return _blend(np.zeros_like(image), image, factor)


def sharpness(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with PIL's SMOOTH filter of the image; the one-pixel border keeps the image (the official code)."""
    kernel = np.float32([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / np.float32(13)
    smooth = cv2.filter2D(image.astype(np.float32), -1, kernel)
    degenerate = image.copy()
    degenerate[1:-1, 1:-1] = np.clip(smooth[1:-1, 1:-1], 0.0, 255.0).astype(np.uint8)
    return _blend(degenerate, image, factor)


# --- geometric ops ----------------------------------------------------------------------------------------------


def _transform(image: np.ndarray, matrix: list[list[float]]) -> np.ndarray:
    """tensorflow_addons' image transform as the official code calls it: output pixel (x, y) takes the input
    pixel nearest (std::round, half away from zero) to `matrix` @ (x, y, 1), computed in float32; pixels that
    land outside get FILL (the official wrap/unwrap)."""
    h, w = image.shape[:2]
    x, y = np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None]
    maps = []
    for a, b, c in np.asarray(matrix, np.float32):
        at = (a * x + b * y + c).astype(np.float64)
        maps.append(np.trunc(at + np.copysign(0.5, at)).astype(np.float32))
    # whole-pixel maps, so cv2's nearest lookup only gathers (and fills what falls outside)
    return cv2.remap(image, *maps, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=(FILL,) * 3)


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre, counterclockwise for positive degrees (tensorflow_addons' rotate)."""
    # in float32 as tensorflow_addons' angles_to_projective_transforms, so the nearest pixels match it exactly
    radians = np.float32(degrees * (math.pi / 180.0))
    cos, sin = np.cos(radians), np.sin(radians)
    h, w = (np.float32(n - 1) for n in image.shape[:2])
    x_offset = (w - (cos * w - sin * h)) / np.float32(2)
    y_offset = (h - (sin * w + cos * h)) / np.float32(2)
    return _transform(image, [[cos, -sin, x_offset], [sin, cos, y_offset]])


def shear_x(image: np.ndarray, shear: float) -> np.ndarray:
    """Output (x, y) takes input (x + shear * y, y)."""
    return _transform(image, [[1, shear, 0], [0, 1, 0]])


def shear_y(image: np.ndarray, shear: float) -> np.ndarray:
    """Output (x, y) takes input (x, y + shear * x)."""
    return _transform(image, [[1, 0, 0], [shear, 1, 0]])


def translate_x(image: np.ndarray, pixels: float) -> np.ndarray:
    """Output (x, y) takes input (x + pixels, y): positive moves the content left."""
    return _transform(image, [[1, 0, pixels], [0, 1, 0]])


def translate_y(image: np.ndarray, pixels: float) -> np.ndarray:
    """Output (x, y) takes input (x, y + pixels): positive moves the content up."""
    return _transform(image, [[1, 0, 0], [0, 1, pixels]])


def cutout(image: np.ndarray, pad_size: float, center: tuple[int, int]) -> np.ndarray:
    """A FILL square of side 2 * pad_size around the pixel `center` (row, column), clipped at the borders."""
    (cy, cx), pad = center, int(pad_size)
    out = image.copy()
    out[max(cy - pad, 0) : cy + pad, max(cx - pad, 0) : cx + pad] = FILL
    return out


# --- the official level -> argument mapping ---------------------------------------------------------------------


class Op(NamedTuple):
    """An op, its level -> argument mapping (the official level_to_arg), and whether the argument's sign is
    flipped with probability 0.5 (the official _randomly_negate_tensor)."""

    fn: Callable[..., np.ndarray]
    level_to_arg: Callable[[float, AugmentParams], float]
    signed: bool


def _no_arg(level: float, params: AugmentParams) -> float:
    return 0.0


def _enhance(level: float, params: AugmentParams) -> float:
    return level / MAX_LEVEL * 1.8 + 0.1  # 1.0 (the identity) at level 5


OPS: dict[str, Op] = {  # in the official code's order
    "AutoContrast": Op(auto_contrast, _no_arg, False),
    "Equalize": Op(equalize, _no_arg, False),
    "Invert": Op(invert, _no_arg, False),
    "Rotate": Op(rotate, lambda level, params: level / MAX_LEVEL * 30.0, True),
    "Posterize": Op(posterize, lambda level, params: int(level / MAX_LEVEL * 4), False),
    "Solarize": Op(solarize, lambda level, params: int(level / MAX_LEVEL * 256), False),
    "Color": Op(color, _enhance, False),
    "Contrast": Op(contrast, _enhance, False),
    "Brightness": Op(brightness, _enhance, False),
    "Sharpness": Op(sharpness, _enhance, False),
    "ShearX": Op(shear_x, lambda level, params: level / MAX_LEVEL * 0.3, True),
    "ShearY": Op(shear_y, lambda level, params: level / MAX_LEVEL * 0.3, True),
    "TranslateX": Op(translate_x, lambda level, params: level / MAX_LEVEL * params.translate_const, True),
    "TranslateY": Op(translate_y, lambda level, params: level / MAX_LEVEL * params.translate_const, True),
    "Cutout": Op(cutout, lambda level, params: int(level / MAX_LEVEL * params.cutout_const), False),
    "SolarizeAdd": Op(solarize_add, lambda level, params: int(level / MAX_LEVEL * 110), False),
}


Layer = tuple[str, float, dict[str, Any]]  # op name, its signed argument, extra keywords (Cutout's centre)


class RandAugment(ImageOnlyTransform):
    """`num_ops` layers, each one op drawn uniformly from OPS and always applied, at level `magnitude`
    (TF's 0..10 scale; 0 turns the transform off). `translate_const` and `cutout_const` are the official
    pixel sizes (100 px translate and a 40 px cutout half-side at level 10): lower them for small images."""

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: float = 10.0,
        p: float = 1.0,
        translate_const: float = 100.0,
        cutout_const: float = 40.0,
    ) -> None:
        super().__init__(p=p)
        self.num_ops, self.magnitude = num_ops, float(magnitude)
        self.translate_const, self.cutout_const = float(translate_const), float(cutout_const)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        consts = AugmentParams(self.translate_const, self.cutout_const)
        layers: list[Layer] = []
        for _ in range(self.num_ops if self.magnitude > 0 else 0):
            name = self.py_random.choice(list(OPS))  # the official code's per-op probability is drawn and unused
            op = OPS[name]
            arg = op.level_to_arg(self.magnitude, consts)
            if op.signed and self.py_random.random() < 0.5:
                arg = -arg
            # the official cutout centres its square on a uniform pixel: row, then column
            kwargs = {"center": (self.py_random.randrange(h), self.py_random.randrange(w))} if name == "Cutout" else {}
            layers.append((name, arg, kwargs))
        return {"layers": layers}

    def apply(self, img: np.ndarray, layers: Sequence[Layer] = (), **params: Any) -> np.ndarray:
        for name, arg, kwargs in layers:
            img = OPS[name].fn(img, arg, **kwargs)
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("num_ops", "magnitude", "translate_const", "cutout_const")
