"""``path.pretrain_network_<x>``: the checkpoint exists, loads without unpickling code and fits ``network_<x>``.

BasicSR loads it when it builds the model, after the experiment folder is made: a missing file, a 0-byte or
truncated one, or one for another network would be a traceback there. The check reads it with
:func:`srdistill.compat.load_checkpoint` and matches it as BasicSR's ``load_network`` does (``param_key`` with its
``params`` fallback, a ``module.`` prefix dropped, ``strict_load``).
"""
from os import path as osp

import torch

from srdistill.compat import load_checkpoint  # the one reader of .pth files (weights only)
from srdistill.utils.errors import UserError


def check_pretrained(opt, opt_path, net, which):
    """Check ``path.pretrain_network_<which>`` against ``net`` (built from ``network_<which>``, on any device).

    With ``strict_load_<which>: false`` BasicSR skips missing, unexpected and differently shaped weights, so only a
    file without weights is refused then; the frozen external teacher (``which='t'``) must always match in shape.

    Args:
        opt (dict): The options.
        opt_path (str): The options file, named in messages.
        net (nn.Module): The network the weights are for.
        which (str): ``'g'`` or ``'t'``.

    Raises:
        UserError: A missing, unreadable or non-fitting checkpoint.
    """
    path_opt = opt.get('path') or {}
    key, name = f'path.pretrain_network_{which}', f'network_{which}'
    path = path_opt.get(f'pretrain_network_{which}')
    if path is None:
        return
    if not osp.isfile(path):
        raise UserError(f'{opt_path}: option `{key}`: file {path} does not exist.')
    try:
        state = load_checkpoint(path)
    except UserError as err:  # a 0-byte, truncated or foreign file, or pickled code
        raise UserError(f'{opt_path}: option `{key}`: {err}') from None
    param_key = path_opt.get(f'param_key_{which}', 'params')
    if param_key is not None and isinstance(state, dict):
        if param_key not in state and 'params' in state:
            param_key = 'params'  # BasicSR's fallback
        state = state.get(param_key, state)
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f'{opt_path}: option `{key}`: {path} holds no network weights under `{param_key}` (expected '
                        'a state dict, or BasicSR\'s {"params": ...}).')
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    expected = net.state_dict()
    strict = path_opt.get(f'strict_load_{which}', True)
    problems = []
    if strict or which == 't':
        problems = [f'{k} has shape {list(state[k].shape)}, {name} expects {list(v.shape)}'
                    for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if strict:
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        if missing:
            problems.append(f'missing {", ".join(missing[:3])}{", ..." if len(missing) > 3 else ""}')
        if unexpected:
            problems.append(f'unexpected {", ".join(unexpected[:3])}{", ..." if len(unexpected) > 3 else ""}')
    if problems:
        raise UserError(f'{opt_path}: option `{key}`: {path} does not fit `{name}` ({"; ".join(problems[:3])}).')
