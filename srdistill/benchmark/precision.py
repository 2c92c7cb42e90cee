"""Do the fast settings change the result? Mean Y-PSNR of every output of trained weights, fp32 against each variant.

Variants: ``fp32`` (eager, the reference), ``channels_last`` (memory format), and on CUDA ``fp16``, ``bf16`` and
``bf16 + channels_last`` autocast. Each is scored with the evaluation protocol of :mod:`srdistill.evaluation.exits`
(SR rounded to 8 bits, MATLAB Y, ``scale`` pixels cropped per border) and passes when its mean PSNR is within
:data:`TOLERANCE_DB` of fp32's.
"""
import copy
from os import path as osp

import torch
from torch import nn

from srdistill.archs.checkpoints import load_checkpoint
from srdistill.evaluation.exits import evaluate, paired_files
from srdistill.utils.amp import AMP_DTYPES

# |mean PSNR - fp32 mean PSNR| allowed per variant, dB
TOLERANCE_DB = {'channels_last': 0.01, 'fp16': 0.05, 'bf16': 0.05, 'bf16 + channels_last': 0.05}


class PrecisionVariant(nn.Module):
    """``net`` run in another memory format and/or under autocast; outputs returned in fp32.

    Args:
        net (nn.Module): A multi-exit network (``forward(x, exit=...)``, ``upscale``).
        channels_last (bool): Run a channels_last copy of ``net`` on channels_last input. Default: False.
        dtype (torch.dtype | None): Autocast dtype; None: no autocast. Default: None.
    """

    def __init__(self, net, channels_last=False, dtype=None):
        super().__init__()
        self.net = copy.deepcopy(net).to(memory_format=torch.channels_last) if channels_last else net
        self.channels_last, self.dtype, self.upscale = channels_last, dtype, net.upscale

    def forward(self, x, exit='all'):  # noqa: A002 (the network's own argument name)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            out = self.net(x, exit=exit)
        return type(out)((k, v.float()) for k, v in out.items()) if isinstance(out, dict) else out.float()


def precision_variants(device):
    """``{name: (channels_last, autocast dtype)}`` of the variants measured on ``device``, ``fp32`` first."""
    variants = {'fp32': (False, None), 'channels_last': (True, None)}
    if torch.device(device).type == 'cuda':
        variants.update({name: (False, dtype) for name, dtype in AMP_DTYPES.items()})
        variants['bf16 + channels_last'] = (True, AMP_DTYPES['bf16'])
    return variants


def precision_check(ckpt_path, val_dir, device='cpu', param_key='params'):
    """Mean Y-PSNR of each output of a checkpoint over a benchmark folder, per variant, and its change from fp32.

    Args:
        ckpt_path (str): A srdistill training checkpoint, or a plain BasicSR one of a registered architecture.
        val_dir (str): A benchmark folder with ``HR/`` and ``LR_bicubic/X<scale>/`` (e.g. ``datasets/Set5``).
        device (str | torch.device): Default: CPU.
        param_key (str): ``params`` or ``params_ema``. Default: ``'params'``.

    Returns:
        dict: ``checkpoint``, ``network`` (its options), ``val_dir``, ``images``, ``scale``, ``device``,
        ``tolerance_db``, ``rows`` (per output and variant: ``psnr``, ``ssim``, ``delta_db`` (mean PSNR minus fp32's),
        ``max_image_delta_db`` (largest change of one image's PSNR), ``tolerance_db`` and ``passed``; None for the
        fp32 reference), ``passed`` (every row within its tolerance) and, on CUDA, ``cudnn_allow_tf32`` (whether the
        fp32 reference's convolutions may use TF32, PyTorch's default).
    """
    device = torch.device(device)
    net, net_opt = load_checkpoint(ckpt_path, param_key=param_key, device=device)
    scale = net_opt['upscale']
    pairs = paired_files(osp.join(val_dir, 'HR'), osp.join(val_dir, 'LR_bicubic', f'X{scale}'))
    results = {}
    for name, (channels_last, dtype) in precision_variants(device).items():
        means, per_image = evaluate(PrecisionVariant(net, channels_last, dtype), pairs, scale, device=device,
                                    bicubic=False)
        results[name] = (means, [scores for _, scores in per_image])
    ref_means, ref_images = results['fp32']
    rows = []
    for output, ref in ref_means.items():
        for name, (means, images) in results.items():
            row = dict(output=output, variant=name, psnr=means[output]['psnr'], ssim=means[output]['ssim'],
                       delta_db=None, max_image_delta_db=None, tolerance_db=TOLERANCE_DB.get(name), passed=None)
            if name != 'fp32':
                row['delta_db'] = means[output]['psnr'] - ref['psnr']
                row['max_image_delta_db'] = max(abs(img[output]['psnr'] - ref_img[output]['psnr'])
                                                for img, ref_img in zip(images, ref_images))
                row['passed'] = abs(row['delta_db']) <= row['tolerance_db']
            rows.append(row)
    return dict(checkpoint=ckpt_path, param_key=param_key, network=net_opt, val_dir=val_dir, images=len(pairs),
                scale=scale, device=str(device), tolerance_db=dict(TOLERANCE_DB), rows=rows,
                cudnn_allow_tf32=torch.backends.cudnn.allow_tf32 if device.type == 'cuda' else None,
                passed=all(row['passed'] is not False for row in rows))
