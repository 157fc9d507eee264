"""Decode only the pixels a random-resized crop needs: JPEG DCT scaling chosen after the crop box is drawn.

The box is drawn first, on the full-resolution geometry read from the JPEG header, exactly as
albumentations' RandomResizedCrop draws it; then the JPEG is decoded at the largest reduction 1/2^k
that still leaves the box at least `size` pixels on both sides, and the box is resampled from it
with sub-pixel precision. Anything that is not a JPEG (PNG, in-memory CIFAR/digits arrays) takes the
full-resolution path, bit-identical to albumentations' crop-and-resize.

What it saves is bounded: DCT scaling shrinks the IDCT, chroma upsampling and colour conversion, not
the entropy decoding, which is over half of a quality-90 decode (`python -m lit_effnet.bench pipeline`
prints the decoder at each 1/2^k; bench/RESULTS.md section 2).

`load_rgb` is the whole-image decode (eval, prediction, CAMs); files stay encoded (`EncodedImage`,
`read_encoded`) until the train crop says how much of them to decode.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from io import BytesIO

import cv2
import numpy as np
from PIL import Image

from lit_effnet.errors import CorruptImageError


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes, read but not decoded, with its path for messages."""

    path: str
    data: bytes


Source = str | os.PathLike | bytes | EncodedImage | np.ndarray  # a file, its bytes, or an RGB array in memory
Rng = random.Random | np.random.Generator

MAX_REDUCTION = 3  # libjpeg's DCT scaling by 1/2^k goes down to k = 3 (1/8)
_REDUCED_FLAGS = {
    0: cv2.IMREAD_COLOR,
    1: cv2.IMREAD_REDUCED_COLOR_2,
    2: cv2.IMREAD_REDUCED_COLOR_4,
    3: cv2.IMREAD_REDUCED_COLOR_8,
}
# Markers that start a frame and carry its size: SOF0-SOF15 less DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def read_encoded(path: str | os.PathLike) -> EncodedImage:
    """The file's bytes, naming the file if it cannot be read (train splits' loader: decoding waits for the crop)."""
    try:
        with open(path, "rb") as f:
            return EncodedImage(str(path), f.read())
    except OSError as err:
        raise CorruptImageError(f"{path}: cannot read image ({err})") from None


@dataclass(frozen=True)
class CropBox:
    """A crop in full-resolution pixel coordinates: columns [x0, x1), rows [y0, y1) (albumentations' crop_coords)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


# ------------------------------------------------------------------ geometry, before any pixel is decoded


def jpeg_shape(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header, or None when `data` is not a JPEG.

    A walk over the marker segments up to the first SOF: a few microseconds, where PIL's lazy
    Image.open costs ~30 (`python -m lit_effnet.bench pipeline`, its header line).
    """
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None  # not at a marker: a damaged header; let the decoder report it
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _SOF_MARKERS:
            if pos + 9 > len(data):
                return None
            return int.from_bytes(data[pos + 5 : pos + 7], "big"), int.from_bytes(data[pos + 7 : pos + 9], "big")
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def image_shape(source: Source) -> tuple[int, int]:
    """(height, width) of an image without decoding its pixels (EXIF orientation ignored, as when decoding)."""
    if isinstance(source, np.ndarray):
        return source.shape[0], source.shape[1]
    data = _read(source)
    shape = jpeg_shape(data)
    if shape is not None:
        return shape
    try:
        with Image.open(BytesIO(data)) as image:  # lazy: reads the header only
            return image.height, image.width
    except (OSError, ValueError, SyntaxError) as err:
        raise CorruptImageError(f"{_name(source)}: cannot read image header ({type(err).__name__}: {err})") from None


def sample_crop_box(
    rng: Rng,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> CropBox:
    """The random-resized-crop box, drawn as albumentations 2.0.8's RandomResizedCrop draws it.

    Ten attempts of a uniform area fraction and a log-uniform aspect ratio (width / height); the
    first that fits is placed uniformly; otherwise the central crop clamped to `ratio`. Given a
    `random.Random` in the same state as that transform's `py_random`, the draws (and so the box)
    are the same call for call; a numpy Generator gives the same distribution.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = rng.uniform(scale[0] * area, scale[1] * area)
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_w, crop_h = round(math.sqrt(target_area * aspect)), round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            y0 = int((height - crop_h + 1) * rng.random())  # rows first, as albumentations' h_start, w_start
            x0 = int((width - crop_w + 1) * rng.random())
            return CropBox(x0, y0, x0 + crop_w, y0 + crop_h)
    in_ratio = width / height
    crop_w, crop_h = width, height
    if in_ratio < ratio[0]:
        crop_h = round(width / ratio[0])
    elif in_ratio > ratio[1]:
        crop_w = round(height * ratio[1])
    y0, x0 = (height - crop_h) // 2, (width - crop_w) // 2
    return CropBox(x0, y0, x0 + crop_w, y0 + crop_h)


def reduction_for(box: CropBox, size: int, max_reduction: int = MAX_REDUCTION) -> int:
    """The largest k (decode at 1/2^k) that leaves the box at least `size` pixels on both sides.

    Never more aggressive: the crop is then only ever shrunk (by less than 2x) or upscaled exactly
    as the full-resolution path would, so no detail the target resolution can hold is lost.
    """
    k = 0
    while k < max_reduction and min(box.width, box.height) >= size << (k + 1):
        k += 1
    return k


# ------------------------------------------------------------------ pixels


def load_rgb(source: str | os.PathLike | bytes | EncodedImage) -> np.ndarray:
    """Decode a whole image to a uint8 RGB array, naming the file if it cannot be read.

    OpenCV decodes JPEGs 1.2x faster than PIL (`python -m lit_effnet.bench pipeline`); EXIF
    orientation is ignored, as in PIL-based loaders (timm, torchvision) that pretrained weights saw.
    PIL reads what OpenCV cannot (e.g. Targa).
    """
    return cv2.cvtColor(decode_bgr(source)[0], cv2.COLOR_BGR2RGB)


def decode_bgr(source: str | os.PathLike | bytes | EncodedImage, k: int = 0) -> tuple[np.ndarray, int]:
    """The image decoded at 1/2^k, in OpenCV's BGR order (converted after cropping, on fewer pixels), and the
    k it was decoded at: `k` for a JPEG (libjpeg's DCT scaling), 0 for anything else (decoded whole)."""
    data = _read(source)
    if k > 0:
        shape = jpeg_shape(data)
        bgr = _imdecode(data, k) if shape is not None else None
        # libjpeg's scaled sizes are ceil(dim / 2^k); anything else was not a DCT-scaled decode
        if bgr is not None and bgr.shape[:2] == (-(-shape[0] >> k), -(-shape[1] >> k)):
            return bgr, k
    bgr = _imdecode(data, 0)
    if bgr is not None:
        return bgr, 0
    try:  # not a format OpenCV reads (e.g. Targa): PIL, at full resolution
        with Image.open(BytesIO(data)) as image:
            return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR), 0
    except (OSError, ValueError, SyntaxError) as err:
        raise CorruptImageError(f"{_name(source)}: cannot decode image ({type(err).__name__}: {err})") from None


def crop_resize(image: np.ndarray, box: CropBox, size: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Crop `box` and resize it to size x size: albumentations' RandomResizedCrop.apply, pixel for pixel."""
    if not (0 <= box.x0 < box.x1 <= image.shape[1] and 0 <= box.y0 < box.y1 <= image.shape[0]):
        raise ValueError(f"{box} does not lie inside an image of {image.shape[0]}x{image.shape[1]}")
    crop = image[box.y0 : box.y1, box.x0 : box.x1]
    if crop.shape[:2] == (size, size):
        return crop
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def decode_crop(source: Source, box: CropBox, size: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`box` of the image resized to size x size (uint8 RGB), decoding a JPEG at the coarsest scale that allows it.

    `box` is in full-resolution coordinates (from `sample_crop_box` on `image_shape`); `interpolation`
    is nearest, bilinear or bicubic (cv2 flags; INTER_AREA has no sub-pixel warp). The result is close
    to `crop_resize(load_rgb(source), ...)` (tests/data/test_decode.py bounds the difference) and equals it
    when no reduction applies or the source is not a JPEG.
    """
    if isinstance(source, np.ndarray):
        return crop_resize(source, box, size, interpolation)
    return resize_box(*decode_bgr(source, reduction_for(box, size)), box, size, interpolation)


def resize_box(bgr: np.ndarray, k: int, box: CropBox, size: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`box` (full-resolution coordinates) of a BGR image decoded at 1/2^k, resized to size x size, as RGB.

    k = 0 is `crop_resize`. Otherwise reduced pixel i stands for full-resolution pixels [i * 2^k, (i + 1) * 2^k),
    so a full-resolution position u (pixel centres at index + 0.5) is u / 2^k in reduced units, and output
    pixel j samples where cv2.resize of the full-resolution crop would: x0 + (j + 0.5) * width / size.
    """
    if k == 0:
        out = crop_resize(bgr, box, size, interpolation)
    else:
        factor, sx, sy = 1 << k, box.width / size, box.height / size
        matrix = np.array(
            [
                [sx / factor, 0.0, (box.x0 + 0.5 * sx) / factor - 0.5],
                [0.0, sy / factor, (box.y0 + 0.5 * sy) / factor - 0.5],
            ]
        )
        flags = interpolation | cv2.WARP_INVERSE_MAP
        out = cv2.warpAffine(bgr, matrix, (size, size), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)  # on size x size pixels, not the whole image


def _imdecode(data: bytes, k: int) -> np.ndarray | None:
    """BGR at 1/2^k (None when OpenCV cannot decode it); EXIF orientation ignored, as the header's shape is."""
    if not data:
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED_FLAGS[k] | cv2.IMREAD_IGNORE_ORIENTATION)


def _read(source: str | os.PathLike | bytes | EncodedImage) -> bytes:
    if isinstance(source, EncodedImage):
        return source.data
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    return read_encoded(source).data


def _name(source: object) -> str:
    if isinstance(source, EncodedImage):
        return source.path
    return "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
