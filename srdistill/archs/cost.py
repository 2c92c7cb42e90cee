"""What each exit costs: multiply-accumulates at a stated output size (its measured latency:
:mod:`srdistill.benchmark.runtimes`)."""
import copy

import torch
from torch import nn

# the usual convention in lightweight-SR tables: MACs for a 1280x720 output image
MAC_OUTPUT_SIZE = (720, 1280)


def exit_macs(net, depth, output_size=MAC_OUTPUT_SIZE):
    """Multiply-accumulates of the convolutions run for the output at ``depth``, for an ``output_size`` image.

    Counted with forward hooks on a meta-device copy (no memory, no compute): a convolution costs
    ``output elements x in_channels / groups x kernel area``. Activations, pixel shuffle and the bilinear skip are
    not counted (they are below 0.1% here).
    """
    h, w = output_size
    if h % net.upscale or w % net.upscale:
        raise ValueError(f'output size {output_size} is not a multiple of the scale {net.upscale}.')
    return forward_macs(net, (h // net.upscale, w // net.upscale), exit=depth)


def forward_macs(net, lr_size, exit=None):  # noqa: A002 (the forward's own argument name)
    """Convolution multiply-accumulates of ``net(x, exit=exit)`` for one LR image of ``lr_size`` (h, w).

    ``exit='all'`` counts the training/validation pass (trunk once, every tail).
    """
    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]

    meta = meta_copy(net)
    hooks = [m.register_forward_hook(count) for m in meta.modules() if isinstance(m, nn.Conv2d)]
    x = torch.empty(1, input_channels(meta), *lr_size, device='meta')
    with torch.no_grad():
        if exit is None:
            meta(x)  # any network, multi-exit or not
        else:
            meta(x, exit=exit)
    for hook in hooks:
        hook.remove()
    return total


def meta_copy(net):
    """The same network on the meta device (no memory): rebuilt from ``arch_opt`` (a multi-exit network), else a copy
    of any other module moved there."""
    if hasattr(net, 'arch_opt'):
        with torch.device('meta'):
            return type(net)(**net.arch_opt)
    return copy.deepcopy(net).to('meta')


def input_channels(net):
    """Input channels of a network: those of its first convolution."""
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d)).in_channels

