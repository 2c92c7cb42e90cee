"""Multi-exit SRResNet: BasicSR's MSRResNet trunk with extra upsampling tails branched off intermediate blocks, and
its light-head standalone exit (:class:`MSRResNetLight`)."""

from basicsr.archs.arch_util import ResidualBlockNoBN, default_init_weights, make_layer
from basicsr.archs.srresnet_arch import MSRResNet
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn as nn
from torch.nn import functional as F

from srdistill.archs.light_head import LightHead
from srdistill.archs.multi_exit import MultiExitNet, exit_options, trunk_options

SUPPORTED_SCALES = (2, 3, 4)
FINAL_TAIL = ('upconv1.', 'upconv2.', 'conv_hr.', 'conv_last.')  # MSRResNet's upsampling tail


def upsample_tail(m, feat, x):
    """MSRResNet's upsampling tail, for any module holding its layers (MSRResNet itself or an :class:`ExitTail`).

    Kept identical to ``MSRResNet.forward`` after the body, so that an exit is an MSRResNet weight for weight.

    Args:
        m (nn.Module): Has ``upscale``, ``upconv1`` (``upconv2`` for x4), ``pixel_shuffle``, ``conv_hr``, ``conv_last``,
            ``lrelu``.
        feat (Tensor): Trunk features, (N, num_feat, H, W).
        x (Tensor): The LR input, (N, num_in_ch, H, W); its bilinear upsampling is added to the output.

    Returns:
        Tensor: SR image, (N, num_out_ch, H * upscale, W * upscale).
    """
    if m.upscale == 4:
        out = m.lrelu(m.pixel_shuffle(m.upconv1(feat)))
        out = m.lrelu(m.pixel_shuffle(m.upconv2(out)))
    else:
        out = m.lrelu(m.pixel_shuffle(m.upconv1(feat)))
    out = m.conv_last(m.lrelu(m.conv_hr(out)))
    return out + _bilinear(x, m.upscale)


def _bilinear(x, scale):
    return F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=False)


class ExitTail(nn.Module):
    """The upsampling tail of an MSRResNet (same layers, names and initialisation), attached to an exit."""

    def __init__(self, num_feat, num_out_ch, upscale):
        super().__init__()
        self.upscale = upscale
        if upscale == 4:
            self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(2)
        else:
            self.upconv1 = nn.Conv2d(num_feat, num_feat * upscale * upscale, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(upscale)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        default_init_weights([self.upconv1, self.conv_hr, self.conv_last], 0.1)
        if upscale == 4:
            default_init_weights(self.upconv2, 0.1)

    def forward(self, feat, x):
        return upsample_tail(self, feat, x)


def _srresnet_opt(state):
    """The shape of an MSRResNet-like trunk read from ``state``, or None when ``state`` has none."""
    if 'conv_after_body.weight' in state:  # EDSR's: the same trunk names
        return None
    return trunk_options(state)


def _light_scale(weight, num_out_ch):
    return round((weight.shape[0] / num_out_ch)**0.5)


@ARCH_REGISTRY.register()
class MultiExitSRResNet(MultiExitNet, MSRResNet):
    """SRResNet (BasicSR's MSRResNet: residual blocks without BN) with extra exits for self-distillation.

    The trunk and the final tail are BasicSR's ``MSRResNet`` itself (same parameter names), so with ``exits=[]`` this
    is a plain SRResNet-N whose state dict loads into ``MSRResNet(num_block=N)``. Each exit ``k`` adds a tail on the
    features after residual block ``k``: with ``exit_head='full'`` an :class:`ExitTail` (MSRResNet's tail, so "first
    conv + blocks 1..k + tail k" is an ``MSRResNet(num_block=k)`` weight for weight), with ``'light'`` a
    :class:`~srdistill.archs.light_head.LightHead` (the exit is an :class:`MSRResNetLight`).

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels. Default: 3.
        num_feat (int): Feature channels. Default: 64.
        num_block (int): Residual blocks in the trunk. Default: 32.
        exits (list[int]): Depths after which an extra exit branches, ascending, each in [1, num_block - 1].
            Default: [] (no extra exit).
        upscale (int): 2, 3 or 4. Default: 4.
        exit_head (str): ``'full'`` (default: MSRResNet's upsampling tail, the paper's) or ``'light'``.
        hint_adapters (bool): 1x1 adapters per exit for a FitNets hint loss (training only). Default: False.
        exit_grad_scale (float): Scales the gradient exits send into the shared trunk (training only). Default: 1.
    """

    FINAL_TAIL = FINAL_TAIL

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=32, exits=(), upscale=4, exit_head='full',
                 hint_adapters=False, exit_grad_scale=1.0):
        if upscale not in SUPPORTED_SCALES:
            raise ValueError(f'upscale must be one of {SUPPORTED_SCALES}, got {upscale}.')
        if not isinstance(num_block, int) or num_block < 1:
            raise ValueError(f'num_block must be a positive integer, got {num_block}.')
        MSRResNet.__init__(self, num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_block=num_block,
                           upscale=upscale)
        self.num_out_ch = num_out_ch
        self.init_exits(num_feat, num_block, exits, upscale, exit_head, hint_adapters, exit_grad_scale,
                        num_in_ch=num_in_ch, num_out_ch=num_out_ch)

    def embed(self, x):
        return self.lrelu(self.conv_first(x)), x

    def final_output(self, feat, x):
        return upsample_tail(self, feat, x)

    def make_exit_tail(self):
        if self.exit_head == 'light':
            return LightHead(self.num_feat, self.num_out_ch, self.upscale)
        return ExitTail(self.num_feat, self.num_out_ch, self.upscale)

    def exit_forward(self, tail, feat, x):
        if self.exit_head == 'light':
            return tail(feat) + _bilinear(x, self.upscale)
        return tail(feat, x)

    def exit_network_opt(self, depth):
        opt = dict(num_in_ch=self.num_in_ch, num_out_ch=self.num_out_ch, num_feat=self.num_feat, num_block=depth,
                   upscale=self.upscale)
        light = self.exit_head == 'light' and depth != self.num_block
        return dict(type='MSRResNetLight' if light else 'MSRResNet', **opt)

    def receptive_radius(self, depth=None):
        """``2 * depth + 3`` LR pixels for the full tail, ``2 * depth + 2`` for the light head (any scale).

        - ``conv_first`` (3x3 at LR): 1; each residual block's two 3x3 convolutions: 2, so ``2 * depth``;
        - full tail: ``upconv1`` (3x3 at LR): 1; everything above LR resolution together reaches 1 more LR pixel (x4:
          ``upconv2`` at 2x, 1/2 LR px, then ``conv_hr`` and ``conv_last`` at 4x, 1/2 LR px; x2/x3: ``conv_hr`` and
          ``conv_last`` at s x, 2 px), exactly one at the worst sub-pixel position;
        - light head: its 3x3 convolution at LR: 1;
        - the bilinear skip reaches 1 LR pixel, within the above.

        ``tests/test_architecture.py`` measures it from input gradients for both heads and every scale.
        """
        depth = self.num_block if depth is None else depth
        light = self.exit_head == 'light' and depth != self.num_block
        return 2 * depth + (2 if light else 3)

    @classmethod
    def opt_from_state_dict(cls, state):
        """A MultiExitSRResNet or BasicSR MSRResNet state dict (exits from ``exit_tails.<k>``, the head from their
        layers); None for anything else (a light standalone exit is :class:`MSRResNetLight`'s)."""
        trunk = _srresnet_opt(state)
        if trunk is None or 'upconv1.weight' not in state or 'conv_last.weight' not in state:
            return None
        num_out_ch = int(state['conv_last.weight'].shape[0])
        upscale = 4 if 'upconv2.weight' in state else round((state['upconv1.weight'].shape[0] / trunk['num_feat'])**0.5)
        return dict(type=cls.__name__, **trunk, num_out_ch=num_out_ch, upscale=upscale, **exit_options(state))


@ARCH_REGISTRY.register()
class MSRResNetLight(nn.Module):
    """An SRResNet exit with the light head, standalone: MSRResNet's first convolution and residual blocks, then one
    3x3 convolution to ``num_out_ch * upscale**2`` channels and a pixel shuffle at LR resolution (as ESPCN), plus
    MSRResNet's bilinear skip.

    Same parameter names as an exit of a light-head :class:`MultiExitSRResNet` (``conv_first``, ``body.<i>``,
    ``tail.conv``), so ``exit_state_dict`` loads into it strictly.

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels. Default: 3.
        num_feat (int): Feature channels. Default: 64.
        num_block (int): Residual blocks. Default: 8.
        upscale (int): 2, 3 or 4. Default: 4.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=8, upscale=4):
        super().__init__()
        self.upscale, self.num_block = upscale, num_block
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = make_layer(ResidualBlockNoBN, num_block, num_feat=num_feat)
        self.tail = LightHead(num_feat, num_out_ch, upscale)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        default_init_weights([self.conv_first], 0.1)

    def forward(self, x):
        return self.tail(self.body(self.lrelu(self.conv_first(x)))) + _bilinear(x, self.upscale)

    def receptive_radius(self, depth=None):
        """``2 * num_block + 2`` LR pixels (see :meth:`MultiExitSRResNet.receptive_radius`)."""
        return 2 * self.num_block + 2

    @classmethod
    def opt_from_state_dict(cls, state):
        trunk = _srresnet_opt(state)
        if trunk is None or set(k for k in state if k.startswith('tail.')) != {'tail.conv.weight', 'tail.conv.bias'}:
            return None
        channels = int(state['tail.conv.bias'].shape[0])
        # the pixel shuffle's output channels are not stored: the input's (RGB or gray), else the first that fits
        for out_ch in dict.fromkeys((trunk['num_in_ch'], 3, 1)):
            upscale = _light_scale(state['tail.conv.weight'], out_ch)
            if upscale in SUPPORTED_SCALES and out_ch * upscale**2 == channels:
                return dict(type=cls.__name__, **trunk, num_out_ch=out_ch, upscale=upscale)
        return None
