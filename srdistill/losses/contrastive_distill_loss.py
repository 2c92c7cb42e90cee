"""Contrastive output distillation: each exit is pulled towards the final output and pushed away from negatives.

In the spirit of CSD (Wang et al., "Towards Compact Single Image Super-Resolution via Contrastive
Self-distillation", IJCAI 2021) and DCKD (arXiv 2412.08939): a ratio of distances, the positive over the mean of the
negatives, so the student learns not only where the teacher is but which way is wrong.

Choices, because nothing may be downloaded at run time:

- **feature space: Haar wavelet detail bands** (LH, HL, HH at ``levels`` scales) instead of CSD's VGG-19 features.
  They need no weights, are exact and cheap, and measure what an SR network gets wrong: the SR error is almost all
  high-frequency, and the low-pass band, which bicubic already gets right, is left out so it cannot dilute the ratio;
- **negatives that exist offline**: ``bicubic``, the bicubic upsampling of the LR input (CSD's negative: the blurry
  answer the student must move away from), and ``shuffled``, the final output for another image of the batch (an
  easy negative that keeps the ratio bounded when the student is already far from bicubic).

The term is configured as ``train.contrast_opt``; ``SelfDistillSRModel`` adds it to ``train.pixel_opt``'s loss.
"""
from collections import OrderedDict

import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn as nn
from torch.nn import functional as F

from srdistill.losses.distill_pairs import check_exits, check_number, distill_pairs, weight_factor

NEGATIVES = ('bicubic', 'shuffled')


def haar_details(x, levels=2):
    """Haar wavelet detail bands of ``x`` (N, C, H, W): ``[LH_1, HL_1, HH_1, LH_2, ...]``, orthonormal filters.

    Odd rows/columns at each level are dropped (the last one), so every band is exact.
    """
    bands, ll = [], x
    for _ in range(levels):
        h, w = ll.shape[-2] // 2 * 2, ll.shape[-1] // 2 * 2
        if h == 0 or w == 0:
            break
        ll = ll[..., :h, :w]
        a, b, c, d = ll[..., 0::2, 0::2], ll[..., 0::2, 1::2], ll[..., 1::2, 0::2], ll[..., 1::2, 1::2]
        bands += [(a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2]
        ll = (a + b + c + d) / 2
    return bands


@LOSS_REGISTRY.register()
class ContrastiveDistillLoss(nn.Module):
    """``loss_weight * mean_i[ D(S_i, T_i) / (mean_n D(S_i, N_n,i) + eps) ]`` for each student exit.

    ``S`` is the exit's SR image, ``T`` the final output (no gradient), ``N`` the negatives, ``D`` the mean absolute
    difference of the Haar detail bands (``feature: haar``) or of the pixels (``feature: pixel``), per image ``i``.
    Logged as ``l_contrast_e<k>``.

    Args:
        loss_weight (float): Weight of each exit's term. Default: 0.1.
        feature (str): ``'haar'`` (default) or ``'pixel'``.
        levels (int): Haar levels. Default: 2.
        negatives (list[str]): From :data:`NEGATIVES`. Default: ``['bicubic']``.
        eps (float): Keeps the ratio finite. Default: 1e-6.
        exits (list[int] | None): Students (depths); default: every exit.
        start_iter (int): Off up to this iteration. Default: 0.
        warmup_iter (int): Then ramp the weight linearly over this many iterations. Default: 0.
    """

    def __init__(self, loss_weight=0.1, feature='haar', levels=2, negatives=('bicubic', ), eps=1e-6, exits=None,
                 start_iter=0, warmup_iter=0):
        super().__init__()
        check_number('loss_weight', loss_weight)
        check_number('levels', levels, minimum=1, integer=True)
        check_number('eps', eps)
        check_number('start_iter', start_iter, integer=True)
        check_number('warmup_iter', warmup_iter, integer=True)
        if feature not in ('haar', 'pixel'):
            raise ValueError(f"feature must be 'haar' or 'pixel', got {feature!r}.")
        negatives = [negatives] if isinstance(negatives, str) else list(negatives)
        unknown = [n for n in negatives if n not in NEGATIVES]
        if not negatives or unknown:
            raise ValueError(f'negatives must be a non-empty list from {list(NEGATIVES)}, got {negatives!r}.')
        self.loss_weight, self.feature, self.levels = float(loss_weight), feature, levels
        self.negatives, self.eps = tuple(negatives), float(eps)
        self.exits = check_exits(exits)
        self.start_iter, self.warmup_iter = start_iter, warmup_iter

    def students(self, depths):
        """The student depths of a network with outputs ``depths`` (shallowest first, the final one last)."""
        return [d for d, _ in distill_pairs(list(depths), 'deepest', self.exits)]

    def features(self, img):
        return haar_details(img, self.levels) if self.feature == 'haar' else [img]

    @staticmethod
    def distance(feats_a, feats_b):
        """Per-image mean absolute difference over the bands: (N, )."""
        return torch.stack([(a - b).abs().flatten(1).mean(1) for a, b in zip(feats_a, feats_b)]).mean(0)

    def negative_images(self, teacher, lq):
        scale = teacher.shape[-1] // lq.shape[-1]
        images = []
        for name in self.negatives:
            if name == 'bicubic':
                images.append(F.interpolate(lq, scale_factor=scale, mode='bicubic', align_corners=False).clamp(0, 1))
            elif teacher.shape[0] > 1:  # shuffled: the next image's final output
                images.append(teacher.roll(1, dims=0))
        return images

    def forward(self, outputs, lq, current_iter=None):
        """Weighted terms ``{'l_contrast_e<k>': scalar}``.

        Args:
            outputs (OrderedDict[int, Tensor]): ``{depth: SR image}``, shallowest first, the final output last.
            lq (Tensor): The LR input, (N, C, h, w).
            current_iter (int | None): For the weight schedule.
        """
        depths = list(outputs)
        students = self.students(depths)
        factor = weight_factor(current_iter, self.start_iter, self.warmup_iter)
        terms = OrderedDict()
        if factor == 0 or not students:
            return terms
        teacher = outputs[depths[-1]].detach()
        positive = self.features(teacher)
        negatives = [self.features(n) for n in self.negative_images(teacher, lq)]
        for k in students:
            anchor = self.features(outputs[k])
            pull = self.distance(anchor, positive)
            push = torch.stack([self.distance(anchor, n) for n in negatives]).mean(0)
            terms[f'l_contrast_e{k}'] = factor * self.loss_weight * (pull / (push + self.eps)).mean()
        return terms
