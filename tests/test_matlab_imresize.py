"""Tests for srdistill.utils.matlab_imresize (exact MATLAB imresize bicubic)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATASETS, require_shared

from srdistill.utils.matlab_imresize import _round_to_int, bicubic_downsample, imresize, mod_crop

SET_IMAGES = {
    'Set5': ['baby', 'bird', 'butterfly', 'head', 'woman'],
    'Set14': [
        'baboon', 'barbara', 'bridge', 'coastguard', 'comic', 'face', 'flowers', 'foreman', 'lenna', 'man', 'monarch',
        'pepper', 'ppt3', 'zebra'
    ],
}
SCALES = (2, 3, 4)
EXACT_CASES = [(name, img, s) for name, imgs in SET_IMAGES.items() for img in imgs for s in SCALES]


def _load_pair(set_name: str, img_name: str, scale: int) -> tuple[np.ndarray, np.ndarray]:
    root = Path(SHARED_DATASETS)
    hr_path = root / set_name / 'HR' / f'{img_name}.png'
    lr_path = root / set_name / 'LR_bicubic' / f'X{scale}' / f'{img_name}.png'
    require_shared(hr_path, lr_path)
    hr = cv2.imread(str(hr_path), cv2.IMREAD_UNCHANGED)
    lr = cv2.imread(str(lr_path), cv2.IMREAD_UNCHANGED)
    assert hr is not None and lr is not None
    return hr, lr


# ----------------------------------------------------------------------------------------------------------------------
# 1. Pixel-exactness against the published MATLAB-made LR files.
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('set_name,img_name,scale', EXACT_CASES, ids=[f'{n}-{i}-x{s}' for n, i, s in EXACT_CASES])
def test_bicubic_downsample_matches_published(set_name, img_name, scale):
    hr, lr = _load_pair(set_name, img_name, scale)
    out = bicubic_downsample(hr, scale)
    assert out.dtype == np.uint8
    assert out.shape == lr.shape, f'shape {out.shape} != published {lr.shape}'
    n_diff = int(np.count_nonzero(out != lr))
    assert np.array_equal(out, lr), f'{n_diff} of {lr.size} pixel values differ from the published LR file'


# ----------------------------------------------------------------------------------------------------------------------
# 2. Rounding between the two passes matters.
# ----------------------------------------------------------------------------------------------------------------------
def test_float_between_passes_differs_from_published():
    hr, lr = _load_pair('Set5', 'baby', 4)
    hr = mod_crop(hr, 4)
    out_float = imresize(hr.astype(np.float64), 1 / 4)
    assert out_float.dtype == np.float64
    rounded_once = np.clip(np.floor(out_float + 0.5), 0, 255).astype(np.uint8)
    assert rounded_once.shape == lr.shape
    assert np.count_nonzero(rounded_once != lr) > 0
    assert np.array_equal(imresize(hr, 1 / 4), lr)


def test_rounding_is_half_away_from_zero_and_saturating():
    x = np.array([0.5, 1.5, 2.5, 2.4999999, -0.4, -3.0, 254.5, 255.6, 300.0])
    np.testing.assert_array_equal(_round_to_int(x, np.dtype(np.uint8)), [1, 2, 3, 2, 0, 0, 255, 255, 255])
    np.testing.assert_array_equal(_round_to_int(np.array([65534.5, 70000.0]), np.dtype(np.uint16)), [65535, 65535])


# ----------------------------------------------------------------------------------------------------------------------
# 3. Hand-checkable small cases.
# ----------------------------------------------------------------------------------------------------------------------
def _ref_cubic(x: float) -> float:
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax**3 - 2.5 * ax**2 + 1
    if ax <= 2:
        return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return 0.0


def _ref_resize_1d(line: list[float], out_len: int, scale: float) -> list[float]:
    """Straightforward per-pixel MATLAB bicubic resampling of one line (antialiased when scale < 1)."""
    n = len(line)
    stretch = scale if scale < 1 else 1.0
    support = 2.0 / stretch
    result = []
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        total_w, acc = 0.0, 0.0
        for j in range(math.floor(u - support), math.ceil(u + support) + 1):
            w = stretch * _ref_cubic(stretch * (u - j))
            k = j
            while k < 1 or k > n:  # mirror with edge duplication: 0 -> 1, -1 -> 2, n+1 -> n, ...
                k = 1 - k if k < 1 else 2 * n + 1 - k
            total_w += w
            acc += w * line[k - 1]
        result.append(acc / total_w)
    return result


def _ref_resize_2d(img: np.ndarray, out_shape: tuple[int, int], scales: tuple[float, float]) -> np.ndarray:
    h, w = img.shape
    tmp = np.zeros((out_shape[0], w))
    for c in range(w):
        tmp[:, c] = _ref_resize_1d([float(v) for v in img[:, c]], out_shape[0], scales[0])
    out = np.zeros(out_shape)
    for r in range(out_shape[0]):
        out[r, :] = _ref_resize_1d([float(v) for v in tmp[r, :]], out_shape[1], scales[1])
    return out


@pytest.mark.parametrize('scale,expected_shape', [(2, (10, 10)), (0.5, (3, 3))])
def test_matches_direct_loop_implementation(scale, expected_shape):
    img = np.random.default_rng(0).random((5, 5))
    out = imresize(img, scale)
    assert out.shape == expected_shape
    ref = _ref_resize_2d(img, expected_shape, (scale, scale))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)


def test_output_shape_matches_direct_loop_implementation():
    img = np.random.default_rng(1).random((5, 6))
    out = imresize(img, output_shape=(9, 4))
    assert out.shape == (9, 4)
    ref = _ref_resize_2d(img, (9, 4), (9 / 5, 4 / 6))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)


def test_upscale_by_two_hand_values():
    # Upscaling [a, b, c] x2: output pixel 1 sits at u = 0.75; the non-zero taps are j = -1, 0, 1, 2 with weights
    # cubic(1.75), cubic(0.75), cubic(0.25), cubic(1.25) = -0.0234375, 0.2265625, 0.8671875, -0.0703125 (sum 1), and the
    # mirror extension maps j = -1, 0, 1, 2 to b, a, a, b. So out[0] = 1.09375 a - 0.09375 b.
    a, b, c = 1.0, 2.0, 4.0
    out = imresize(np.array([[a, b, c]]), output_shape=(1, 6))
    assert out.shape == (1, 6)
    assert out[0, 0] == pytest.approx(1.09375 * a - 0.09375 * b, abs=1e-15)
    # Middle pixel 3 (u = 1.75): taps j = 0..3 -> a, a, b, c with weights cubic(1.75), cubic(0.75), cubic(0.25),
    # cubic(1.25).
    assert out[0, 2] == pytest.approx(-0.0234375 * a + 0.2265625 * a + 0.8671875 * b - 0.0703125 * c, abs=1e-15)


@pytest.mark.parametrize('scale', [0.25, 1 / 3, 0.5, 2, 3.5])
def test_constant_image_stays_constant(scale):
    u8 = np.full((13, 17, 3), 137, dtype=np.uint8)
    out = imresize(u8, scale)
    assert out.dtype == np.uint8
    assert np.all(out == 137)
    f = np.full((13, 17), 0.3, dtype=np.float32)
    out_f = imresize(f, scale)
    assert out_f.dtype == np.float64
    np.testing.assert_allclose(out_f, 0.3, rtol=0, atol=1e-7)  # float32(0.3) vs 0.3
    np.testing.assert_allclose(out_f, float(np.float32(0.3)), rtol=0, atol=1e-12)


def test_channel_layouts():
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, (12, 9), dtype=np.uint8)
    out = imresize(gray, 1 / 3)
    assert out.shape == (4, 3) and out.dtype == np.uint8
    one = imresize(gray[:, :, None], 1 / 3)
    assert one.shape == (4, 3, 1)
    np.testing.assert_array_equal(one[:, :, 0], out)
    four = rng.integers(0, 256, (12, 9, 4), dtype=np.uint8)
    out4 = imresize(four, 1 / 3)
    assert out4.shape == (4, 3, 4)
    for ch in range(4):  # channels are independent
        np.testing.assert_array_equal(out4[:, :, ch], imresize(four[:, :, ch], 1 / 3))


def test_uint16():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 65536, (16, 20, 3), dtype=np.uint16)
    out = imresize(img, 0.5)
    assert out.dtype == np.uint16 and out.shape == (8, 10, 3)
    step = np.zeros((8, 8), dtype=np.uint16)
    step[:, 4:] = 65535
    up = imresize(step, 2)  # bicubic ringing overshoots: must saturate, not wrap
    assert up.dtype == np.uint16
    assert up.min() == 0 and up.max() == 65535
    assert np.all(up[:, :7] <= 32768) and np.all(up[:, -7:] >= 32767)


@pytest.mark.parametrize('shape,scale', [((10, 7), 0.25), ((11, 13), 1 / 3), ((5, 9), 2.5), ((7, 7), 0.3)])
def test_output_shape_is_ceil(shape, scale):
    out = imresize(np.zeros(shape), scale)
    assert out.shape == (math.ceil(shape[0] * scale), math.ceil(shape[1] * scale))


def test_mod_crop_and_bicubic_downsample_shapes():
    img = np.zeros((361, 250, 3), dtype=np.uint8)
    assert mod_crop(img, 3).shape == (360, 249, 3)
    assert mod_crop(img[:, :, 0], 4).shape == (360, 248)
    assert bicubic_downsample(img, 4).shape == (90, 62, 3)


@pytest.mark.parametrize(
    'args,kwargs,match',
    [
        ((np.zeros(5), 0.5), {}, '2-D'),
        ((np.zeros((2, 3, 4, 5)), 0.5), {}, '2-D'),
        ((np.zeros((4, 4)), 0), {}, 'scale must be'),
        ((np.zeros((4, 4)), -0.5), {}, 'scale must be'),
        ((np.zeros((4, 4)), 0.5), {'output_shape': (2, 2)}, 'exactly one of scale and output_shape, got both'),
        ((np.zeros((4, 4)), ), {}, 'exactly one of scale and output_shape, got neither'),
        ((np.zeros((4, 4), dtype=np.int32), 0.5), {}, 'supports dtypes'),
        ((np.zeros((4, 4), dtype=np.float16), 0.5), {}, 'supports dtypes'),
        ((np.zeros((4, 4)), ), {'output_shape': (0, 2)}, 'output_shape must be positive'),
    ],
)
def test_value_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        imresize(*args, **kwargs)


def test_mod_crop_value_errors():
    with pytest.raises(ValueError, match='positive integer'):
        mod_crop(np.zeros((4, 4)), 0)
    with pytest.raises(ValueError, match='2-D'):
        mod_crop(np.zeros(4), 2)
