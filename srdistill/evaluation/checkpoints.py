"""Checkpoints to networks: a multi-exit checkpoint, or a plain BasicSR MSRResNet/SRResNet one (evaluated as one exit).

The architecture is read from the state dict itself (parameter names and shapes), and checked against the options
file when one is given, so a checkpoint of another architecture or scale gets a clear message, not a shape error.
"""
import re
from os import path as osp

import torch
import yaml

from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.utils.errors import UserError, first_line

_REQUIRED = ('conv_first.weight', 'upconv1.weight', 'conv_hr.weight', 'conv_last.weight')


def read_state_dicts(ckpt_path):
    """Every set of weights in a checkpoint, loaded once: ``{'params': ..., 'params_ema': ...}`` for BasicSR's
    ``net_g_*.pth`` (``params_ema`` only when present), ``{'params': ...}`` for a bare state dict.

    Loaded with ``weights_only=True``; a ``module.`` prefix (DataParallel) is removed.

    Raises:
        UserError: Missing file, a file torch cannot load, one holding no state dict, or non-finite weights (in any
            set: a diverged run's ``params_ema`` is as unusable as its ``params``; see :func:`check_finite`).
    """
    if not osp.isfile(ckpt_path):
        raise UserError(f'checkpoint {ckpt_path} does not exist.')
    try:
        state = torch.load(ckpt_path, map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001 (any unpickling/format error means "not a checkpoint")
        raise UserError(f'{ckpt_path} is not a loadable PyTorch checkpoint ({first_line(err)}).') from None
    keyed = {k: state[k] for k in ('params', 'params_ema')
             if isinstance(state, dict) and isinstance(state.get(k), dict)}
    states = keyed or {'params': state}
    for weights in states.values():
        if not isinstance(weights, dict) or not all(torch.is_tensor(v) for v in weights.values()):
            raise UserError(f'{ckpt_path} holds no network weights (expected a state dict, or BasicSR\'s '
                            '{"params": ...}).')
    check_finite({f'{key}.{k}': v for key, weights in keyed.items() for k, v in weights.items()} if keyed else state,
                 ckpt_path)
    return {key: {k[len('module.'):] if k.startswith('module.') else k: v for k, v in weights.items()}
            for key, weights in states.items()}


def check_finite(state, path):
    """Refuse weights holding NaN or infinity (a run that diverged), naming the first such tensor.

    Such a network gives black or NaN images and a meaningless score, so evaluation, export and inference stop here
    rather than produce them.

    Args:
        state (dict[str, Tensor]): Weights by name (a state dict, or the tensors of a ``.safetensors`` file).
        path (str): The file they come from, for the message.

    Raises:
        UserError: A floating-point tensor holds a non-finite value.
    """
    for name, tensor in state.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point():
            bad = int(tensor.numel() - torch.isfinite(tensor).sum())
            if bad:
                raise UserError(f'{path} holds non-finite weights: {name} has {bad} inf/nan value'
                                f'{"s" if bad > 1 else ""} (the training diverged). Do not use this file: train again '
                                'from the last finite checkpoint (an earlier net_g_*.pth of the run), with a lower '
                                'learning rate.')


def read_state_dict(ckpt_path, param_key='params'):
    """The weights ``param_key`` of a checkpoint (see :func:`read_state_dicts`), falling back to the other set."""
    states = read_state_dicts(ckpt_path)
    return states.get(param_key) or next(iter(states.values()))


def infer_network_opt(state, ckpt_path='checkpoint'):
    """``network_g`` options of the (multi-exit) SRResNet that ``state`` belongs to.

    A checkpoint trained with FitNets hint adapters (``hint_adapters.<k>.*``, one per exit) gets ``hint_adapters=True``
    so that it loads strictly; the key is absent otherwise.

    Raises:
        UserError: The state dict is not an MSRResNet / MultiExitSRResNet one.
    """
    missing = [k for k in _REQUIRED if k not in state]
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r'body\.(\d+)\.conv1\.weight$', k))})
    if missing or not blocks:
        keys = ', '.join(list(state)[:4])
        raise UserError(f'{ckpt_path} is not an SRResNet or multi-exit SRResNet checkpoint (no {missing or "body.*"}; '
                        f'it has {keys}, ...). srdistill evaluates MultiExitSRResNet and BasicSR MSRResNet weights.')
    num_feat, num_in_ch = state['conv_first.weight'].shape[:2]
    exits = sorted({int(m.group(1)) for k in state if (m := re.match(r'exit_tails\.(\d+)\.', k))})
    if 'upconv2.weight' in state:
        upscale = 4
    else:
        upscale = round((state['upconv1.weight'].shape[0] / num_feat)**0.5)
    num_out_ch = int(state['conv_last.weight'].shape[0])
    net_opt = dict(type='MultiExitSRResNet', num_in_ch=int(num_in_ch), num_out_ch=num_out_ch, num_feat=int(num_feat),
                   num_block=len(blocks), exits=exits, upscale=upscale)
    adapters = sorted({int(m.group(1)) for k in state if (m := re.match(r'hint_adapters\.(\d+)\.weight$', k))})
    if adapters:
        if adapters != exits:
            raise UserError(f'{ckpt_path} has hint adapters for exits {adapters} but exits {exits}; a '
                            'MultiExitSRResNet has one adapter per exit.')
        net_opt['hint_adapters'] = True
    return net_opt


def load_checkpoint(ckpt_path, opt_path=None, param_key='params', scale=None, device='cpu'):
    """Build the network of a checkpoint and load its weights (strictly).

    Args:
        ckpt_path (str): The checkpoint.
        opt_path (str | None): A training/test options file; its ``network_g`` must describe the same network.
        param_key (str): ``params`` or ``params_ema`` (falls back to ``params``). Default: ``'params'``.
        scale (int | None): If given, the checkpoint's scale must equal it.
        device (str | torch.device): Default: CPU.

    Returns:
        tuple[nn.Module, dict]: The network (eval mode) and its ``network_g`` options.
    """
    state = read_state_dict(ckpt_path, param_key)
    net_opt = infer_network_opt(state, ckpt_path)
    if opt_path is not None:
        with open(opt_path) as f:
            given = (yaml.safe_load(f) or {}).get('network_g') or {}
        for key in ('num_feat', 'num_block', 'exits', 'upscale'):
            if key in given and given[key] != net_opt[key] and not (key == 'exits' and not given[key] and
                                                                      not net_opt[key]):
                raise UserError(f'{ckpt_path} does not match {opt_path}: network_g.{key} is {given[key]} there, '
                                f'{net_opt[key]} in the checkpoint.')
    if scale is not None and scale != net_opt['upscale']:
        raise UserError(f'{ckpt_path} is a x{net_opt["upscale"]} model, but scale {scale} was asked for.')
    kwargs = {k: v for k, v in net_opt.items() if k != 'type'}
    net = MultiExitSRResNet(**kwargs)
    net.load_state_dict(state, strict=True)
    return net.eval().to(device), net_opt


def experiment_label(ckpt_path):
    """A short name for a checkpoint: its experiment's name for ``experiments/<name>/models/*.pth``, else its stem."""
    parts = osp.normpath(osp.abspath(ckpt_path)).split(osp.sep)
    return parts[-3] if len(parts) >= 3 and parts[-2] == 'models' else osp.splitext(parts[-1])[0]
