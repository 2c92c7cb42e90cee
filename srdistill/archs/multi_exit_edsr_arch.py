"""Multi-exit EDSR: BasicSR's EDSR trunk with extra upsampling tails branched off intermediate blocks, and its
light-head standalone exit (:class:`EDSRLight`)."""
import re

import torch
from basicsr.archs.arch_util import ResidualBlockNoBN, Upsample, make_layer
from basicsr.archs.edsr_arch import EDSR
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from srdistill.archs.light_head import LightHead
from srdistill.archs.multi_exit import MultiExitNet, exit_options, trunk_options

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)  # BasicSR EDSR's default rgb_mean
FINAL_TAIL = ('conv_after_body.', 'upsample.', 'conv_last.')  # EDSR's tail (after the global residual's body)


class EDSRExitTail(nn.Module):
    """EDSR's tail (same layers, names and default initialisation), attached to an exit: ``conv_after_body``, the
    global residual, ``upsample``, ``conv_last``."""

    def __init__(self, num_feat, num_out_ch, upscale):
        super().__init__()
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = Upsample(upscale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, feat, feat0):
        return self.conv_last(self.upsample(self.conv_after_body(feat) + feat0))


def _upscale(state, num_feat):
    """EDSR's scale from its ``upsample`` convolutions: 2^n has n of them (4 x num_feat each), x3 one (9 x)."""
    convs = sorted(int(m.group(1)) for k in state if (m := re.match(r'upsample\.(\d+)\.weight$', k)))
    if not convs:
        return None
    if len(convs) == 1 and state[f'upsample.{convs[0]}.weight'].shape[0] == 9 * num_feat:
        return 3
    return 2**len(convs)


@ARCH_REGISTRY.register()
class MultiExitEDSR(MultiExitNet, EDSR):
    """EDSR (BasicSR's: ``res_scale``, ``img_range`` and ``rgb_mean`` kept) with extra exits for self-distillation.

    The trunk and the final tail are BasicSR's ``EDSR`` itself (same parameter names), so with ``exits=[]`` this is a
    plain EDSR whose state dict loads into ``EDSR(num_block=N)``. Each exit ``k`` adds, on the features after residual
    block ``k``, an :class:`EDSRExitTail` (``exit_head='full'``: "first conv + blocks 1..k + tail k" is an
    ``EDSR(num_block=k)`` weight for weight) or a light head (:class:`EDSRLight`).

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels. Default: 3.
        num_feat (int): Feature channels. Default: 64.
        num_block (int): Residual blocks in the trunk. Default: 16 (EDSR-baseline).
        exits (list[int]): Depths after which an extra exit branches, ascending, each in [1, num_block - 1].
        upscale (int): 2^n or 3. Default: 4.
        res_scale (float): Residual scaling in the blocks (EDSR: 0.1 for the 256-channel model). Default: 1.
        img_range (float): Image range. Default: 255.
        rgb_mean (tuple[float]): Mean subtracted from the input, RGB. Default: DIV2K's.
        exit_head (str): ``'full'`` (default: EDSR's tail) or ``'light'``.
        hint_adapters (bool): 1x1 adapters per exit for a FitNets hint loss (training only). Default: False.
        exit_grad_scale (float): Scales the gradient exits send into the shared trunk (training only). Default: 1.
    """

    FINAL_TAIL = FINAL_TAIL
    LIGHT_TAIL = 'light_tail'  # not SRResNet's ``tail``: the two light exits have otherwise the same names

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, exits=(), upscale=4, res_scale=1,
                 img_range=255., rgb_mean=DIV2K_MEAN, exit_head='full', hint_adapters=False, exit_grad_scale=1.0):
        if not isinstance(num_block, int) or num_block < 1:
            raise ValueError(f'num_block must be a positive integer, got {num_block}.')
        EDSR.__init__(self, num_in_ch, num_out_ch, num_feat=num_feat, num_block=num_block, upscale=upscale,
                      res_scale=res_scale, img_range=img_range, rgb_mean=rgb_mean)
        self.num_out_ch = num_out_ch
        self.init_exits(num_feat, num_block, exits, upscale, exit_head, hint_adapters, exit_grad_scale,
                        num_in_ch=num_in_ch, num_out_ch=num_out_ch, res_scale=res_scale, img_range=img_range,
                        rgb_mean=list(rgb_mean))

    def embed(self, x):
        mean = self.mean.type_as(x)  # EDSR keeps its mean as a plain tensor (not in the state dict)
        feat0 = self.conv_first((x - mean) * self.img_range)
        return feat0, (feat0, mean)

    def final_output(self, feat, ctx):
        feat0, mean = ctx
        return self.conv_last(self.upsample(self.conv_after_body(feat) + feat0)) / self.img_range + mean

    def make_exit_tail(self):
        if self.exit_head == 'light':
            return LightHead(self.num_feat, self.num_out_ch, self.upscale)
        return EDSRExitTail(self.num_feat, self.num_out_ch, self.upscale)

    def exit_forward(self, tail, feat, ctx):
        feat0, mean = ctx
        out = tail(feat + feat0) if self.exit_head == 'light' else tail(feat, feat0)
        return out / self.img_range + mean

    def exit_network_opt(self, depth):
        opt = {k: self.arch_opt[k] for k in ('num_in_ch', 'num_out_ch', 'num_feat', 'upscale', 'res_scale',
                                             'img_range', 'rgb_mean')}
        light = self.exit_head == 'light' and depth != self.num_block
        return dict(type='EDSRLight' if light else 'EDSR', **opt, num_block=depth)

    def receptive_radius(self, depth=None):
        """``2 * depth + 4`` LR pixels for EDSR's tail, ``2 * depth + 2`` for the light head (any scale).

        - ``conv_first`` (3x3 at LR): 1; each residual block's two 3x3 convolutions: 2, so ``2 * depth``;
        - full tail: ``conv_after_body`` and the first ``upsample`` convolution (3x3 at LR): 2; the convolutions above
          LR resolution (x4: one at 2x and ``conv_last`` at 4x; x2/x3: ``conv_last``) reach 1 more LR pixel at the
          worst sub-pixel position;
        - light head: its 3x3 convolution at LR: 1.

        ``tests/test_architecture.py`` measures it from input gradients.
        """
        depth = self.num_block if depth is None else depth
        light = self.exit_head == 'light' and depth != self.num_block
        return 2 * depth + (2 if light else 4)

    @classmethod
    def opt_from_state_dict(cls, state):
        """A MultiExitEDSR or BasicSR EDSR state dict; None for anything else.

        ``res_scale``, ``img_range`` and ``rgb_mean`` are not weights: they are BasicSR's defaults here, and the
        checkpoint loader takes them from the run's options file (:mod:`srdistill.archs.checkpoints`).
        """
        trunk = trunk_options(state)
        if trunk is None or 'conv_after_body.weight' not in state or 'conv_last.weight' not in state:
            return None
        upscale = _upscale(state, trunk['num_feat'])
        if upscale is None:
            return None
        return dict(type=cls.__name__, **trunk, num_out_ch=int(state['conv_last.weight'].shape[0]), upscale=upscale,
                    **exit_options(state))


@ARCH_REGISTRY.register()
class EDSRLight(nn.Module):
    """An EDSR exit with the light head, standalone: EDSR's mean shift, first convolution, residual blocks and global
    residual, then one 3x3 convolution to ``num_out_ch * upscale**2`` channels and a pixel shuffle at LR resolution.

    Same parameter names as an exit of a light-head :class:`MultiExitEDSR` (``conv_first``, ``body.<i>``,
    ``light_tail.conv``), so ``exit_state_dict`` loads into it strictly. Arguments as BasicSR's ``EDSR``.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=4, upscale=4, res_scale=1, img_range=255.,
                 rgb_mean=DIV2K_MEAN):
        super().__init__()
        self.num_block, self.img_range = num_block, img_range
        self.mean = torch.Tensor(rgb_mean).view(1, 3, 1, 1)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = make_layer(ResidualBlockNoBN, num_block, num_feat=num_feat, res_scale=res_scale, pytorch_init=True)
        self.light_tail = LightHead(num_feat, num_out_ch, upscale)

    def forward(self, x):
        mean = self.mean.type_as(x)
        feat0 = self.conv_first((x - mean) * self.img_range)
        return self.light_tail(self.body(feat0) + feat0) / self.img_range + mean

    def receptive_radius(self, depth=None):
        """``2 * num_block + 2`` LR pixels (see :meth:`MultiExitEDSR.receptive_radius`)."""
        return 2 * self.num_block + 2

    @classmethod
    def opt_from_state_dict(cls, state):
        trunk = trunk_options(state)
        if trunk is None or {k for k in state if k.startswith('light_tail.')} != {'light_tail.conv.weight',
                                                                                  'light_tail.conv.bias'}:
            return None
        channels = int(state['light_tail.conv.bias'].shape[0])
        for out_ch in dict.fromkeys((trunk['num_in_ch'], 3, 1)):  # the pixel shuffle's output channels: see SRResNet's
            upscale = round((channels / out_ch)**0.5)
            if out_ch * upscale**2 == channels:
                return dict(type=cls.__name__, **trunk, num_out_ch=out_ch, upscale=upscale)
        return None
