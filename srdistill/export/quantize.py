"""INT8 ONNX for edge devices: static quantisation (ONNX Runtime, QDQ, per-channel weights) calibrated on a few images,
with its cost and quality measured against the fp32 export on a test set.
"""
import os
import statistics
import tempfile
import time
from os import path as osp

import numpy as np

from srdistill.metrics.psnr_ssim_y_metric import calculate_psnr_y
from srdistill.utils.errors import UserError

# the bundled photos (scikit-image) whose LR images calibrate an INT8 export by default
CALIB_PHOTOS = ('astronaut', 'rocket', 'immunohistochemistry')


def to_batch(lq):
    """A uint8 LR image (BGR or gray) as the exports' input: (1, 3, h, w) float32 RGB in [0, 1]."""
    rgb = np.repeat(lq[..., None], 3, axis=2) if lq.ndim == 2 else lq[..., ::-1]
    return np.ascontiguousarray((rgb.astype(np.float32) / 255).transpose(2, 0, 1)[None])


def to_image(batch, gray):
    """An export's output batch as a uint8 image (BGR, or gray as the mean of the channels when the input was)."""
    sr = np.floor(np.clip(batch[0].transpose(1, 2, 0), 0, 1) * 255 + 0.5)
    return np.floor(sr.mean(axis=2) + 0.5).astype(np.uint8) if gray else sr[..., ::-1].astype(np.uint8)


def quantize_int8(fp32_path, int8_path, calib_images, crop=48):
    """Write a statically quantised INT8 (QDQ) copy of ``fp32_path``, calibrated on LR crops of ``calib_images``.

    Args:
        fp32_path (str): The fp32 ONNX export.
        int8_path (str): Output.
        calib_images (list[np.ndarray]): uint8 LR images (BGR or gray); a ``crop`` x ``crop`` centre crop of each is
            used (MinMax calibration).
        crop (int): Calibration crop size in LR pixels. Default: 48.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    if not calib_images:
        raise UserError('INT8 calibration needs at least one image.')

    class Reader(CalibrationDataReader):

        def __init__(self):
            batches = []
            for img in calib_images:
                y, x = max(0, (img.shape[0] - crop) // 2), max(0, (img.shape[1] - crop) // 2)
                batches.append({'lr': to_batch(img[y:y + crop, x:x + crop])})
            self.items = iter(batches)

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:  # the quantiser writes helper files next to its output
        prepared, out = osp.join(tmp, 'prepared.onnx'), osp.join(tmp, 'int8.onnx')
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)  # ORT's recommended graph optimisation
        # reduce_range: 7-bit weights. ONNX Runtime's U8S8 kernels on x86 CPUs without VNNI (AVX2 only) sum pairs of
        # products in 16 bits (VPMADDUBSW), which saturates with full-range weights; on such a CPU the 8-bit export
        # lost 0.5-1.4 dB against fp32 in tests/test_edsr_tools.py, and ORT's docs name reduce_range as the remedy
        quantize_static(prepared, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        os.replace(out, int8_path)
    return int8_path


def _latency(session, batch, repeats=5):
    session.run(None, {'lr': batch})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {'lr': batch})
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def compare_int8(fp32_path, int8_path, pairs, scale, latency_size=(180, 320)):
    """Size, CPU latency and Y PSNR (published protocol) of the INT8 model against the fp32 one.

    Args:
        fp32_path (str): fp32 ONNX model.
        int8_path (str): INT8 ONNX model.
        pairs (list[tuple[np.ndarray, np.ndarray]]): (HR, LR) uint8 test images.
        scale (int): Upscaling factor.
        latency_size (tuple[int, int]): LR size (h, w) for the latency. Default: (180, 320), a 1280x720 x4 output.

    Returns:
        dict: ``size_mb``, ``latency_ms`` and ``psnr`` for ``fp32`` and ``int8``, and ``psnr_change`` (int8 - fp32).
    """
    import onnxruntime as ort
    sessions = {k: ort.InferenceSession(p, providers=['CPUExecutionProvider'])
                for k, p in (('fp32', fp32_path), ('int8', int8_path))}
    psnr = {k: [] for k in sessions}
    for gt, lq in pairs:
        for key, session in sessions.items():
            sr = to_image(session.run(None, {'lr': to_batch(lq)})[0], lq.ndim == 2)
            psnr[key].append(calculate_psnr_y(sr, gt[:sr.shape[0], :sr.shape[1]], crop_border=scale))
    probe = np.random.default_rng(0).random((1, 3, *latency_size), dtype=np.float32)
    report = {key: dict(size_mb=osp.getsize(path) / 2**20, latency_ms=_latency(sessions[key], probe),
                        psnr=float(np.mean(psnr[key])))
              for key, path in (('fp32', fp32_path), ('int8', int8_path))}
    report['psnr_change'] = report['int8']['psnr'] - report['fp32']['psnr']
    report['latency_input'] = list(latency_size)
    report['test_images'] = len(pairs)
    return report


def bundled_pairs(scale, names=('chelsea', 'coffee')):
    """(HR, LR) test images from scikit-image's bundled photos, LR by exact MATLAB bicubic."""
    from skimage import data

    from srdistill.data.prepare import as_uint8_bgr
    from srdistill.utils.matlab_imresize import imresize, mod_crop
    pairs = []
    for name in names:
        hr = mod_crop(as_uint8_bgr(getattr(data, name)()), scale)
        pairs.append((hr, imresize(hr, 1 / scale)))
    return pairs
