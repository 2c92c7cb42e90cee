"""The light exit head: one 3x3 convolution to ``num_out_ch * upscale**2`` channels and a pixel shuffle, at LR
resolution (as ESPCN does).

A full SRResNet tail at 64 channels and x4 costs about as much as 18 residual blocks (its convolutions at 2x and 4x
resolution), so an SRResNet-8 exit is only about 1.9x cheaper than SRResNet-32; this head costs about a third of one
block (``docs/architecture.md`` gives the multiply-adds of both).
"""
from basicsr.archs.arch_util import default_init_weights
from torch import nn


class LightHead(nn.Module):
    """``conv`` (num_feat -> num_out_ch * upscale**2, 3x3) then ``PixelShuffle(upscale)``; the architecture adds
    its own skip (SRResNet's bilinear upsampling, EDSR's mean) around it."""

    def __init__(self, num_feat, num_out_ch, upscale):
        super().__init__()
        self.conv = nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(upscale)
        default_init_weights([self.conv], 0.1)

    def forward(self, feat):
        return self.pixel_shuffle(self.conv(feat))
