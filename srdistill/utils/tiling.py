"""Tiled inference for large images: bounded memory, output equal to untiled inference when the tiles' overlap covers
the network's receptive field (its architecture's ``receptive_radius``)."""
from collections import OrderedDict

import torch

from srdistill.utils.errors import UserError


def _starts(length, tile, step):
    starts = list(range(0, max(length - tile, 0) + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def tile_windows(h, w, tile=None, overlap=32):
    """The LR windows that tiled inference runs, and the part of each one's output it keeps.

    Each window is ``tile`` x ``tile`` LR pixels (less where the image is smaller) and overlaps its neighbours by
    ``overlap``; of every window only its part away from its inner borders (by ``overlap // 2``) is kept, so the kept
    parts tile the image, and each kept pixel equals untiled inference when ``overlap // 2`` covers the network's
    receptive-field radius (the architecture's ``receptive_radius``).

    Args:
        h (int): LR image height.
        w (int): LR image width.
        tile (int | None): Window size in LR pixels; None (or a tile covering the image): one window, the image.
        overlap (int): LR pixels shared by neighbouring windows. Default: 32.

    Returns:
        list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]: ``((y0, y1, x0, x1), (top, bottom, left,
        right))`` per window: the window and the kept part, both in LR image coordinates (end exclusive).

    Raises:
        ValueError: ``overlap`` is not smaller than ``tile``.
    """
    if tile is None or (tile >= h and tile >= w):
        return [((0, h, 0, w), (0, h, 0, w))]
    if overlap >= tile:
        raise ValueError(f'overlap ({overlap}) must be smaller than the tile ({tile}).')
    half = overlap // 2
    th, tw = min(tile, h), min(tile, w)
    windows = []
    for y in _starts(h, th, th - overlap):
        for x in _starts(w, tw, tw - overlap):
            keep = (y + (half if y > 0 else 0), y + th - (half if y + th < h else 0),
                    x + (half if x > 0 else 0), x + tw - (half if x + tw < w else 0))
            windows.append(((y, y + th, x, x + tw), keep))
    return windows


def plan_overlap(tile, overlap, radius):
    """The tile overlap to use, and a note when the tiles are not (known to be) exact.

    Args:
        tile (int | None): ``--tile``; None: no tiling (the overlap is unused).
        overlap (int | None): ``--tile-overlap``; None: exact for the network, ``2 * radius`` (32 when unknown).
        radius (int | None): The network's receptive-field radius in LR pixels, None when unknown.

    Returns:
        tuple[int, str | None]: The overlap, and a one-line note for the user (None when the tiles are exact).

    Raises:
        UserError: The tile is too small for the overlap.
    """
    exact = None if radius is None else 2 * radius
    chosen = overlap if overlap is not None else (exact or 32)
    if tile is None:
        return chosen, None
    if overlap is None and exact is not None and tile <= exact:
        raise UserError(f'--tile {tile} is too small for exact tiles of this network: its receptive field reaches '
                        f'{radius} LR pixels, so tiles overlap by {exact}. Use --tile {2 * exact} or so (at least '
                        f'{exact + 1}), or a smaller --tile-overlap (tile seams then differ slightly from untiled '
                        'output).')
    if not 0 <= chosen < tile:
        raise UserError(f'--tile {tile} must be larger than --tile-overlap {chosen}.')
    if radius is None:
        return chosen, (f'note: the receptive field of this model is unknown; tiles overlap by {chosen} LR pixels, '
                        f'exact only if it reaches at most {chosen // 2}.')
    if chosen // 2 < radius:
        return chosen, (f'note: --tile-overlap {chosen} is not exact for this network (its receptive field reaches '
                        f'{radius} LR pixels; {exact} is exact): pixels near tile seams differ slightly from untiled '
                        'output.')
    return chosen, None


def tiled_forward(fn, x, scale, tile=None, overlap=32):
    """Run ``fn`` on overlapping LR tiles of ``x`` (see :func:`tile_windows`) and stitch the SR results.

    The stitched result is a float tensor of the whole SR image on ``x``'s device (evaluation keeps every exit);
    ``srdistill.inference`` stitches straight into the 8/16-bit output instead.

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
    windows = tile_windows(h, w, tile, overlap)
    if len(windows) == 1:
        return fn(x)
    result = None
    for (y0, y1, x0, x1), (top, bottom, left, right) in windows:
        out = fn(x[..., y0:y1, x0:x1])
        outs = out if isinstance(out, dict) else {None: out}
        if result is None:
            result = OrderedDict((k, v.new_zeros(n, v.shape[1], h * scale, w * scale)) for k, v in outs.items())
        for k, v in outs.items():
            result[k][..., top * scale:bottom * scale, left * scale:right * scale] = \
                v[..., (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale]
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
