"""Stop a training run at its first non-finite loss (NaN or inf), and never save non-finite weights.

A diverging run (too high a learning rate, an fp16 overflow) gives NaN losses that BasicSR logs and trains on: BasicSR
ends such a run with status 0 and NaN checkpoints. :func:`check_losses` is called by the model once per iteration on the
losses BasicSR's ``reduce_loss_dict`` has already turned into floats (no extra device sync); :func:`check_weights` is
called by ``srdistill.compat`` before a checkpoint is written, so the last checkpoint on disk stays a finite one.
"""
import math
import os
import re
from os import path as osp

import torch

from srdistill.utils.errors import UserError


class NonFiniteError(UserError):
    """Training produced a NaN or infinite loss or weight; the run stops with status 2 and writes no checkpoint."""


def _last_checkpoint(models_dir):
    """``net_g_<iter>.pth`` with the highest iteration in ``models_dir`` (or None): what a rerun resumes from."""
    if not models_dir or not osp.isdir(models_dir):
        return None
    iters = [int(m.group(1)) for m in map(re.compile(r'net_g_(\d+)\.pth$').match, os.listdir(models_dir)) if m]
    return osp.join(models_dir, f'net_g_{max(iters)}.pth') if iters else None


def check_losses(log_dict, current_iter, opt):
    """Raise :class:`NonFiniteError` when a logged loss term is NaN or infinite.

    Args:
        log_dict (dict[str, float]): The iteration's loss terms (``l_pix_e8``, ..., ``l_total``) as floats.
        current_iter (int): The iteration they belong to.
        opt (dict): The run's options (``path.models`` is named in the message).

    Raises:
        NonFiniteError: Naming the iteration, the non-finite terms (``l_total`` last) and the checkpoint that is kept.
    """
    bad = [name for name, value in log_dict.items() if not math.isfinite(value)]
    if not bad:
        return
    bad.sort(key=lambda name: name == 'l_total')  # the term that caused it first; the total follows from it
    terms = ', '.join(f'{name} = {log_dict[name]}' for name in bad[:3]) + (', ...' if len(bad) > 3 else '')
    kept = _last_checkpoint((opt.get('path') or {}).get('models'))
    kept = f'the last checkpoint, {kept}, is kept (finite)' if kept else 'no checkpoint had been saved yet'
    raise NonFiniteError(f'training diverged at iteration {current_iter}: {terms}; the run stops and {kept}. Lower '
                         '`train.optim_g.lr` (or use train.amp: bf16 instead of fp16) and resume with --auto_resume.')


def check_weights(state_dicts, name, current_iter):
    """Raise :class:`NonFiniteError` when a state dict about to be saved holds a NaN or infinite value.

    Args:
        state_dicts (dict[str, dict[str, torch.Tensor]]): ``{param_key: state_dict}`` as BasicSR saves it
            (``params``, ``params_ema``).
        name (str): The checkpoint's file name, for the message.
        current_iter (int | str): The iteration (``latest`` for BasicSR's final save).
    """
    for param_key, state_dict in state_dicts.items():
        bad = [k for k, v in state_dict.items() if torch.is_tensor(v) and v.is_floating_point()
               and not bool(torch.isfinite(v).all())]
        if bad:
            raise NonFiniteError(f'iteration {current_iter}: refusing to save {name}: `{param_key}` holds non-finite '
                                 f'values in {", ".join(bad[:3])}{", ..." if len(bad) > 3 else ""}; training '
                                 'diverged (lower `train.optim_g.lr`); the last checkpoint saved before is kept.')
