"""PSNR/SSIM of every exit of a checkpoint (one forward pass of the trunk per image) and of bicubic upsampling.

Protocol: Y channel (ITU-R BT.601, BasicSR's ``bgr2ycbcr``), ``scale`` pixels cropped from each border, SR output
rounded to 8 bits; the HR is cropped top-left to the LR size times the scale; bicubic is MATLAB's ``imresize`` of the
LR image (rounded to uint8 after each pass, as MATLAB does).
"""
import os
from collections import OrderedDict
from os import path as osp

import cv2
import torch
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import img2tensor, tensor2img
from basicsr.utils.registry import ARCH_REGISTRY

from srdistill.utils.errors import UserError
from srdistill.utils.matlab_imresize import imresize


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
    return (calculate_psnr(sr, gt, crop_border=scale, test_y_channel=True),
            calculate_ssim(sr, gt, crop_border=scale, test_y_channel=True))


def evaluate(net, pairs, scale, device=None):
    """Mean PSNR/SSIM of bicubic and of every output of ``net`` over ``pairs``.

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
        gt, lq = cv2.imread(gt_path, cv2.IMREAD_COLOR), cv2.imread(lq_path, cv2.IMREAD_COLOR)
        results = {'bicubic': imresize(lq, scale)}
        with torch.no_grad():
            outputs = net(img2tensor(lq / 255., bgr2rgb=True, float32=True)[None].to(device), exit='all')
        results.update((f'e{depth}', tensor2img([out.cpu()])) for depth, out in outputs.items())
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
