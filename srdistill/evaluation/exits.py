"""PSNR/SSIM of every exit of a checkpoint (one forward pass of the trunk per image) and of bicubic upsampling.

Protocol: the published one (:mod:`srdistill.metrics.psnr_ssim_y_metric`): SR output rounded to 8 bits, Y channel of
ITU-R BT.601 as MATLAB's ``rgb2ycbcr`` computes it (a grayscale image is its own Y), ``scale`` pixels cropped from
each border; the HR is cropped top-left to the LR size times the scale; bicubic is MATLAB's ``imresize`` of the LR
image (rounded to uint8 after each pass). A grayscale LR is fed to the network as three equal channels and the
mean of the three output channels is its SR image.
"""
import os
from collections import OrderedDict
from os import path as osp

import cv2
import numpy as np
import torch
from basicsr.utils import img2tensor, tensor2img
from basicsr.utils.registry import ARCH_REGISTRY

from srdistill.metrics.psnr_ssim_y_metric import bicubic_upsample, calculate_psnr_y, calculate_ssim_y
from srdistill.utils.errors import UserError


def default_device():
    """CUDA when present, else CPU."""
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def load_network(network_opt, ckpt_path, param_key='params', device=None):
    """Build ``network_opt`` (an options ``network_g`` dict) and load a BasicSR checkpoint into it (weights only).

    Args:
        network_opt (dict): ``type`` and arguments of the architecture.
        ckpt_path (str): ``net_g_*.pth`` (a dict holding ``params`` and maybe ``params_ema``) or a bare state dict.
        param_key (str): Which weights to load; falls back to ``params`` when absent. Default: ``'params'``.
        device (torch.device | None): Default: :func:`default_device`.

    Returns:
        nn.Module: The network, in eval mode, on ``device``.
    """
    if not osp.isfile(ckpt_path):
        raise UserError(f'checkpoint {ckpt_path} does not exist.')
    opt = dict(network_opt)
    net = ARCH_REGISTRY.get(opt.pop('type'))(**opt)
    state = torch.load(ckpt_path, map_location='cpu', weights_only=True)
    if isinstance(state, dict) and param_key in state:
        state = state[param_key]
    elif isinstance(state, dict) and 'params' in state:
        state = state['params']
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UserError(f'checkpoint {ckpt_path} does not fit network {network_opt}: {err}') from None
    return net.eval().to(device or default_device())


def paired_files(gt_folder, lq_folder):
    """(HR path, LR path) pairs matched by file name."""
    names = sorted(n for n in os.listdir(lq_folder) if not n.startswith('.'))
    return [(osp.join(gt_folder, n), osp.join(lq_folder, n)) for n in names]


def _scores(sr, gt, scale):
    gt = gt[:sr.shape[0], :sr.shape[1]]
    return calculate_psnr_y(sr, gt, crop_border=scale), calculate_ssim_y(sr, gt, crop_border=scale)


def _read(path):
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f'{path} cannot be read as an image.')
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return img


def super_resolve(net, lq, device):
    """Every output of ``net`` for a uint8 LR image (BGR HxWx3 or gray HxW), as uint8 images of the same kind."""
    gray = lq.ndim == 2
    x = np.repeat(lq[..., None], 3, axis=2) if gray else lq
    with torch.no_grad():
        outputs = net(img2tensor(x / 255., bgr2rgb=True, float32=True)[None].to(device), exit='all')
    results = OrderedDict()
    for depth, out in outputs.items():
        sr = tensor2img([out.cpu()])
        results[f'e{depth}'] = np.floor(sr.astype(np.float64).mean(axis=2) + 0.5).astype(np.uint8) if gray else sr
    return results


def evaluate(net, pairs, scale, device=None):
    """Mean PSNR/SSIM of bicubic and of every output of ``net`` over ``pairs`` (the module's protocol).

    Args:
        net (nn.Module): A network whose ``forward(x, exit='all')`` returns ``{depth: SR}``.
        pairs (list[tuple[str, str]]): (HR path, LR path).
        scale (int): Upscaling factor.
        device (torch.device | None): Default: the network's device.

    Returns:
        OrderedDict[str, tuple[float, float]]: ``{'bicubic': (psnr, ssim), 'e2': ..., ..., 'e8': ...}``.
    """
    device = device or next(net.parameters()).device
    sums = OrderedDict()
    for gt_path, lq_path in pairs:
        gt, lq = _read(gt_path), _read(lq_path)
        results = OrderedDict(bicubic=bicubic_upsample(lq, scale))
        results.update(super_resolve(net, lq, device))
        for key, sr in results.items():
            psnr, ssim = _scores(sr, gt, scale)
            total = sums.setdefault(key, [0., 0.])
            total[0] += psnr
            total[1] += ssim
    return OrderedDict((key, (p / len(pairs), s / len(pairs))) for key, (p, s) in sums.items())


def markdown_table(scores, dataset_name):
    """Render :func:`evaluate`'s result as a markdown table, one row per exit and one for bicubic."""
    lines = [f'| output | {dataset_name} PSNR (dB) | {dataset_name} SSIM |', '|---|---|---|']
    lines += [f'| {key} | {psnr:.2f} | {ssim:.4f} |' for key, (psnr, ssim) in scores.items()]
    return '\n'.join(lines)
