"""The self-distillation loss of the paper (pixel L1 + output L1 against the deepest output), and its variants."""
from collections import OrderedDict

import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn as nn
from torch.nn import functional as F

from srdistill.losses.distill_pairs import (
    TEACHERS,
    check_exits,
    check_number,
    check_teacher,
    distill_pairs,
    weight_factor,
)

CRITERIA = {'l1': F.l1_loss, 'l2': F.mse_loss}


@LOSS_REGISTRY.register()
class SelfDistillationLoss(nn.Module):
    """Pixel + output-distillation loss over the outputs of a multi-exit network.

    With the defaults (the paper), for every exit ``e`` shallower than the final output ``f``::

        pixel_weight * L1(SR_e, GT) + distill_weight * L1(SR_e, SR_f)

    and ``pixel_weight * L1(SR_f, GT)`` for the final output. The terms are summed. 0.9 / 0.1 is the paper's 9:1. With
    a single output (a plain network, the baselines) this is ``pixel_weight`` times the usual L1 loss.

    Variants (see :mod:`srdistill.losses.distill_pairs`): ``criterion: l2`` (MSE instead of L1 for the distillation
    term), ``teacher: next`` (cascade), ``peers`` (mutual learning: each output against each other output, averaged
    over them, the final output included), ``external`` (against a frozen ``network_t``'s SR image, every output
    included); ``exits`` restricts the students; ``start_iter`` / ``warmup_iter`` schedule the distillation weight.

    Args:
        pixel_weight (float): Weight of each output's L1 against the ground truth. Default: 0.9.
        distill_weight (float): Weight of each distillation term. Default: 0.1.
        detach_teacher (bool): Stop the distillation gradient at the teacher, so that it is not pulled towards its
            students. Default: True.
        criterion (str): ``'l1'`` (the paper) or ``'l2'``. Default: ``'l1'``.
        teacher (str): ``'deepest'`` (the paper), ``'next'``, ``'peers'`` or ``'external'``. Default: ``'deepest'``.
        exits (list[int] | None): Students to distil (depths); default: all the rule gives.
        start_iter (int): Distillation off up to this iteration. Default: 0.
        warmup_iter (int): Then ramp its weight linearly over this many iterations. Default: 0.
    """

    def __init__(self, pixel_weight=0.9, distill_weight=0.1, detach_teacher=True, criterion='l1', teacher='deepest',
                 exits=None, start_iter=0, warmup_iter=0):
        super().__init__()
        check_number('pixel_weight', pixel_weight)
        check_number('distill_weight', distill_weight)
        check_number('start_iter', start_iter, integer=True)
        check_number('warmup_iter', warmup_iter, integer=True)
        if pixel_weight == 0 and distill_weight == 0:
            raise ValueError('pixel_weight and distill_weight are both 0: nothing would be learned.')
        if criterion not in CRITERIA:
            raise ValueError(f'criterion must be one of {list(CRITERIA)}, got {criterion!r}.')
        self.pixel_weight = float(pixel_weight)
        self.distill_weight = float(distill_weight)
        self.detach_teacher = bool(detach_teacher)
        self.criterion = criterion
        self.teacher = check_teacher(teacher, TEACHERS)
        self.exits = check_exits(exits)
        self.start_iter, self.warmup_iter = start_iter, warmup_iter

    @property
    def needs_external(self):
        """bool: This loss needs the SR image of an external teacher (``network_t``)."""
        return self.teacher == 'external' and self.distill_weight > 0

    def forward(self, outputs, gt, external=None, current_iter=None):
        """Compute the loss.

        Args:
            outputs (OrderedDict[int, Tensor]): SR images ``{depth: (N, C, H, W)}``, shallowest first; the last entry
                is the final output.
            gt (Tensor): Ground truth, (N, C, H, W).
            external (Tensor | None): The external teacher's SR image (for ``teacher: external``).
            current_iter (int | None): Training iteration, for the weight schedule (``None``: full weight).

        Returns:
            tuple[Tensor, OrderedDict[str, Tensor]]: The total loss (a scalar) and its weighted terms, keyed
            ``l_pix_e<depth>`` and ``l_distill_e<depth>`` for logging.
        """
        distill = {}
        weight = self.distill_weight * weight_factor(current_iter, self.start_iter, self.warmup_iter)
        if self.distill_weight > 0:
            if self.teacher == 'external' and external is None:
                raise ValueError("teacher: external needs the external teacher's output (network_t in the options).")
            crit = CRITERIA[self.criterion]
            for student, teachers in distill_pairs(list(outputs), self.teacher, self.exits):
                targets = [external if t == 'external' else outputs[t] for t in teachers]
                targets = [t.detach() if self.detach_teacher else t for t in targets]
                distance = torch.stack([crit(outputs[student], t) for t in targets]).mean()
                distill[student] = weight * distance
        terms = OrderedDict()
        for depth, sr in outputs.items():
            terms[f'l_pix_e{depth}'] = self.pixel_weight * F.l1_loss(sr, gt)
            if depth in distill:
                terms[f'l_distill_e{depth}'] = distill[depth]
        return sum(terms.values()), terms
