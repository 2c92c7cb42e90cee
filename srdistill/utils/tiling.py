"""Tiled inference for large images: bounded memory, output equal to untiled inference up to float rounding."""
from collections import OrderedDict

import torch


def _starts(length, tile, step):
    starts = list(range(0, max(length - tile, 0) + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def tiled_forward(fn, x, scale, tile=None, overlap=32):
    """Run ``fn`` on overlapping LR tiles of ``x`` and stitch the SR results.

    Each tile is ``tile`` x ``tile`` LR pixels and overlaps its neighbours by ``overlap``; of every tile only its part
    away from the tile's inner borders (by ``overlap // 2``) is kept, so the stitched output equals untiled inference
    wherever ``overlap // 2`` covers the network's receptive-field radius (SRResNet-k: k + 2 LR pixels, plus the tail).

    Args:
        fn (callable): ``fn(x_tile) -> Tensor | dict[key, Tensor]`` of SR images (N, C, h * scale, w * scale).
        x (Tensor): LR input, (N, C, H, W).
        scale (int): Upscaling factor.
        tile (int | None): Tile size in LR pixels; None (or a tile covering the image) runs ``fn`` once.
        overlap (int): LR pixels shared by neighbouring tiles. Default: 32.

    Returns:
        Tensor | OrderedDict: As ``fn`` returns, for the whole image.
    """
    n, _, h, w = x.shape
    if tile is None or (tile >= h and tile >= w):
        return fn(x)
    if overlap >= tile:
        raise ValueError(f'overlap ({overlap}) must be smaller than the tile ({tile}).')
    half = overlap // 2
    result = None
    for y in _starts(h, min(tile, h), min(tile, h) - overlap):
        for x0 in _starts(w, min(tile, w), min(tile, w) - overlap):
            th, tw = min(tile, h), min(tile, w)
            out = fn(x[..., y:y + th, x0:x0 + tw])
            outs = out if isinstance(out, dict) else {None: out}
            # the part of this tile to keep (LR coordinates): everything but the inner margins
            top = y + (half if y > 0 else 0)
            left = x0 + (half if x0 > 0 else 0)
            bottom = y + th - (half if y + th < h else 0)
            right = x0 + tw - (half if x0 + tw < w else 0)
            if result is None:
                result = OrderedDict((k, v.new_zeros(n, v.shape[1], h * scale, w * scale)) for k, v in outs.items())
            for k, v in outs.items():
                result[k][..., top * scale:bottom * scale, left * scale:right * scale] = \
                    v[..., (top - y) * scale:(bottom - y) * scale, (left - x0) * scale:(right - x0) * scale]
    return result if isinstance(out, dict) else result[None]


@torch.no_grad()
def self_ensemble(fn, x):
    """x8 geometric self-ensemble: the mean of ``fn`` over the 8 flips/rotations of ``x``, each transformed back.

    Works for ``fn`` returning a Tensor or a dict of Tensors (every exit is ensembled).
    """
    total = None
    for k in range(4):
        for flip in (False, True):
            xt = torch.rot90(x, k, (2, 3))
            xt = torch.flip(xt, (3, )) if flip else xt
            out = fn(xt)
            outs = out if isinstance(out, dict) else {None: out}
            back = OrderedDict()
            for key, v in outs.items():
                v = torch.flip(v, (3, )) if flip else v
                back[key] = torch.rot90(v, -k, (2, 3))
            total = back if total is None else OrderedDict((key, total[key] + back[key]) for key in back)
    total = OrderedDict((key, v / 8) for key, v in total.items())
    return total if isinstance(out, dict) else total[None]
