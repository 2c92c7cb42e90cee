"""PSNR/SSIM of every exit of a network (one forward pass of the trunk per image) and of bicubic upsampling.

Protocol: the published one (:mod:`srdistill.metrics.psnr_ssim_y_metric`): SR output rounded to 8 bits, Y channel of
ITU-R BT.601 as MATLAB's ``rgb2ycbcr`` computes it (a grayscale image is its own Y), ``scale`` pixels cropped from
each border; the HR is cropped top-left to the LR size times the scale; bicubic is MATLAB's ``imresize`` of the LR
image (rounded to uint8 after each pass). A grayscale LR is fed to the network as three equal channels and the
mean of the three output channels is its SR image.
"""
from collections import OrderedDict
from os import path as osp

import numpy as np
import torch
from basicsr.metrics import calculate_psnr
from basicsr.utils import img2tensor, imwrite, tensor2img
from tqdm import tqdm

from srdistill.data.image_files import UINT8, list_images, read_image
from srdistill.metrics.psnr_ssim_y_metric import bicubic_upsample, bicubic_y_only, calculate_psnr_y, calculate_ssim_y
from srdistill.utils.errors import UserError, first_line
from srdistill.utils.tiling import self_ensemble, tiled_forward


def default_device():
    """CUDA when present, else CPU."""
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def paired_files(gt_folder, lq_folder):
    """(HR path, LR path) pairs matched by file name.

    Raises:
        UserError: A missing folder, no images, or an LR image without its HR.
    """
    gt_names = set(list_images(gt_folder, 'HR images', only_images=False))
    names = list_images(lq_folder, 'LR images', only_images=False)
    missing = [n for n in names if n not in gt_names]
    if missing:
        raise UserError(f'{len(missing)} LR image(s) in {lq_folder} have no HR image in {gt_folder}: '
                        f'{", ".join(missing[:5])}.')
    return [(osp.join(gt_folder, n), osp.join(lq_folder, n)) for n in names]


def dataset_pairs(name, root, scale):
    """Pairs of a benchmark set prepared by ``tools/prepare_data.py`` (``<root>/<name>/HR``, ``LR_bicubic/X<s>``)."""
    gt, lq = osp.join(root, name, 'HR'), osp.join(root, name, 'LR_bicubic', f'X{scale}')
    if not osp.isdir(gt) or not osp.isdir(lq):
        raise UserError(f'dataset {name} (x{scale}) is not prepared: {lq} is missing. Prepare it with `python '
                        f'tools/prepare_data.py benchmark --download {name}` or `... benchmark --hr <{name} HR folder> '
                        f'--name {name}`.')
    return paired_files(gt, lq)


def super_resolve(net, lq, device, tile=None, overlap=32, ensemble=False):
    """Every output of ``net`` for a uint8 LR image (BGR HxWx3 or gray HxW), as uint8 images of the same kind.

    Args:
        net (nn.Module): ``forward(x, exit='all')`` returns ``{depth: SR}``.
        lq (np.ndarray): The LR image.
        device (torch.device): Where to run.
        tile (int | None): Tile size in LR pixels for large images (see :func:`tiled_forward`).
        overlap (int): LR pixels shared by neighbouring tiles. Default: 32.
        ensemble (bool): x8 self-ensemble.

    Returns:
        OrderedDict[str, np.ndarray]: ``{'e8': SR, ..., 'e32': SR}``.
    """
    gray = lq.ndim == 2
    x = img2tensor((np.repeat(lq[..., None], 3, axis=2) if gray else lq) / 255., bgr2rgb=True, float32=True)[None]

    def run(t):
        return tiled_forward(lambda tile_x: net(tile_x, exit='all'), t, net.upscale, tile=tile, overlap=overlap)

    with torch.no_grad():
        outputs = self_ensemble(run, x.to(device)) if ensemble else run(x.to(device))
    results = OrderedDict()
    for depth, out in outputs.items():
        sr = tensor2img([out.cpu()])
        results[f'e{depth}'] = np.floor(sr.astype(np.float64).mean(axis=2) + 0.5).astype(np.uint8) if gray else sr
    return results


def make_lpips(device):
    """LPIPS (AlexNet) or, when its backbone weights cannot be had, None and a message saying what to place where."""
    import lpips
    try:
        return lpips.LPIPS(net='alex', verbose=False).to(device).eval(), None
    except Exception as err:  # noqa: BLE001 (offline: URLError; others: a broken cache file)
        from torchvision.models import AlexNet_Weights
        name = AlexNet_Weights.IMAGENET1K_V1.url.rsplit('/', 1)[1]
        return None, (f'LPIPS skipped: it needs torchvision\'s AlexNet weights, which could not be loaded '
                      f'({first_line(err, 120)}). Place {name} (from {AlexNet_Weights.IMAGENET1K_V1.url}) '
                      f'in {osp.join(torch.hub.get_dir(), "checkpoints")} and run again; the other metrics are '
                      'unaffected.')


def _lpips(fn, sr, gt, device):
    def to_tensor(img):
        img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
        return img2tensor(img / 127.5 - 1, bgr2rgb=True, float32=True)[None].to(device)

    with torch.no_grad():
        return float(fn(to_tensor(sr), to_tensor(gt)).item())


def score(sr, gt, scale, rgb=False, lpips_fn=None, device='cpu'):
    """Metrics of one SR image against its HR (cropped top-left to the SR size)."""
    gt = gt[:sr.shape[0], :sr.shape[1]]
    result = {'psnr': calculate_psnr_y(sr, gt, crop_border=scale), 'ssim': calculate_ssim_y(sr, gt, crop_border=scale)}
    if rgb:
        result['psnr_rgb'] = calculate_psnr(sr, gt, crop_border=scale, input_order='HWC', test_y_channel=False)
    if lpips_fn is not None:
        result['lpips'] = _lpips(lpips_fn, sr, gt, device)
    return result


def evaluate(net, pairs, scale, device=None, tile=None, overlap=32, ensemble=False, rgb=False, lpips_fn=None,
             save_dir=None, bicubic=True, desc=None):
    """Mean metrics of bicubic and of every output of ``net`` over ``pairs``.

    Args:
        net (nn.Module | None): A multi-exit network, or None for bicubic only.
        pairs (list[tuple[str, str]]): (HR path, LR path).
        scale (int): Upscaling factor.
        device (torch.device | None): Default: the network's device.
        tile (int | None): LR tile size for large images. Default: None (whole images).
        overlap (int): LR pixels shared by neighbouring tiles. Default: 32.
        ensemble (bool): x8 self-ensemble. Default: False.
        rgb (bool): Also PSNR on RGB (``psnr_rgb``). Default: False.
        lpips_fn (callable | None): An LPIPS module (``lpips``). Default: None.
        save_dir (str | None): Write each SR image to ``<save_dir>/<output>/<name>.png``. Default: None.
        bicubic (bool): Include the bicubic rows: ``bicubic`` (of the LR files) and ``bicubic_srcnn`` (SRCNN's Y-only
            pipeline, :func:`bicubic_y_only`: the numbers papers quote; PSNR/SSIM only). Default: True.
        desc (str | None): Progress-bar label; None: no bar.

    Returns:
        tuple[OrderedDict, list]: ``{output: {metric: mean}}`` (``'bicubic'``, ``'e8'``, ...) and, per image,
        ``(name, {output: {metric: value}})``.
    """
    if net is not None:
        device = device or next(net.parameters()).device
    sums, per_image = OrderedDict(), []
    for gt_path, lq_path in tqdm(pairs, unit='image', desc=desc, disable=desc is None):
        gt, lq = read_image(gt_path, UINT8), read_image(lq_path, UINT8)
        results = OrderedDict(bicubic=bicubic_upsample(lq, scale)) if bicubic else OrderedDict()
        if net is not None:
            results.update(super_resolve(net, lq, device, tile=tile, overlap=overlap, ensemble=ensemble))
        name = osp.splitext(osp.basename(lq_path))[0]
        scores = OrderedDict()
        if bicubic:
            sr_y, hr_y = bicubic_y_only(gt, scale)
            scores['bicubic_srcnn'] = {'psnr': calculate_psnr_y(sr_y, hr_y, crop_border=scale),
                                       'ssim': calculate_ssim_y(sr_y, hr_y, crop_border=scale)}
        for key, sr in results.items():
            scores[key] = score(sr, gt, scale, rgb=rgb, lpips_fn=lpips_fn, device=device or 'cpu')
            if save_dir is not None:
                imwrite(sr, osp.join(save_dir, key, f'{name}.png'))
        for key, metrics in scores.items():
            for metric, value in metrics.items():
                sums.setdefault(key, OrderedDict()).setdefault(metric, 0.)
                sums[key][metric] += value
        per_image.append((name, scores))
    means = OrderedDict((key, OrderedDict((m, v / len(pairs)) for m, v in metrics.items()))
                        for key, metrics in sums.items())
    return means, per_image


def markdown_table(scores, dataset_name):
    """A two-metric table (the demo's): one row per output of :func:`evaluate`'s means."""
    lines = [f'| output | {dataset_name} PSNR (dB) | {dataset_name} SSIM |', '|---|---|---|']
    lines += [f'| {key} | {m["psnr"]:.2f} | {m["ssim"]:.4f} |' for key, m in scores.items()]
    return '\n'.join(lines)
