"""The published PSNR/SSIM protocol (srdistill/metrics/psnr_ssim_y_metric.py): golden cases and the published tables.

The dataset tests need the shared Set5 / Set14 benchmark files (``<shared>/datasets``, ``<shared>`` being the folder
next to the repository or ``$SRDISTILL_SHARED``); they are skipped when those are absent, and fail under ``CI=true``
(conftest.require_shared).
"""
import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATASETS, require_shared
from scipy.signal import convolve2d

import srdistill  # noqa: F401  (registers the metrics)
from srdistill.metrics.psnr_ssim_y_metric import (
    bicubic_upsample,
    bicubic_y_only,
    calculate_psnr_y,
    calculate_ssim_y,
    rgb2y,
)
from srdistill.utils.matlab_imresize import imresize

DATASETS = Path(SHARED_DATASETS)
CASES = [(s, k) for s in ('Set5', 'Set14') for k in (2, 3, 4)]

# Bicubic PSNR / SSIM set means quoted in papers since SRCNN / VDSR (VDSR's table), the task's targets.
QUOTED = {
    ('Set5', 2): (33.66, 0.9299), ('Set5', 3): (30.39, 0.8682), ('Set5', 4): (28.42, 0.8104),
    ('Set14', 2): (30.24, 0.8688), ('Set14', 3): (27.55, 0.7742), ('Set14', 4): (26.00, 0.7027),
}
# SRCNN's Y-only pipeline with this metric, printed to the table precision. Equal to QUOTED for Set5; for Set14 these
# are (as far as known) SRCNN's own numbers, VDSR's Set14 row differs by <= 0.01 dB / 0.001 SSIM.
Y_ONLY = {
    ('Set5', 2): (33.66, 0.9299), ('Set5', 3): (30.39, 0.8682), ('Set5', 4): (28.42, 0.8104),
    ('Set14', 2): (30.23, 0.8687), ('Set14', 3): (27.54, 0.7736), ('Set14', 4): (26.00, 0.7019),
}
# SelfExSR's per-image bicubic table (/work/shared/datasets/SOURCES.md): {set: {image: {scale: (psnr, ssim)}}}.
# Their LR files had replicate borders, the shared LR_bicubic files symmetric ones: PSNR moves by <= 0.03 dB.
_SELFEXSR_ROWS = {
    'Set5': """
        baby 37.03 0.9510 33.90 0.9035 31.77 0.8563
        bird 36.77 0.9715 32.57 0.9253 30.18 0.8727
        butterfly 27.43 0.9149 24.04 0.8214 22.10 0.7368
        head 34.84 0.8618 32.86 0.7994 31.58 0.7531
        woman 32.14 0.9468 28.56 0.8892 26.46 0.8315""",
    'Set14': """
        baboon 24.86 0.6974 23.21 0.5438 22.44 0.4521
        barbara 28.00 0.8408 26.25 0.7529 25.15 0.6860
        bridge 26.57 0.7926 24.40 0.6481 23.15 0.5403
        coastguard 29.12 0.7890 26.55 0.6149 25.48 0.5223
        comic 26.01 0.8492 23.11 0.6989 21.69 0.5833
        face 34.81 0.8617 32.80 0.7977 31.55 0.7516
        flowers 30.36 0.8980 27.22 0.8010 25.52 0.7213
        foreman 34.13 0.9510 31.18 0.9054 29.41 0.8658
        lenna 34.68 0.9106 31.67 0.8578 29.83 0.8135
        man 29.24 0.8451 27.00 0.7494 25.69 0.6756
        monarch 32.92 0.9595 29.42 0.9193 27.46 0.8804
        pepper 34.94 0.9067 32.37 0.8698 30.58 0.8365
        ppt3 26.80 0.9461 23.64 0.8786 21.92 0.8186
        zebra 30.64 0.9086 26.62 0.7951 24.06 0.6844""",
}
SELFEXSR = {
    s: {f[0]: {k: (float(f[2 * i + 1]), float(f[2 * i + 2])) for i, k in enumerate((2, 3, 4))}
        for f in (line.split() for line in rows.strip().splitlines())}
    for s, rows in _SELFEXSR_ROWS.items()
}
# SelfExSR's printed set means.
SELFEXSR_MEANS = {
    ('Set5', 2): (33.64, 0.9292), ('Set5', 3): (30.39, 0.8678), ('Set5', 4): (28.42, 0.8101),
    ('Set14', 2): (30.22, 0.8683), ('Set14', 3): (27.53, 0.7737), ('Set14', 4): (25.99, 0.7023),
}



@pytest.fixture
def shared_sets():
    """The shared Set5 / Set14 HR and LR folders (skipped without them locally, failed under CI=true)."""
    require_shared(*(p for s, k in CASES for p in (DATASETS / s / 'HR', DATASETS / s / 'LR_bicubic' / f'X{k}')))


needs_data = pytest.mark.usefixtures('shared_sets')


def _read(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, f'cannot read {path}'
    return img


@lru_cache(maxsize=None)
def _published_lr_scores(set_name, scale):
    """{image: (psnr, ssim)} of MATLAB bicubic of the published LR files against the top-left-cropped HR."""
    scores = {}
    for hr_path in sorted((DATASETS / set_name / 'HR').glob('*.png')):
        lr = _read(DATASETS / set_name / 'LR_bicubic' / f'X{scale}' / hr_path.name)
        sr = bicubic_upsample(lr, scale)
        hr = _read(hr_path)[:sr.shape[0], :sr.shape[1]]
        assert hr.shape == sr.shape, f'{hr_path.name}: HR smaller than LR x {scale}'
        scores[hr_path.stem] = (calculate_psnr_y(sr, hr, scale), calculate_ssim_y(sr, hr, scale))
    return scores


@lru_cache(maxsize=None)
def _y_only_means(set_name, scale):
    p, s = [], []
    for hr_path in sorted((DATASETS / set_name / 'HR').glob('*.png')):
        sr_y, hr_y = bicubic_y_only(_read(hr_path), scale)
        p.append(calculate_psnr_y(sr_y, hr_y, scale))
        s.append(calculate_ssim_y(sr_y, hr_y, scale))
    return float(np.mean(p)), float(np.mean(s))


# ----------------------------------------------------------------------------------------------- published tables


@needs_data
@pytest.mark.parametrize('set_name,scale', CASES)
def test_published_lr_bicubic_reproduces_selfexsr_table(set_name, scale):
    """Bicubic of the published LR files: set means equal SelfExSR's printed means, per image within 0.03 dB."""
    scores = _published_lr_scores(set_name, scale)
    assert set(scores) == set(SELFEXSR[set_name])
    psnr = float(np.mean([p for p, _ in scores.values()]))
    ssim = float(np.mean([s for _, s in scores.values()]))
    assert (round(psnr, 2), round(ssim, 4)) == SELFEXSR_MEANS[(set_name, scale)], (psnr, ssim)
    for name, (p, s) in scores.items():
        ref_p, ref_s = SELFEXSR[set_name][name][scale]
        assert abs(p - ref_p) <= 0.035, (name, p, ref_p)
        assert abs(s - ref_s) <= 0.0001, (name, s, ref_s)


@needs_data
@pytest.mark.parametrize('set_name,scale', CASES)
def test_published_lr_bicubic_vs_quoted_numbers(set_name, scale):
    """The quoted (VDSR) bicubic numbers are NOT reachable from the RGB LR files: 0.004-0.022 dB / <=0.0007 below.

    Documents the gap; see the module docstring. A metric change that closes it would have to change the
    SelfExSR reproduction above.
    """
    scores = _published_lr_scores(set_name, scale)
    psnr = float(np.mean([p for p, _ in scores.values()]))
    ssim = float(np.mean([s for _, s in scores.values()]))
    ref_p, ref_s = QUOTED[(set_name, scale)]
    assert -0.025 <= psnr - ref_p <= 0.0, psnr
    assert -0.0008 <= ssim - ref_s <= 0.0, ssim


@needs_data
@pytest.mark.parametrize('set_name,scale', CASES)
def test_y_only_pipeline_reproduces_quoted_numbers(set_name, scale):
    """SRCNN's Y-only bicubic + this metric: VDSR's Set5 numbers exactly, Set14 within 0.01 dB / 0.001 SSIM."""
    psnr, ssim = _y_only_means(set_name, scale)
    assert (round(psnr, 2), round(ssim, 4)) == Y_ONLY[(set_name, scale)], (psnr, ssim)
    ref_p, ref_s = QUOTED[(set_name, scale)]
    assert abs(psnr - ref_p) <= 0.01 and abs(ssim - ref_s) <= 0.001, (psnr, ssim)


# ------------------------------------------------------------------------------------------------------ golden cases


def _half_up(x):
    return math.floor(x + 0.5)


@pytest.mark.parametrize('bgr,expected', [
    ((255, 255, 255), 235),  # white: 16 + 219
    ((0, 0, 0), 16),  # black
    ((0, 0, 255), 81),  # red: 16 + 65.481 = 81.481
    ((0, 255, 0), 145),  # green: 16 + 128.553 = 144.553
    ((255, 0, 0), 41),  # blue: 16 + 24.966 = 40.966
    ((68, 204, 0), 126),  # RGB (0, 204, 68): exactly 125.5 -> half up
    ((10, 200, 30), None),
    ((77, 3, 254), None),
])
def test_rgb2y_matches_matlab_formula(bgr, expected):
    b, g, r = bgr
    formula = _half_up(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255)
    if expected is not None:
        assert formula == expected
    img = np.broadcast_to(np.array(bgr, np.uint8), (2, 3, 3)).copy()
    y = rgb2y(img)
    assert y.shape == (2, 3) and y.dtype == np.float64
    assert np.all(y == (formula if expected is None else expected))


def test_rgb2y_gray_is_its_own_y():
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for img in (gray, gray[:, :, None]):
        y = rgb2y(img)
        assert y.dtype == np.float64 and y.shape == (16, 16)
        np.testing.assert_array_equal(y, gray)
    # Replicating to RGB is a different (wrong) Y: 16 + 219/255 * gray.
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    assert rgb2y(rgb)[0, 0] == 16 and rgb2y(rgb)[-1, -1] == 235


def test_rgb2y_rejects_bad_input():
    with pytest.raises(ValueError, match='uint8'):
        rgb2y(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match='shape'):
        rgb2y(np.zeros((4, 4, 4), np.uint8))


def test_psnr_one_level_difference():
    a = np.full((20, 20), 100, np.uint8)
    assert calculate_psnr_y(a, a + 1, 0) == pytest.approx(10 * math.log10(255 ** 2), abs=1e-12)
    assert calculate_psnr_y(a, a + 1, 0) == pytest.approx(48.1308036, abs=1e-6)
    assert calculate_psnr_y(a, a, 0) == float('inf')


def test_psnr_crop_border():
    gt = np.full((12, 10), 50, np.uint8)
    sr = gt.copy()
    sr[2:-2, 2:-2] += 2  # interior off by 2 (MSE 4)
    sr[:2] = 0  # border rows far off: shaved away with crop_border=2
    assert calculate_psnr_y(sr, gt, 2) == pytest.approx(10 * math.log10(255 ** 2 / 4), abs=1e-12)
    # Without shaving: 20 rows-pixels of error 50, 6 * 8 = 48 of error 2, on 120 pixels.
    mse = (20 * 50 ** 2 + 48 * 2 ** 2) / 120
    assert calculate_psnr_y(sr, gt, 0) == pytest.approx(10 * math.log10(255 ** 2 / mse), abs=1e-12)


def test_psnr_colour_uses_rounded_y():
    gt = np.zeros((8, 8, 3), np.uint8)
    gt[...] = (0, 0, 255)  # red -> Y 81
    sr = gt.copy()
    sr[...] = (0, 0, 253)  # Y = round(16 + 65.481 * 253 / 255) = round(80.967) = 81: identical Y
    assert calculate_psnr_y(sr, gt, 0) == float('inf')
    sr[...] = (0, 0, 250)  # Y = round(80.197) = 80: one level off
    assert calculate_psnr_y(sr, gt, 1) == pytest.approx(10 * math.log10(255 ** 2), abs=1e-12)


def test_ssim_identical_is_one():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    assert calculate_ssim_y(img, img, 4) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize('a,b,crop', [(100, 120, 0), (16, 235, 0), (30, 31, 2), (200, 0, 3)])
def test_ssim_constant_images(a, b, crop):
    """Zero variances: SSIM = (2ab + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * 255)^2."""
    n = 11 + 2 * crop
    x, y = np.full((n, n), a, np.uint8), np.full((n, n), b, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert calculate_ssim_y(x, y, crop) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-9)


def _reference_ssim(a, b):
    """Direct transcription of Wang's ssim_index (fspecial gaussian 11/1.5, filter2 'valid')."""
    x = np.arange(11) - 5.0
    w = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5 ** 2))
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def f(z):
        return convolve2d(z, np.rot90(w, 2), mode='valid')

    mu1, mu2 = f(a), f(b)
    s1, s2, s12 = f(a * a) - mu1 ** 2, f(b * b) - mu2 ** 2, f(a * b) - mu1 * mu2
    return np.mean(((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s1 + s2 + c2)))


def test_ssim_matches_reference_on_colour_and_gray():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (30, 27, 3), dtype=np.uint8)
    sr = np.clip(gt.astype(int) + rng.integers(-25, 26, gt.shape), 0, 255).astype(np.uint8)
    ref = _reference_ssim(rgb2y(sr)[3:-3, 3:-3], rgb2y(gt)[3:-3, 3:-3])
    assert calculate_ssim_y(sr, gt, 3) == pytest.approx(ref, abs=1e-12)
    g_sr, g_gt = sr[:, :, 1], gt[:, :, 1]
    ref = _reference_ssim(g_sr.astype(float), g_gt.astype(float))
    assert calculate_ssim_y(g_sr, g_gt, 0) == pytest.approx(ref, abs=1e-12)
    # The metric is symmetric in its two images.
    assert calculate_ssim_y(gt, sr, 3) == pytest.approx(calculate_ssim_y(sr, gt, 3), abs=1e-12)


@pytest.mark.parametrize('metric', [calculate_psnr_y, calculate_ssim_y])
def test_metrics_reject_bad_input(metric):
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match=r'shapes differ: \(16, 16, 3\) vs \(16, 15, 3\)'):
        metric(a, a[:, :15], 0)
    with pytest.raises(ValueError, match='shapes differ'):
        metric(a, a[:, :, 0], 0)
    with pytest.raises(ValueError, match='uint8'):
        metric(a.astype(np.float32), a.astype(np.float32), 0)
    with pytest.raises(ValueError, match='crop_border'):
        metric(a, a, 8)
    with pytest.raises(ValueError, match='crop_border'):
        metric(a, a, -1)


def test_ssim_needs_a_full_window():
    a = np.zeros((14, 14), np.uint8)
    with pytest.raises(ValueError, match='11x11'):
        calculate_ssim_y(a, a, 2)


def test_bicubic_upsample():
    rng = np.random.default_rng(2)
    lr = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    sr = bicubic_upsample(lr, 3)
    assert sr.shape == (21, 15, 3) and sr.dtype == np.uint8
    np.testing.assert_array_equal(sr, imresize(lr, 3))
    const = np.full((6, 4), 77, np.uint8)
    np.testing.assert_array_equal(bicubic_upsample(const, 4), np.full((24, 16), 77, np.uint8))
    with pytest.raises(ValueError, match='uint8'):
        bicubic_upsample(lr.astype(np.float64), 2)
    with pytest.raises(ValueError, match='positive integer'):
        bicubic_upsample(lr, 1.5)


def test_registered_and_callable_from_basicsr():
    from basicsr.metrics import calculate_metric
    from basicsr.utils.registry import METRIC_REGISTRY

    assert METRIC_REGISTRY.get('calculate_psnr_y') is calculate_psnr_y
    assert METRIC_REGISTRY.get('calculate_ssim_y') is calculate_ssim_y
    gt = np.full((24, 24, 3), 128, np.uint8)
    data = dict(img=gt.copy(), img2=gt)
    data['img'][...] = (128, 128, 132)  # Y round(126.956) = 127 vs round(125.929) = 126: one level
    opt = {'type': 'calculate_psnr_y', 'crop_border': 4, 'test_y_channel': True, 'input_order': 'HWC',
           'better': 'higher'}
    assert calculate_metric(data, opt) == pytest.approx(10 * math.log10(255 ** 2), abs=1e-12)
    assert calculate_metric(data, dict(opt, type='calculate_ssim_y')) == calculate_ssim_y(data['img'], gt, 4)
