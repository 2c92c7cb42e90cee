"""Self-upcycled distillation: extra training inputs without ground truth, labelled by the network's deepest output.

After DUKD (Zhang et al., "Data Upcycling Knowledge Distillation for Image Super-Resolution", arXiv 2309.14162),
where a frozen teacher labels "upcycled" inputs made from the training pairs. In self-distillation the teacher is the
final output of the network being trained, so the labels cost one forward pass and no second network:

- **zoom-in**: an LR-sized crop of the HR patch is a new LR input whose SR has no ground truth; the final output
  labels it (no gradient) and every student exit learns that label;
- **zoom-out**: the LR patch downscaled by the scale is an input whose ground truth *is* the LR patch; every output
  (the final one included) learns it with the pixel loss, and the students also learn the final output's SR of it;
- **label consistency**: the students see the zoom-in input under a random invertible transform (flips, transpose,
  colour inversion, as DUKD does); their output, transformed back, must match the label of the untransformed input.

The term is configured as ``train.upcycle_opt`` and added to ``train.pixel_opt``'s loss by ``SelfDistillSRModel``.
"""
from collections import OrderedDict

import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn as nn
from torch.nn import functional as F

from srdistill.losses.distill_pairs import check_exits, check_number, distill_pairs, weight_factor

#: Invertible input transforms for label consistency; each is its own inverse.
TRANSFORMS = ('hflip', 'vflip', 'transpose', 'invert')


def _apply(x, ops):
    """``x`` (N, C, H, W) with the per-sample transforms ``ops`` (a list of sets of names) applied, in a fixed order."""
    out = []
    for sample, names in zip(x, ops):
        for name in TRANSFORMS:  # the order is fixed, so applying the same ops again in reverse order inverts
            if name in names:
                sample = _one(sample, name)
        out.append(sample)
    return torch.stack(out)


def _undo(x, ops):
    out = []
    for sample, names in zip(x, ops):
        for name in reversed(TRANSFORMS):
            if name in names:
                sample = _one(sample, name)
        out.append(sample)
    return torch.stack(out)


def _one(sample, name):
    if name == 'hflip':
        return sample.flip(-1)
    if name == 'vflip':
        return sample.flip(-2)
    if name == 'transpose':
        return sample.transpose(-2, -1)
    return 1 - sample  # invert: images in [0, 1]


def zoom_in_inputs(gt, scale, generator=None):
    """One LR-sized crop of each HR patch, at a random cell of its ``scale x scale`` grid (as DUKD's zoom-in).

    Args:
        gt (Tensor): HR patches, (N, C, s*h, s*w).
        scale (int): The SR scale ``s``.
        generator (torch.Generator | None): Source of the random cells.

    Returns:
        Tensor: (N, C, h, w), new LR inputs without ground truth.
    """
    n, _, hh, ww = gt.shape
    h, w = hh // scale, ww // scale
    cells = torch.randint(0, scale * scale, (n, ), generator=generator).tolist()
    return torch.stack([gt[i, :, (c // scale) * h:(c // scale + 1) * h, (c % scale) * w:(c % scale + 1) * w]
                        for i, c in enumerate(cells)])


def zoom_out_inputs(lq, scale):
    """The LR patches downscaled by ``scale`` (antialiased bicubic, as MATLAB's imresize does): (N, C, h/s, w/s)."""
    return F.interpolate(lq, scale_factor=1 / scale, mode='bicubic', antialias=True, align_corners=False).clamp(0, 1)


@LOSS_REGISTRY.register()
class UpcycledDistillLoss(nn.Module):
    """Zoom-in / zoom-out distillation with label consistency, the final output as the teacher.

    Terms (L1 everywhere), logged per output:

    - ``l_upin_e<k>``: ``zoom_in_weight * L1(T^-1(SR_k(T(z))), SR_final(z))`` for each student exit ``k``, ``z`` a
      zoom-in input, ``T`` a random transform (identity unless ``consistency_prob > 0``), the label without gradient;
    - ``l_upout_e<d>``: ``zoom_out_weight * L1(SR_d(y), LR)`` for every output ``d``, ``y`` the downscaled LR patch,
      plus, for each student, ``zoom_out_weight * distill_ratio * L1(SR_k(y), SR_final(y).detach())``.

    Args:
        zoom_in_weight (float): Weight of the zoom-in term; 0 turns it off. Default: 1.0.
        zoom_out_weight (float): Weight of the zoom-out terms; 0 turns them off. Default: 0.0.
        distill_ratio (float): Share of the zoom-out distillation next to its pixel term (the paper's 1:9). Default:
            0.1 / 0.9.
        consistency_prob (float): Probability with which each transform of :data:`TRANSFORMS` is applied to a
            student's zoom-in input. Default: 0 (no transform).
        transforms (list[str]): Which of :data:`TRANSFORMS` may be applied. Default: all.
        exits (list[int] | None): Students (depths); default: every exit.
        start_iter (int): Off up to this iteration. Default: 0.
        warmup_iter (int): Then ramp the weights linearly over this many iterations. Default: 0.
    """

    def __init__(self, zoom_in_weight=1.0, zoom_out_weight=0.0, distill_ratio=0.1 / 0.9, consistency_prob=0.0,
                 transforms=TRANSFORMS, exits=None, start_iter=0, warmup_iter=0):
        super().__init__()
        for key, value in (('zoom_in_weight', zoom_in_weight), ('zoom_out_weight', zoom_out_weight),
                           ('distill_ratio', distill_ratio), ('consistency_prob', consistency_prob)):
            check_number(key, value)
        check_number('start_iter', start_iter, integer=True)
        check_number('warmup_iter', warmup_iter, integer=True)
        if consistency_prob > 1:
            raise ValueError(f'consistency_prob must be at most 1, got {consistency_prob}.')
        if zoom_in_weight == 0 and zoom_out_weight == 0:
            raise ValueError('zoom_in_weight and zoom_out_weight are both 0: the term would do nothing.')
        unknown = [t for t in transforms if t not in TRANSFORMS]
        if unknown:
            raise ValueError(f'transforms {unknown} unknown; choose from {list(TRANSFORMS)}.')
        self.zoom_in_weight, self.zoom_out_weight = float(zoom_in_weight), float(zoom_out_weight)
        self.distill_ratio, self.consistency_prob = float(distill_ratio), float(consistency_prob)
        self.transforms = tuple(transforms)
        self.exits = check_exits(exits)
        self.start_iter, self.warmup_iter = start_iter, warmup_iter

    def students(self, depths):
        """The student depths of a network with outputs ``depths`` (shallowest first, the final one last)."""
        return [d for d, _ in distill_pairs(list(depths), 'deepest', self.exits)]

    def draw_ops(self, n, generator=None):
        """Per-sample sets of transforms: each of ``transforms`` with probability ``consistency_prob``."""
        if self.consistency_prob == 0:
            return [set() for _ in range(n)]
        draws = torch.rand((n, len(self.transforms)), generator=generator) < self.consistency_prob
        return [{t for t, on in zip(self.transforms, row) if on} for row in draws.tolist()]

    def forward(self, net, lq, gt, current_iter=None, generator=None):
        """The weighted terms for one batch.

        Args:
            net (nn.Module): The multi-exit network being trained (``forward(x, exit=...)``, ``depths``, ``upscale``),
                or its DDP wrapper (its ``forward`` runs; the attributes are read from ``net.module``).
            lq (Tensor): LR patches, (N, C, h, w).
            gt (Tensor): HR patches, (N, C, s*h, s*w).
            current_iter (int | None): For the weight schedule.
            generator (torch.Generator | None): Source of the crops and transforms (tests).

        Returns:
            OrderedDict[str, Tensor]: ``l_upin_e<k>`` and ``l_upout_e<d>`` (scalars, weighted).
        """
        bare = getattr(net, 'module', net)
        depths, scale = list(bare.depths), bare.upscale
        students = self.students(depths)
        factor = weight_factor(current_iter, self.start_iter, self.warmup_iter)
        terms = OrderedDict()
        if factor == 0 or not students:
            return terms
        if self.zoom_in_weight > 0:
            z = zoom_in_inputs(gt, scale, generator).contiguous(memory_format=_memory_format(lq))
            with torch.no_grad():
                label = net(z).float()
            ops = self.draw_ops(z.shape[0], generator)
            transformed = any(ops)
            outs = net(_apply(z, ops) if transformed else z, exit=students)
            for k in students:
                out = _undo(outs[k].float(), ops) if transformed else outs[k].float()
                terms[f'l_upin_e{k}'] = factor * self.zoom_in_weight * F.l1_loss(out, label)
        if self.zoom_out_weight > 0:
            y = zoom_out_inputs(lq, scale)
            outs = net(y, exit='all')
            final = outs[depths[-1]].float()
            for d in depths:
                out = outs[d].float()
                term = F.l1_loss(out, lq)
                if d in students:
                    term = term + self.distill_ratio * F.l1_loss(out, final.detach())
                terms[f'l_upout_e{d}'] = factor * self.zoom_out_weight * term
        return terms

    def forward_macs(self, net, lr_size):
        """Multiply-adds per training sample this term adds (forward x1 for no-grad passes, x3 with backward).

        Args:
            net (nn.Module): The network (may live on the meta device).
            lr_size (tuple[int, int]): LR patch size.
        """
        from srdistill.archs.cost import forward_macs
        students = self.students(list(net.depths))
        macs = 0
        if self.zoom_in_weight > 0 and students:
            macs += forward_macs(net, lr_size, exit=None)  # the label, no gradient
            macs += 3 * forward_macs(net, lr_size, exit=students)
        if self.zoom_out_weight > 0 and students:
            small = tuple(max(1, s // net.upscale) for s in lr_size)
            macs += 3 * forward_macs(net, small, exit='all')
        return macs


def _memory_format(x):
    """The memory format of ``x`` (channels_last training keeps its extra inputs in it)."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
