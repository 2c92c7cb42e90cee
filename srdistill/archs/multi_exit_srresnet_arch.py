"""Multi-exit SRResNet: BasicSR's MSRResNet trunk with extra upsampling tails branched off intermediate blocks."""
from collections import OrderedDict

import torch
from basicsr.archs.arch_util import default_init_weights
from basicsr.archs.srresnet_arch import MSRResNet
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn as nn
from torch.nn import functional as F

SUPPORTED_SCALES = (2, 3, 4)


def validate_exits(exits, num_block):
    """Check an ``exits`` list and return it as a tuple of ints.

    Args:
        exits (list[int] | tuple[int] | None): Depths (number of residual blocks, 1-based) after which an exit branches.
        num_block (int): Residual blocks in the trunk; the trunk's own output is the deepest exit and is not listed.

    Returns:
        tuple[int]: The exits, ascending.

    Raises:
        ValueError: If the list is not strictly ascending integers in ``[1, num_block - 1]``.
    """
    exits = tuple(exits or ())
    if any(isinstance(e, bool) or not isinstance(e, int) for e in exits):
        raise ValueError(f'exits must be a list of integers (block depths), got {list(exits)}.')
    if len(set(exits)) != len(exits):
        raise ValueError(f'exits must not repeat a depth, got {list(exits)}.')
    if list(exits) != sorted(exits):
        raise ValueError(f'exits must be in ascending order, got {list(exits)}.')
    bad = [e for e in exits if not 1 <= e < num_block]
    if bad:
        raise ValueError(f'exits must lie in [1, num_block - 1] = [1, {num_block - 1}] (the trunk output after block '
                         f'{num_block} is always the final exit), got {bad} in {list(exits)}.')
    return exits


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
    return out + F.interpolate(x, scale_factor=m.upscale, mode='bilinear', align_corners=False)


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient is multiplied by ``scale`` on the way back."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def scale_grad(x, scale):
    """``x`` unchanged, its gradient times ``scale`` (no-op at 1)."""
    return x if scale == 1 else _ScaleGrad.apply(x, scale)


def _identity_conv1x1(num_feat):
    conv = nn.Conv2d(num_feat, num_feat, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(num_feat).view(num_feat, num_feat, 1, 1))
        conv.bias.zero_()
    return conv


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


@ARCH_REGISTRY.register()
class MultiExitSRResNet(MSRResNet):
    """SRResNet (BasicSR's MSRResNet: residual blocks without BN) with extra exits for self-distillation.

    The trunk and the final tail are BasicSR's ``MSRResNet`` itself (same parameter names), so with ``exits=[]`` this
    is a plain SRResNet-N whose state dict loads into ``MSRResNet(num_block=N)``. Each exit ``k`` adds an
    :class:`ExitTail` on the features after residual block ``k``; "first conv + blocks 1..k + tail k" is then an
    ``MSRResNet(num_block=k)`` weight for weight (parameters ``exit_tails.<k>.*`` map to the MSRResNet tail's).

    Outputs are named by depth: the exit after block 8 is ``8``, the final output of a 32-block trunk is ``32``.

    Args:
        num_in_ch (int): Input channels. Default: 3.
        num_out_ch (int): Output channels. Default: 3.
        num_feat (int): Feature channels. Default: 64.
        num_block (int): Residual blocks in the trunk. Default: 32.
        exits (list[int]): Depths after which an extra exit branches, ascending, each in [1, num_block - 1].
            Default: [] (no extra exit).
        upscale (int): 2, 3 or 4. Default: 4.
        hint_adapters (bool): Add a learned 1x1 convolution per exit (``hint_adapters.<k>``, initialised to the
            identity) that maps the exit's features onto the deepest ones for a FitNets hint loss
            (:class:`~srdistill.losses.hint_loss.HintLoss`). Training-only: no output uses it, and exported exits
            drop it. Default: False.
        exit_grad_scale (float): Multiplies the gradient an exit's tail sends back into the shared trunk (the blocks
            before the exit); the tail's own gradient is unchanged. Above 1 the shared blocks lean towards serving the
            exit, below 1 towards the final output; 0 trains the exit tail on features it cannot change. Training
            only: outputs are the same for any value. Default: 1.
    """

    def __init__(self, num_in_ch=3, num_out_ch=3, num_feat=64, num_block=32, exits=(), upscale=4,
                 hint_adapters=False, exit_grad_scale=1.0):
        if upscale not in SUPPORTED_SCALES:
            raise ValueError(f'upscale must be one of {SUPPORTED_SCALES}, got {upscale}.')
        if not isinstance(num_block, int) or num_block < 1:
            raise ValueError(f'num_block must be a positive integer, got {num_block}.')
        exits = validate_exits(exits, num_block)
        super().__init__(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_block=num_block,
                         upscale=upscale)
        if isinstance(exit_grad_scale, bool) or not isinstance(exit_grad_scale, (int, float)) or exit_grad_scale < 0:
            raise ValueError(f'exit_grad_scale must be a number >= 0, got {exit_grad_scale!r}.')
        self.num_block = num_block
        self.exits = exits
        self.exit_grad_scale = float(exit_grad_scale)
        self.exit_tails = nn.ModuleDict({str(k): ExitTail(num_feat, num_out_ch, upscale) for k in exits})
        if hint_adapters:
            if not exits:
                raise ValueError('hint_adapters needs at least one exit (network_g.exits): they map exit features.')
            self.hint_adapters = nn.ModuleDict({str(k): _identity_conv1x1(num_feat) for k in exits})

    @property
    def depths(self):
        """tuple[int]: Depth of every output, ascending; the last is the final output (``num_block``)."""
        return self.exits + (self.num_block,)

    def forward_with_features(self, x):
        """Every output from one pass of the trunk, and the trunk features they branch off.

        Args:
            x (Tensor): LR input, (N, num_in_ch, H, W).

        Returns:
            tuple[OrderedDict[int, Tensor], list[Tensor]]: ``{depth: SR image}`` as ``forward(x, exit='all')``, and
            the trunk features ``feats[d]`` after residual block ``d`` for ``d = 0..num_block`` (``feats[0]``: after
            the first convolution), each (N, num_feat, H, W). Feature-level distillation losses read them.
        """
        outputs = OrderedDict()
        feat = self.lrelu(self.conv_first(x))
        feats = [feat]
        for depth, block in enumerate(self.body, start=1):
            feat = block(feat)
            feats.append(feat)
            if depth in self.exits:
                outputs[depth] = self._exit_output(depth, feat, x)
        outputs[self.num_block] = upsample_tail(self, feat, x)
        return outputs, feats

    def _exit_output(self, depth, feat, x):
        return self.exit_tails[str(depth)](scale_grad(feat, self.exit_grad_scale), x)

    def forward(self, x, exit=None, return_features=False):  # noqa: A002 (``exit`` is the natural name here)
        """Run the network.

        Args:
            x (Tensor): LR input, (N, num_in_ch, H, W).
            exit (int | str | list[int] | None): ``None`` (default): the final output only; no exit tail runs.
                An int ``k`` (an exit depth or ``num_block``): that output only; only blocks 1..k run.
                ``'all'``: every output from one pass of the trunk. A list of depths: those outputs from one pass
                that stops at the deepest of them.
            return_features (bool): With ``exit='all'``, also return the trunk features (see
                :meth:`forward_with_features`; through ``forward`` so that DDP wrappers see the call).

        Returns:
            Tensor | OrderedDict[int, Tensor]: SR image(s), (N, num_out_ch, H * upscale, W * upscale); for ``'all'``
            (or a list) an ordered dict ``{depth: image}``, shallowest first.
        """
        if return_features:
            if exit != 'all':
                raise ValueError("return_features=True needs exit='all'.")
            return self.forward_with_features(x)
        if exit is None:
            return super().forward(x)
        if exit == 'all':
            wanted = self.depths
        elif isinstance(exit, (list, tuple)) and exit and all(e in self.depths for e in exit):
            wanted = tuple(sorted(set(exit)))
        elif not isinstance(exit, (list, tuple)) and exit in self.depths:
            wanted = (exit, )
        else:
            raise ValueError(f"exit must be None, 'all', one of {list(self.depths)} or a list of them, got {exit!r}.")

        outputs = OrderedDict()
        feat = self.lrelu(self.conv_first(x))
        for depth, block in enumerate(self.body, start=1):
            feat = block(feat)
            if depth in wanted:
                is_final = depth == self.num_block
                outputs[depth] = upsample_tail(self, feat, x) if is_final else self._exit_output(depth, feat, x)
                if depth == wanted[-1]:
                    break
        return outputs[exit] if isinstance(exit, int) else outputs
