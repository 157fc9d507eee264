"""Reduced-scale JPEG decoding for random-resized crops: same boxes as albumentations, pixels close to full decode."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
import sklearn.datasets
from PIL import Image

from lit_effnet.data import decode
from lit_effnet.data.decode import CropBox
from lit_effnet.data.randaugment import RandAugment
from lit_effnet.errors import CorruptImageError

PHOTOS = sorted((Path(sklearn.datasets.__file__).parent / "images").glob("*.jpg"))  # china, flower: 640x427
SOURCES = [(500, 375), (1000, 750)]  # ImageNet-like photo sizes (width, height)


def _photo(index: int, width: int, height: int) -> np.ndarray:
    rgb = np.asarray(Image.open(PHOTOS[index]).convert("RGB"))
    method = cv2.INTER_AREA if width < rgb.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(rgb, (width, height), interpolation=method)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory) -> dict[tuple[str, int, int], Path]:
    """Both photos at each source size (and one odd size), re-encoded at quality 90."""
    folder = tmp_path_factory.mktemp("jpegs")
    files = {}
    for index, photo in enumerate(PHOTOS):
        for width, height in [*SOURCES, (501, 377)]:
            files[photo.stem, width, height] = folder / f"{photo.stem}_{width}x{height}.jpg"
            Image.fromarray(_photo(index, width, height)).save(files[photo.stem, width, height], quality=90)
    return files


def _albumentations_box(seed: int, height: int, width: int, scale=(0.08, 1.0)) -> tuple[int, int, int, int]:
    crop = A.RandomResizedCrop(size=(64, 64), scale=scale)
    crop.set_random_seed(seed)
    return tuple(crop.get_params_dependent_on_data({"shape": (height, width)}, {})["crop_coords"])


# ------------------------------------------------------------------ the box


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.05, 1.0), (0.6, 1.0), (0.999, 1.0)])
@pytest.mark.parametrize(
    "shape",
    # the edges: a crop of exactly the full width or height, a crop of one pixel, a fallback centred on an odd margin
    [(375, 500), (750, 1000), (40, 1000), (1000, 30), (1, 1), (1001, 30), (100, 100), (150, 100), (100, 150), (3, 3)],
)
def test_box_is_albumentations_draw_for_draw(shape, scale):
    # (40, 1000) and (1000, 30) exceed the ratio range, so most draws end in the central fallback
    for seed in range(300):
        box = decode.sample_crop_box(random.Random(seed), *shape, scale=scale)
        assert (box.x0, box.y0, box.x1, box.y1) == _albumentations_box(seed, *shape, scale)
        assert 0 <= box.x0 < box.x1 <= shape[1] and 0 <= box.y0 < box.y1 <= shape[0]


def test_box_distribution_with_numpy_generator_matches_albumentations():
    height, width, n = 375, 500, 20_000
    crop = A.RandomResizedCrop(size=(64, 64), scale=(0.08, 1.0))
    crop.set_random_seed(0)
    theirs = [crop.get_params_dependent_on_data({"shape": (height, width)}, {})["crop_coords"] for _ in range(n)]
    rng = np.random.default_rng(0)
    ours = [(b.x0, b.y0, b.x1, b.y1) for b in (decode.sample_crop_box(rng, height, width) for _ in range(n))]

    def stats(boxes):
        b = np.asarray(boxes, float)
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        centre_x = (b[:, 0] + b[:, 2]) / 2 / width
        return (
            (w * h / (height * width)).mean(),
            np.log(w / h).mean(),
            centre_x.mean(),
            (w * h).std() / (height * width),
        )

    # standard errors over 20k draws: area fraction ~0.002, log-ratio ~0.0012, centre ~0.001; tolerances ~4 sigma
    for mine, reference, tolerance in zip(stats(ours), stats(theirs), (0.01, 0.006, 0.005, 0.01)):
        assert abs(mine - reference) < tolerance


def test_reduction_is_the_largest_that_keeps_the_target_resolution():
    rng = random.Random(0)
    for _ in range(2000):
        box = decode.sample_crop_box(rng, *rng.choice([(375, 500), (750, 1000), (1500, 2000)]))
        size = rng.choice([64, 128, 184, 240, 300])
        k = decode.reduction_for(box, size)
        assert 0 <= k <= decode.MAX_REDUCTION
        assert k == 0 or (box.width / 2**k >= size and box.height / 2**k >= size)  # never too aggressive
        assert k == decode.MAX_REDUCTION or min(box.width, box.height) / 2 ** (k + 1) < size  # nor too timid
    assert decode.reduction_for(CropBox(0, 0, 1000, 750), 128) == 2
    assert decode.reduction_for(CropBox(0, 0, 1000, 750), 94) == 2  # 750 / 8 = 93.75 < 94
    assert decode.reduction_for(CropBox(0, 0, 4000, 3000), 128) == 3  # capped at 1/8


# ------------------------------------------------------------------ headers


def test_header_shape_without_decoding(jpegs, tmp_path):
    for path in jpegs.values():
        with Image.open(path) as image:
            assert decode.image_shape(path) == (image.height, image.width)
            assert decode.jpeg_shape(path.read_bytes()) == (image.height, image.width)
    # an EXIF segment before the frame header, and a progressive JPEG
    image = Image.fromarray(_photo(0, 321, 123))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation "rotate 90": ignored, as the decoders are told to
    image.save(tmp_path / "exif.jpg", quality=90, exif=exif, progressive=True)
    assert decode.image_shape(tmp_path / "exif.jpg") == (123, 321)
    assert decode.load_rgb(tmp_path / "exif.jpg").shape == (123, 321, 3)
    image.save(tmp_path / "photo.png")
    assert decode.jpeg_shape((tmp_path / "photo.png").read_bytes()) is None
    assert decode.image_shape(tmp_path / "photo.png") == (123, 321)


# ------------------------------------------------------------------ pixels


def test_full_path_equals_albumentations_crop_and_resize(jpegs):
    """Same (seed) -> same box and the same output as today's decode + A.RandomResizedCrop, bit for bit."""
    path = jpegs["china", 500, 375]
    rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION), cv2.COLOR_BGR2RGB)
    for size in (128, 300):
        today = A.Compose([A.RandomResizedCrop(size=(size, size), scale=(0.08, 1.0))])
        for seed in range(20):
            today.set_random_seed(seed)
            box = decode.sample_crop_box(random.Random(seed), *decode.image_shape(path))
            expected = today(image=rgb)["image"]
            np.testing.assert_array_equal(decode.crop_resize(decode.load_rgb(path), box, size), expected)
            reduced = decode.decode_crop(path, box, size)
            assert reduced.shape == expected.shape == (size, size, 3) and reduced.dtype == np.uint8
            np.testing.assert_array_equal(decode.decode_crop(path.read_bytes(), box, size), reduced)


def _diffs(
    jpeg: Path, size: int, boxes: int = 40, interpolation: int = cv2.INTER_LINEAR
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Per reduced crop: mean and 99th-percentile |reduced - full bilinear|, and the mean distances of the
    reduced and the full bilinear crops to an anti-aliased (INTER_AREA) full-resolution crop."""
    full = decode.load_rgb(jpeg)
    rng, means, p99s, reduced_to_area, full_to_area = random.Random(size), [], [], [], []
    for _ in range(boxes):
        box = decode.sample_crop_box(rng, *full.shape[:2])
        reduced = decode.decode_crop(jpeg, box, size, interpolation).astype(np.int16)
        reference = decode.crop_resize(full, box, size, interpolation).astype(np.int16)
        if decode.reduction_for(box, size) == 0:
            np.testing.assert_array_equal(reduced, reference)  # no reduction: the very same pixels
            continue
        area = decode.crop_resize(full, box, size, cv2.INTER_AREA).astype(np.int16)
        diff = np.abs(reduced - reference)
        means.append(diff.mean())
        p99s.append(np.percentile(diff, 99))
        reduced_to_area.append(np.abs(reduced - area).mean())
        full_to_area.append(np.abs(reference - area).mean())
    return means, p99s, reduced_to_area, full_to_area


# Measured on this file's crops (40 boxes per case, the reduced ones counted), in grey levels:
#   mean |reduced - full| over the crops / the worst crop's mean / the worst crop's 99th percentile
#   china  500x375 -> 128: 5.2 / 6.6 / 48      flower  500x375 -> 128: 2.0 / 2.8 / 25
#   china 1000x750 -> 128: 7.1 / 10.5 / 72     flower 1000x750 -> 128: 2.4 / 4.5 / 42
#   china 1000x750 -> 300: 4.5 / 5.1 / 35      flower 1000x750 -> 300: 1.3 / 1.5 / 17
#   (500x375 -> 300 never reduces: identical pixels.) Bounds: ~25% above the worst case measured.
# Most of it is the full-resolution path's aliasing (bilinear from up to 8x the target), not an error of the
# reduced one: against an INTER_AREA crop, the reduced path is 2-3x closer than the reference at 128 px
# (china 1000x750: 2.5 vs 7.0) and as close at 300 px (flower 1000x750: 0.78 vs 0.75).
BOUNDS = {"china": (9.0, 13.0, 90.0), "flower": (3.5, 6.0, 55.0)}  # mean, worst crop's mean, worst p99


@pytest.mark.parametrize("size", [128, 300])
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("photo", ["china", "flower"])
def test_reduced_pixels_stay_close_to_full_resolution(jpegs, photo, source, size):
    means, p99s, reduced_to_area, full_to_area = _diffs(jpegs[(photo, *source)], size)
    if source == (500, 375) and size == 300:
        assert not means  # a 300 px crop of a 375 px high photo never allows 1/2
        return
    assert len(means) >= 8
    mean_bound, worst_mean_bound, p99_bound = BOUNDS[photo]
    assert np.mean(means) <= mean_bound and max(means) <= worst_mean_bound and max(p99s) <= p99_bound
    # no further from an anti-aliased crop than the full-resolution path is (give or take 0.3 grey levels)
    assert np.mean(reduced_to_area) <= np.mean(full_to_area) + 0.3


def test_bicubic_reduced_pixels_stay_close_too(jpegs):
    means, p99s, _, _ = _diffs(jpegs["flower", 1000, 750], 128, boxes=20, interpolation=cv2.INTER_CUBIC)
    assert len(means) >= 8 and np.mean(means) <= BOUNDS["flower"][0] and max(p99s) <= BOUNDS["flower"][2]


def test_reduced_geometry_on_odd_sizes_and_edges(jpegs):
    """libjpeg's reduced sizes are ceil(dim / 2^k): boxes on the right and bottom edges map correctly."""
    path = jpegs["flower", 501, 377]
    full = decode.load_rgb(path)
    for box in (CropBox(0, 0, 501, 377), CropBox(245, 121, 501, 377), CropBox(0, 0, 260, 258)):
        reduced = decode.decode_crop(path, box, 128).astype(np.int16)
        assert decode.reduction_for(box, 128) == 1
        assert np.abs(reduced - decode.crop_resize(full, box, 128)).mean() < 3.0
        # a one-pixel shift of the box would be a larger difference than the decode's
        shifted = CropBox(box.x0 - 2, box.y0, box.x1 - 2, box.y1) if box.x0 >= 2 else None
        if shifted is not None:
            assert (
                np.abs(reduced - decode.crop_resize(full, shifted, 128)).mean()
                > np.abs(reduced - decode.crop_resize(full, box, 128)).mean()
            )


def test_non_jpeg_and_arrays_take_the_full_path(jpegs, tmp_path):
    rgb = _photo(0, 1000, 750)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    box = CropBox(100, 50, 900, 700)  # allows 1/4 for a JPEG
    assert decode.reduction_for(box, 128) == 2
    expected = decode.crop_resize(rgb, box, 128)
    np.testing.assert_array_equal(decode.decode_crop(tmp_path / "photo.png", box, 128), expected)
    np.testing.assert_array_equal(decode.decode_crop((tmp_path / "photo.png").read_bytes(), box, 128), expected)
    np.testing.assert_array_equal(decode.decode_crop(rgb, box, 128), expected)  # in memory (CIFAR, digits)
    np.testing.assert_array_equal(decode.crop_resize(decode.load_rgb(tmp_path / "photo.png"), box, 128), expected)
    assert decode.decode_bgr(tmp_path / "photo.png", 2)[1] == 0  # DCT scaling is for JPEGs only
    encoded = decode.read_encoded(tmp_path / "photo.png")
    np.testing.assert_array_equal(decode.decode_crop(encoded, box, 128), expected)


def test_unreadable_files_name_themselves(tmp_path):
    from lit_effnet.errors import CorruptImageError

    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(CorruptImageError, match=r"bad\.jpg"):
        decode.decode_crop(tmp_path / "bad.jpg", CropBox(0, 0, 8, 8), 4)
    encoded = decode.read_encoded(tmp_path / "bad.jpg")  # read, not decoded: its path travels with its bytes
    for read in (decode.image_shape, decode.load_rgb, lambda e: decode.decode_crop(e, CropBox(0, 0, 8, 8), 4)):
        with pytest.raises(CorruptImageError, match=r"bad\.jpg"):
            read(encoded)
    for read in (decode.image_shape, decode.read_encoded):
        with pytest.raises(CorruptImageError, match=r"missing\.jpg"):
            read(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="inside"):
        decode.crop_resize(np.zeros((10, 10, 3), np.uint8), CropBox(5, 5, 11, 9), 4)


def test_train_transform_on_a_jpeg_is_albumentations_full_resolution_pipeline_where_nothing_reduces(jpegs):
    """A file through train_transform: the box, flip and RandAugment draws of albumentations' RandomResizedCrop
    -> HorizontalFlip -> RandAugment on the fully decoded image, from one generator pair: bit for bit at 300 px."""
    from albumentations.pytorch import ToTensorV2

    from lit_effnet.data.transforms import train_transform

    path, size = jpegs["china", 500, 375], 300  # 300 px of a 375 px high photo: never reduced
    rgb = decode.load_rgb(path)
    transform = train_transform(size, randaug_magnitude=10, crop_scale=(0.08, 1.0))
    for seed in range(30):
        steps = [A.RandomResizedCrop(size=(size, size), scale=(0.08, 1.0)), A.HorizontalFlip(p=0.5)]
        reference = A.Compose([*steps, RandAugment(num_ops=2, magnitude=10), ToTensorV2()])
        rng, generator = random.Random(seed), np.random.default_rng(seed)
        for step in reference.transforms:
            step.set_random_state(generator, rng)
        expected = reference(image=rgb)["image"]
        np.testing.assert_array_equal(transform(path, seed).numpy(), expected.numpy())
        np.testing.assert_array_equal(transform(decode.read_encoded(path), seed).numpy(), expected.numpy())


def _sof_header(height: int, width: int) -> bytes:
    """A JPEG start of frame (baseline SOF0) with its 9 bytes: marker, length 17, precision 8, height, width."""
    return b"\xff\xc0\x00\x11\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big")


def test_the_header_walk_reads_the_frame_size_at_the_very_end_of_the_data_and_after_fill_bytes():
    start = b"\xff\xd8"
    assert decode.jpeg_shape(start + _sof_header(300, 500)) == (300, 500)  # the frame's 9 bytes end the data
    assert decode.jpeg_shape(start + b"\xff\xff" + _sof_header(300, 500)) == (300, 500)  # a fill byte first
    app0 = b"\xff\xe0\x00\x06JFIF"  # a segment of 4 bytes after its length, skipped whole
    assert decode.jpeg_shape(start + app0 + b"\xff" + _sof_header(7, 9)) == (7, 9)
    comment = b"\xff\xfe\x01\x2e" + b"c" * 300  # a length over 255: both of its bytes count
    assert decode.jpeg_shape(start + comment + _sof_header(7, 9)) == (7, 9)
    # PIL cannot open a header without scan data (its lazy open reads on to the first scan): ours can
    assert decode.image_shape(start + _sof_header(300, 500)) == (300, 500)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8" + _sof_header(300, 500)[:-1],  # the frame header cut one byte short
        b"\xff\xd8\xff\xe0\x00\x02",  # segments that end exactly at the end of the data, no frame
        b"\xff\xd8\x00\xc0",  # not at a marker
        b"\x89PNG\r\n\x1a\n",  # not a JPEG
    ],
)
def test_the_header_walk_gives_none_for_a_header_without_a_whole_frame(data):
    assert decode.jpeg_shape(data) is None


def test_bytes_that_are_no_image_name_themselves_and_the_decoders_error():
    with pytest.raises(CorruptImageError) as error:
        decode.image_shape(b"not an image")
    assert str(error.value).startswith("<bytes>: cannot read image header (UnidentifiedImageError: cannot identify")


def test_a_jpeg_decodes_at_the_reduction_asked_with_libjpegs_ceil_sizes_and_anything_else_whole(jpegs, tmp_path):
    path = jpegs["flower", 501, 377]
    for k in (1, 2, 3):
        bgr, got = decode.decode_bgr(path, k)
        assert got == k and bgr.shape == (-(-377 // 2**k), -(-501 // 2**k), 3)
    png = tmp_path / "flower.png"
    cv2.imwrite(str(png), cv2.imread(str(path)))
    bgr, got = decode.decode_bgr(png, 2)
    assert got == 0 and bgr.shape == (377, 501, 3)


def test_resize_box_at_full_resolution_uses_the_interpolation_given(jpegs):
    bgr = cv2.imread(str(jpegs["flower", 501, 377]))
    box = CropBox(10, 20, 210, 170)
    cubic = decode.resize_box(bgr, 0, box, 64, cv2.INTER_CUBIC)
    assert np.array_equal(cubic, cv2.cvtColor(decode.crop_resize(bgr, box, 64, cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB))
    assert not np.array_equal(cubic, decode.resize_box(bgr, 0, box, 64))


@pytest.mark.parametrize("interpolation", [cv2.INTER_LINEAR, cv2.INTER_CUBIC])
def test_a_reduced_crop_of_a_flat_image_stays_flat_up_to_its_edges(interpolation):
    # Upsampled from the reduced pixels, the edge samples fall outside them: the border repeats the edge pixels.
    flat = np.full((40, 60, 3), 200, np.uint8)
    out = decode.resize_box(flat, 1, CropBox(0, 0, 120, 80), 96, interpolation)
    assert out.shape == (96, 96, 3) and (out == 200).all()


def test_a_format_opencv_cannot_read_is_decoded_by_pil_in_rgb(tmp_path):
    tga = tmp_path / "stripes.tga"
    rgb = np.zeros((12, 20, 3), np.uint8)
    rgb[:, :5], rgb[:, 5:10], rgb[:, 10:15] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    Image.fromarray(rgb).save(tga)
    assert cv2.imread(str(tga)) is None  # OpenCV reads no Targa
    assert np.array_equal(decode.load_rgb(tga), rgb)
    assert decode.decode_bgr(tga, 2)[1] == 0  # decoded whole, whatever reduction was asked for
    grey = tmp_path / "grey.tga"
    Image.fromarray(rgb[..., 1]).save(grey)  # one channel: made RGB like every other image
    assert np.array_equal(decode.load_rgb(grey), np.repeat(rgb[..., 1:2], 3, axis=2))
    grey_alpha = tmp_path / "grey_alpha.tga"
    Image.fromarray(np.dstack([rgb[..., 1], np.full((12, 20), 128, np.uint8)]), mode="LA").save(grey_alpha)
    assert np.array_equal(decode.load_rgb(grey_alpha), np.repeat(rgb[..., 1:2], 3, axis=2))  # the alpha dropped
    assert np.array_equal(decode.decode_crop(tga, CropBox(0, 0, 20, 12), 12)[:, 0], np.tile([255, 0, 0], (12, 1)))


def test_a_box_outside_the_image_or_without_area_is_refused_naming_both():
    image = np.zeros((40, 60, 3), np.uint8)  # 40 rows, 60 columns
    for box in (CropBox(5, 5, 5, 20), CropBox(5, 5, 20, 5), CropBox(0, 0, 20, 50), CropBox(0, 0, 61, 20)):
        with pytest.raises(ValueError) as error:
            decode.crop_resize(image, box, 16)
        assert str(error.value) == f"{box} does not lie inside an image of 40x60"
    assert decode.crop_resize(image, CropBox(0, 0, 60, 40), 16).shape == (16, 16, 3)


def test_decode_crop_decodes_a_jpeg_at_the_boxs_reduction_with_the_interpolation_given(jpegs):
    path, box = jpegs["flower", 501, 377], CropBox(0, 0, 400, 300)
    assert decode.reduction_for(box, 64) == 2
    for interpolation in (cv2.INTER_LINEAR, cv2.INTER_CUBIC):
        expected = decode.resize_box(*decode.decode_bgr(path, 2), box, 64, interpolation)
        assert np.array_equal(decode.decode_crop(path, box, 64, interpolation), expected)
    assert not np.array_equal(decode.decode_crop(path, box, 64, cv2.INTER_CUBIC), decode.decode_crop(path, box, 64))


def test_an_empty_file_is_a_corrupt_image_naming_it(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(CorruptImageError, match=f"^{empty}: cannot decode image \\(UnidentifiedImageError: "):
        decode.load_rgb(empty)
