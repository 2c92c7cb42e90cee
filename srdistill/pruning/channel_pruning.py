"""Structured (channel) pruning of an SRResNet exit by weight magnitude, into a :class:`PrunedMSRResNet`.

Why not torch-pruning: its dependency graph does not model ``PixelShuffle`` (an output channel of the shuffle is
``f**2`` consecutive channels of the convolution before it). On BasicSR's MSRResNet, torch-pruning 1.6.1's
``MetaPruner`` stops with ``IndexError: index 32 is out of bounds for dimension 0 with size 32`` (docs/pruning.md),
and leaving the upsampling convolutions out of it leaves the tail, about 70% of an SRResNet-8's multiply-adds,
unpruned. The network here is fixed and small, so its coupled channel groups are written out below.

Channel groups (each pruned to ``1 - ratio`` of its channels, rounded to a multiple of ``round_to``):

- the residual stream: written by ``conv_first`` and every ``body.<i>.conv2``, read by every ``body.<i>.conv1`` and
  ``upconv1``; one set of channels for all of them, since the blocks add into it;
- inside each block: ``body.<i>.conv1``'s output, ``body.<i>.conv2``'s input;
- after each upsampling stage: the pixel shuffle's output channels (``f**2`` channels of ``upconv<j+1>`` each), read
  by the next upsampling convolution or ``conv_hr``;
- ``conv_hr``'s output, read by ``conv_last``.

The criterion is magnitude: a channel's score is the mean absolute weight of every filter that writes it and every
input slice that reads it, each layer's scores divided by that layer's mean score so that no layer dominates by its
scale. ``conv_first``'s input and ``conv_last``'s output (the images) are never pruned.

How many channels each group keeps (``mode``):

- ``uniform``: ``1 - ratio`` of every group. An MSRResNet stays an MSRResNet, narrower (every width equal);
- ``global``: the same multiply-adds as ``uniform`` at that ratio, spent where the scores are highest: channels are
  removed ``round_to`` at a time from the group whose next channels have the lowest score per multiply-add they cost
  (a channel of ``conv_hr`` runs at 16x the pixels of one in the trunk at x4), so the widths differ per group and the
  result is a :class:`~srdistill.archs.pruned_srresnet_arch.PrunedMSRResNet`.
"""
from collections import OrderedDict

import torch

from srdistill.archs.pruned_srresnet_arch import msrresnet_widths, shuffle_factors

MODES = ('uniform', 'global')


def channel_groups(opt):
    """The prunable channel groups of a :class:`PrunedMSRResNet` of options ``opt`` (:func:`msrresnet_widths`).

    Returns:
        list[dict]: ``name`` (``'stream'``, ``'block<i>'``, ``'up<j>'``, ``'hr'``), ``width`` (channels),
        ``writers`` and ``readers``: lists of ``(parameter prefix, channels per group channel)``; a writer's output
        channels ``c * n .. c * n + n - 1`` (a pixel shuffle's ``n = f**2``) make group channel ``c``, a reader's input
        channel ``c`` is group channel ``c``.
    """
    blocks = range(opt['num_block'])
    factors = shuffle_factors(opt['upscale'])
    ups = ['upconv1', 'upconv2'][:len(factors)]
    groups = [dict(name='stream', width=opt['num_feat'],
                   writers=[('conv_first', 1)] + [(f'body.{i}.conv2', 1) for i in blocks],
                   readers=[(f'body.{i}.conv1', 1) for i in blocks] + [('upconv1', 1)])]
    groups += [dict(name=f'block{i}', width=opt['block_feat'][i], writers=[(f'body.{i}.conv1', 1)],
                    readers=[(f'body.{i}.conv2', 1)]) for i in blocks]
    for j, (up, f) in enumerate(zip(ups, factors)):
        reader = ups[j + 1] if j + 1 < len(ups) else 'conv_hr'
        groups.append(dict(name=f'up{j}', width=opt['up_feat'][j], writers=[(up, f * f)], readers=[(reader, 1)]))
    groups.append(dict(name='hr', width=opt['hr_feat'], writers=[('conv_hr', 1)], readers=[('conv_last', 1)]))
    return groups


def channel_scores(state, group):
    """Magnitude score of each channel of ``group`` (:func:`channel_groups`) in ``state``: see the module docstring."""
    total = torch.zeros(group['width'], dtype=torch.float64)
    for prefix, n in group['writers']:
        w = state[f'{prefix}.weight'].double().abs()
        per = w.reshape(group['width'], n, -1).mean(dim=(1, 2))
        total += per / per.mean().clamp_min(1e-12)
    for prefix, _ in group['readers']:
        w = state[f'{prefix}.weight'].double().abs()
        per = w.transpose(0, 1).reshape(group['width'], -1).mean(dim=1)
        total += per / per.mean().clamp_min(1e-12)
    return total


def kept_count(width, ratio, round_to=4):
    """Channels a group of ``width`` keeps at pruning ``ratio``: ``(1 - ratio) * width`` rounded to a multiple of
    ``round_to`` (at least ``round_to``, at most ``width``; a group narrower than ``round_to`` keeps at least one)."""
    if not 0 <= ratio < 1:
        raise ValueError(f'the pruning ratio must lie in [0, 1), got {ratio}.')
    if width <= round_to:
        return max(1, min(width, round((1 - ratio) * width)))
    keep = round_to * round((1 - ratio) * width / round_to)
    return min(width, max(round_to, keep))


def macs_per_lr_pixel(opt):
    """Convolution multiply-adds per LR pixel of a :class:`PrunedMSRResNet` of options ``opt`` (or an MSRResNet's with
    its widths filled in): each layer's ``in x out x 9`` times the pixels it runs at (``tests/test_pruning.py`` checks
    it against the hook count of :func:`~srdistill.archs.cost.exit_macs`)."""
    s, f = opt['num_feat'], shuffle_factors(opt['upscale'])
    macs = opt['num_in_ch'] * s + sum(2 * s * b for b in opt['block_feat'])
    width, pixels = s, 1
    for up, factor in zip(opt['up_feat'], f):
        macs += width * up * factor**2 * pixels
        width, pixels = up, pixels * factor**2
    macs += width * opt['hr_feat'] * pixels + opt['hr_feat'] * opt['num_out_ch'] * pixels
    return 9 * macs


def _with_widths(opt, widths):
    return dict(opt, num_feat=widths['stream'], block_feat=[widths[f'block{i}'] for i in range(opt['num_block'])],
                up_feat=[widths[f'up{j}'] for j in range(len(opt['up_feat']))], hr_feat=widths['hr'])


def global_widths(opt, scores, target_macs, round_to=4):
    """Widths per group (``mode: global``): remove channels ``round_to`` at a time, lowest score per multiply-add saved
    first, until the network costs at most ``target_macs`` per LR pixel (:func:`macs_per_lr_pixel`).

    Args:
        opt (dict): The network's widths (:func:`~srdistill.archs.pruned_srresnet_arch.msrresnet_widths`).
        scores (dict[str, Tensor]): :func:`channel_scores` per group name.
        target_macs (float): Multiply-adds per LR pixel to reach.
        round_to (int): Channels removed at a time; no group goes below it.

    Returns:
        dict[str, int]: Channels kept per group.
    """
    widths = {g['name']: g['width'] for g in channel_groups(opt)}
    order = {name: torch.sort(score).values for name, score in scores.items()}  # removal order: lowest first
    removed = dict.fromkeys(widths, 0)
    now = macs_per_lr_pixel(_with_widths(opt, widths))
    while now > target_macs:
        best = None
        for name, width in widths.items():
            if width - round_to < min(round_to, width):
                continue
            saved = now - macs_per_lr_pixel(_with_widths(opt, dict(widths, **{name: width - round_to})))
            lost = float(order[name][removed[name]:removed[name] + round_to].sum())
            if saved > 0 and (best is None or lost / saved < best[0]):
                best = (lost / saved, name, saved)
        if best is None:
            break  # every group at its floor
        _, name, saved = best
        widths[name] -= round_to
        removed[name] += round_to
        now -= saved
    return widths


def pruned_options(opt, ratio, round_to=4):
    """The options of the :class:`PrunedMSRResNet` that pruning a network of options ``opt``
    (:func:`~srdistill.archs.pruned_srresnet_arch.msrresnet_widths`, or an ``MSRResNet``'s) at ``ratio`` gives: the
    widths depend on the ratio only, not on the weights, so a plan knows the pruned network before it is trained."""
    opt = dict(opt)
    opt.pop('type', None)
    for key in ('num_in_ch', 'num_out_ch'):
        opt.setdefault(key, 3)
    opt.setdefault('block_feat', [opt['num_feat']] * opt['num_block'])
    opt.setdefault('up_feat', [opt['num_feat']] * len(shuffle_factors(opt['upscale'])))
    opt.setdefault('hr_feat', opt['num_feat'])
    widths = {g['name']: kept_count(g['width'], ratio, round_to) for g in channel_groups(opt)}
    return dict(type='PrunedMSRResNet', num_in_ch=opt['num_in_ch'], num_out_ch=opt['num_out_ch'],
                num_feat=widths['stream'], num_block=opt['num_block'], upscale=opt['upscale'],
                block_feat=[widths[f'block{i}'] for i in range(opt['num_block'])],
                up_feat=[widths[f'up{j}'] for j in range(len(opt['up_feat']))], hr_feat=widths['hr'])


def prune_state_dict(state, ratio, round_to=4, mode='uniform'):
    """Prune an MSRResNet-named state dict (a BasicSR ``MSRResNet``, a full-head exit, or a pruned one) by magnitude.

    Args:
        state (dict): Weights of the network (:func:`~srdistill.archs.pruned_srresnet_arch.msrresnet_widths` must
            read it).
        ratio (float): Share of each group's channels to remove, in [0, 1).
        round_to (int): Kept channels are a multiple of this (vector units like multiples of 4). Default: 4.
        mode (str): ``'uniform'`` (``1 - ratio`` of every group) or ``'global'`` (the multiply-adds of ``uniform`` at
            ``ratio``, placed by score: see the module docstring). Default: ``'uniform'``.

    Returns:
        tuple[dict, OrderedDict, dict]: The pruned network's options (:func:`pruned_options` for ``uniform``), its
        state dict (loads strictly into it), and the kept channel indices per group (ascending).

    Raises:
        ValueError: ``state`` is not an MSRResNet-like network, or ``ratio`` is out of range.
    """
    opt = msrresnet_widths(state)
    if opt is None:
        raise ValueError('only MSRResNet-shaped networks (an SRResNet exit with the full head, BasicSR\'s MSRResNet, '
                         'or a pruned one) can be pruned here.')
    if mode not in MODES:
        raise ValueError(f'the pruning mode must be one of {list(MODES)}, got {mode!r}.')
    pruned = pruned_options(opt, ratio, round_to)
    scores = {g['name']: channel_scores(state, g) for g in channel_groups(opt)}
    if mode == 'uniform':
        counts = {g['name']: kept_count(g['width'], ratio, round_to) for g in channel_groups(opt)}
    else:
        counts = global_widths(opt, scores, macs_per_lr_pixel(pruned), round_to)
        pruned = dict(type='PrunedMSRResNet', **_with_widths(opt, counts))
    kept, new = {}, OrderedDict((k, v.clone()) for k, v in state.items())
    for group in channel_groups(opt):
        idx = torch.sort(torch.topk(scores[group['name']], counts[group['name']]).indices).values
        kept[group['name']] = idx.tolist()
        for prefix, n in group['writers']:
            rows = (idx[:, None] * n + torch.arange(n)[None]).reshape(-1)
            new[f'{prefix}.weight'] = new[f'{prefix}.weight'][rows]
            new[f'{prefix}.bias'] = new[f'{prefix}.bias'][rows]
        for prefix, _ in group['readers']:
            new[f'{prefix}.weight'] = new[f'{prefix}.weight'][:, idx]
    return pruned, OrderedDict((k, v.contiguous()) for k, v in new.items()), kept
