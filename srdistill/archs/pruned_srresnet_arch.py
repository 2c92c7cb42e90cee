"""A channel-pruned SRResNet: BasicSR's MSRResNet layout (same layer names) with a width per layer group, so a pruned
exit is a network of its own that loads from its own file (:mod:`srdistill.pruning`)."""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn as nn

from srdistill.archs.multi_exit import MultiExitNet
from srdistill.archs.multi_exit_srresnet_arch import SUPPORTED_SCALES, upsample_tail


class PrunedResidualBlock(nn.Module):
    """BasicSR's ``ResidualBlockNoBN`` (``x + conv2(relu(conv1(x)))``, same names) with its own inner width."""

    def __init__(self, num_feat, inner_feat):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, inner_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(inner_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x)))


def shuffle_factors(upscale):
    """The pixel-shuffle factor of each upsampling stage of an MSRResNet tail: x4 is two x2 stages."""
    return (2, 2) if upscale == 4 else (upscale, )


def _widths(name, value, count, default):
    if value is None:
        return [default] * count
    if (not isinstance(value, (list, tuple)) or len(value) != count
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise ValueError(f'{name} must be a list of {count} positive integers, got {value!r}.')
    return list(value)


@ARCH_REGISTRY.register()
class PrunedMSRResNet(MultiExitNet, nn.Module):
    """An MSRResNet with a width per layer group, as structured pruning leaves it.

    Same layers and parameter names as BasicSR's ``MSRResNet`` (``conv_first``, ``body.<i>.conv1/conv2``,
    ``upconv1``, ``upconv2`` for x4, ``conv_hr``, ``conv_last``) and the same forward (bilinear skip included); only the
    channel counts differ:

    - ``num_feat``: the residual stream (``conv_first``'s output, every block's output, ``upconv1``'s input);
    - ``block_feat[i]``: inside block ``i`` (``body.<i>.conv1``'s output, ``conv2``'s input);
    - ``up_feat[j]``: after upsampling stage ``j``'s pixel shuffle (``upconv<j+1>`` writes ``up_feat[j] * f**2``
      channels, ``f`` the shuffle factor); one stage for x2/x3, two for x4;
    - ``hr_feat``: ``conv_hr``'s output.

    With every width equal to ``num_feat`` it is an ``MSRResNet`` weight for weight. It has one output (no exits) and
    the multi-exit interface of :class:`~srdistill.archs.multi_exit.MultiExitNet` (``depths``, ``exit_network``, costs),
    so evaluation, export, inference and the benchmark take it like any exported exit.

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels. Default: 3.
        num_feat (int): Residual-stream channels. Default: 64.
        num_block (int): Residual blocks. Default: 8.
        upscale (int): 2, 3 or 4. Default: 4.
        block_feat (list[int] | None): Inner width of each block. Default: ``num_feat`` each.
        up_feat (list[int] | None): Width after each upsampling stage. Default: ``num_feat`` each.
        hr_feat (int | None): ``conv_hr``'s output channels. Default: ``num_feat``.
        exits (list): Must be empty (a pruned network has one output); accepted for the options vocabulary.
    """

    HAS_EXITS = False
    FINAL_TAIL = ('upconv1.', 'upconv2.', 'conv_hr.', 'conv_last.')

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=8, upscale=4, block_feat=None, up_feat=None,
                 hr_feat=None, exits=()):
        super().__init__()
        if upscale not in SUPPORTED_SCALES:
            raise ValueError(f'upscale must be one of {SUPPORTED_SCALES}, got {upscale}.')
        if exits:
            raise ValueError(f'PrunedMSRResNet has one output and no exits, got exits={list(exits)}.')
        if not isinstance(num_block, int) or isinstance(num_block, bool) or num_block < 1:
            raise ValueError(f'num_block must be a positive integer, got {num_block}.')
        factors = shuffle_factors(upscale)
        block_feat = _widths('block_feat', block_feat, num_block, num_feat)
        up_feat = _widths('up_feat', up_feat, len(factors), num_feat)
        hr_feat = _widths('hr_feat', None if hr_feat is None else [hr_feat], 1, num_feat)[0]
        self.num_out_ch = num_out_ch
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(PrunedResidualBlock(num_feat, w) for w in block_feat))
        self.upconv1 = nn.Conv2d(num_feat, up_feat[0] * factors[0]**2, 3, 1, 1)
        if upscale == 4:
            self.upconv2 = nn.Conv2d(up_feat[0], up_feat[1] * 4, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(factors[0])
        self.conv_hr = nn.Conv2d(up_feat[-1], hr_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(hr_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        self.init_exits(num_feat, num_block, [], upscale, num_in_ch=num_in_ch, num_out_ch=num_out_ch,
                        block_feat=block_feat, up_feat=up_feat, hr_feat=hr_feat)
        del self.arch_opt['exits']  # not an argument a pruned network needs

    def embed(self, x):
        return self.lrelu(self.conv_first(x)), x

    def final_output(self, feat, x):
        return upsample_tail(self, feat, x)

    def make_exit_tail(self):
        raise ValueError('PrunedMSRResNet has no exits.')

    def exit_forward(self, tail, feat, ctx):
        raise ValueError('PrunedMSRResNet has no exits.')

    def exit_network_opt(self, depth):
        return dict(type=type(self).__name__, **self.arch_opt)

    def receptive_radius(self, depth=None):
        """``2 * num_block + 3`` LR pixels, as MSRResNet's (widths do not change it)."""
        return 2 * self.num_block + 3

    @classmethod
    def opt_from_state_dict(cls, state):
        """Its options read from an MSRResNet-named state dict whose widths are not all equal (an equal-width one is a
        plain MSRResNet: :class:`~srdistill.archs.multi_exit_srresnet_arch.MultiExitSRResNet`'s); None otherwise."""
        opt = msrresnet_widths(state)
        if opt is None or uniform(opt):
            return None
        return dict(type=cls.__name__, **opt)


def msrresnet_widths(state):
    """Every width of an MSRResNet-named state dict without exits (see :class:`PrunedMSRResNet`'s arguments), or None
    when ``state`` is not one (other names, exit tails, or shapes that do not chain)."""
    keys = {'conv_first.weight', 'upconv1.weight', 'conv_hr.weight', 'conv_last.weight'}
    if not keys <= set(state) or any(k.startswith(('exit_tails.', 'hint_adapters.', 'conv_after_body.'))
                                     for k in state):
        return None
    blocks = 0
    while f'body.{blocks}.conv1.weight' in state:
        blocks += 1
    if blocks == 0:
        return None
    num_feat, num_in_ch = (int(s) for s in state['conv_first.weight'].shape[:2])
    block_feat = [int(state[f'body.{i}.conv1.weight'].shape[0]) for i in range(blocks)]
    upscale = 4 if 'upconv2.weight' in state else None
    stages = ['upconv1.weight', 'upconv2.weight'] if upscale == 4 else ['upconv1.weight']
    if upscale is None:  # x2 or x3: upconv1 writes hr_in * s**2 channels, conv_hr reads hr_in
        hr_in = int(state['conv_hr.weight'].shape[1])
        ratio = state['upconv1.weight'].shape[0] / hr_in
        upscale = next((s for s in (2, 3) if s * s == ratio), None)
        if upscale is None:
            return None
    factors = shuffle_factors(upscale)
    up_feat = [int(state[k].shape[0]) // (f * f) for k, f in zip(stages, factors)]
    opt = dict(num_in_ch=num_in_ch, num_out_ch=int(state['conv_last.weight'].shape[0]), num_feat=num_feat,
               num_block=blocks, upscale=upscale, block_feat=block_feat, up_feat=up_feat,
               hr_feat=int(state['conv_hr.weight'].shape[0]))
    with torch.device('meta'):  # the shapes must chain: build it and compare every tensor's shape
        expected = PrunedMSRResNet(**opt).state_dict()
    if set(expected) != set(state) or any(tuple(expected[k].shape) != tuple(state[k].shape) for k in expected):
        return None
    return opt


def uniform(opt):
    """Whether every width of ``opt`` (:func:`msrresnet_widths`) equals ``num_feat``: a plain MSRResNet."""
    widths = opt['block_feat'] + opt['up_feat'] + [opt['hr_feat']]
    return all(w == opt['num_feat'] for w in widths)
