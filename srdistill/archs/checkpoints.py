"""Checkpoints to networks: a multi-exit checkpoint, a plain BasicSR one (evaluated as one exit), or an exported exit.

The architecture is read from the state dict itself (each registered architecture recognises its own parameter names
and shapes), and checked against the options file when one is given, so a checkpoint of another architecture or
scale gets a clear message, not a shape error. The network is built through BasicSR's ``ARCH_REGISTRY``.
"""
import inspect
import json
import os
import re
from os import path as osp

import torch
from basicsr.utils.registry import ARCH_REGISTRY

from srdistill.archs.multi_exit import build_network, multi_exit_archs, network_opt_from_state_dict
from srdistill.compat import load_options_file
from srdistill.utils.errors import UserError, first_line


def read_state_dicts(ckpt_path):
    """Every set of weights in a checkpoint (see :func:`read_checkpoint`)."""
    return read_checkpoint(ckpt_path)[0]


def read_checkpoint(ckpt_path):
    """Every set of weights in a checkpoint, loaded once: ``{'params': ..., 'params_ema': ...}`` for BasicSR's
    ``net_g_*.pth`` (``params_ema`` only when present), ``{'params': ...}`` for a bare state dict; and the network
    options an export stored with them (``'network'``, see :func:`stored_network_opt`), or None.

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
    network = state.get('network') if keyed else None
    return ({key: {k[len('module.'):] if k.startswith('module.') else k: v for k, v in weights.items()}
             for key, weights in states.items()}, network if isinstance(network, dict) else None)


def stored_network_opt(path, stored=None):
    """The standalone network's options srdistill's exporter stored with an export, or None.

    They hold what weights cannot say (EDSR's ``res_scale``): in the ``.pth`` payload (``stored``, from
    :func:`read_checkpoint`), in a ``.safetensors`` file's metadata, else in the JSON sidecar beside the file
    (``<file>.json``) when that sidecar describes this very file (its ``sha256``).
    """
    if stored:
        return stored
    network = None
    if path.endswith('.safetensors'):
        from safetensors import safe_open
        with safe_open(path, framework='pt') as f:
            network = (f.metadata() or {}).get('network')
        try:
            network = json.loads(network) if network else None
        except ValueError:
            return None
    elif osp.isfile(path + '.json'):
        from srdistill.data.download import sha256sum
        try:
            with open(path + '.json') as f:
                sidecar = json.load(f)
        except (OSError, ValueError):
            return None
        if isinstance(sidecar, dict) and sidecar.get('sha256') == sha256sum(path):
            network = sidecar.get('network')
    return network if isinstance(network, dict) else None


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
    return choose_weights(read_state_dicts(ckpt_path), param_key)


def choose_weights(states, param_key):
    """``states[param_key]`` (``params`` or ``params_ema``) of :func:`read_checkpoint`, else the set there is."""
    return states.get(param_key) or next(iter(states.values()))


def infer_network_opt(state, ckpt_path='checkpoint'):
    """``network_g`` options of the registered network ``state`` belongs to (each architecture recognises its own
    state dicts: :func:`~srdistill.archs.multi_exit.network_opt_from_state_dict`).

    Options that are not weights (e.g. EDSR's ``res_scale``) are the architecture's defaults here; see
    :func:`load_checkpoint` for where they come from.

    Raises:
        UserError: No registered architecture recognises the state dict.
    """
    opt = network_opt_from_state_dict(state)
    if opt is None:
        keys = ', '.join(list(state)[:4])
        raise UserError(f'{ckpt_path} is not a checkpoint of a network srdistill knows (it has {keys}, ...). '
                        f'srdistill reads checkpoints of {", ".join(sorted(multi_exit_archs()))}, of the plain BasicSR '
                        'networks they extend, and their exported exits.')
    adapters = sorted({int(m.group(1)) for k in state if (m := re.match(r'hint_adapters\.(\d+)\.weight$', k))})
    if adapters and adapters != opt['exits']:
        raise UserError(f'{ckpt_path} has hint adapters for exits {adapters} but exits {opt["exits"]}; a multi-exit '
                        'network has one adapter per exit.')
    return opt


def run_options_file(ckpt_path):
    """The options file BasicSR copied into the run's folder, for ``experiments/<name>/models/*.pth``, or None."""
    parts = osp.normpath(osp.abspath(ckpt_path)).split(osp.sep)
    if len(parts) < 3 or parts[-2] != 'models':
        return None
    root = osp.dirname(osp.dirname(osp.abspath(ckpt_path)))
    found = sorted(f for f in os.listdir(root) if f.endswith(('.yml', '.yaml')))
    return osp.join(root, found[0]) if len(found) == 1 else None


def checkpoint_network_opt(state, ckpt_path, opt_path=None, extra=None):
    """The network options of a checkpoint: read from its weights, completed (and checked) by an options file.

    The weights give the architecture and its shape. What they cannot give (EDSR's ``res_scale``, ``img_range``,
    ``rgb_mean``) comes from ``extra`` (the options an export stored with its weights), else ``opt_path``'s
    ``network_g``, else the options file BasicSR copied next to the run (:func:`run_options_file`), else the
    architecture's defaults.

    Raises:
        UserError: The options file describes another architecture or shape.
    """
    net_opt = infer_network_opt(state, ckpt_path)
    free = set(inspect.signature(ARCH_REGISTRY.get(net_opt['type'])).parameters) - set(net_opt)
    free -= {'exit_grad_scale'}  # changes no output: a checkpoint does not need it
    if extra:
        return dict(net_opt, **{k: extra[k] for k in sorted(free) if k in extra})
    source = opt_path or run_options_file(ckpt_path)
    if source is None:
        return net_opt
    given = dict(load_options_file(source).get('network_g') or {})
    if given.get('type') not in (None, net_opt['type']):
        if opt_path is None:  # a run folder of another network: not the options of these weights
            return net_opt
        raise UserError(f'{ckpt_path} does not match {source}: network_g.type is {given["type"]} there, '
                        f'{net_opt["type"]} in the checkpoint.')
    for key, value in net_opt.items():
        if key in given and given[key] != value and not (key == 'exits' and not given[key] and not value):
            raise UserError(f'{ckpt_path} does not match {source}: network_g.{key} is {given[key]} there, '
                            f'{value} in the checkpoint.')
    return dict(net_opt, **{k: given[k] for k in sorted(free) if k in given})


def load_checkpoint(ckpt_path, opt_path=None, param_key='params', scale=None, device='cpu'):
    """Build the network of a checkpoint through BasicSR's ``ARCH_REGISTRY`` and load its weights (strictly).

    Args:
        ckpt_path (str): The checkpoint.
        opt_path (str | None): A training/test options file; its ``network_g`` must describe the same network
            (see :func:`checkpoint_network_opt`).
        param_key (str): ``params`` or ``params_ema`` (falls back to ``params``). Default: ``'params'``.
        scale (int | None): If given, the checkpoint's scale must equal it.
        device (str | torch.device): Default: CPU.

    Returns:
        tuple[nn.Module, dict]: The network (eval mode) and its ``network_g`` options.
    """
    states, stored = read_checkpoint(ckpt_path)
    state = choose_weights(states, param_key)
    net, net_opt = network_from_state_dict(state, ckpt_path, opt_path, stored_network_opt(ckpt_path, stored))
    if scale is not None and scale != net_opt['upscale']:
        raise UserError(f'{ckpt_path} is a x{net_opt["upscale"]} model, but scale {scale} was asked for.')
    return net.to(device), net_opt


def network_from_state_dict(state, ckpt_path, opt_path=None, extra=None):
    """The network (eval mode, on the CPU) of weights already read from ``ckpt_path``, and its options (see
    :func:`checkpoint_network_opt`)."""
    net_opt = checkpoint_network_opt(state, ckpt_path, opt_path, extra)
    net = build_network(net_opt)
    net.load_state_dict(state, strict=True)
    return net.eval(), net_opt


def experiment_label(ckpt_path):
    """A short name for a checkpoint: its experiment's name for ``experiments/<name>/models/*.pth``, else its stem."""
    parts = osp.normpath(osp.abspath(ckpt_path)).split(osp.sep)
    return parts[-3] if len(parts) >= 3 and parts[-2] == 'models' else osp.splitext(parts[-1])[0]
