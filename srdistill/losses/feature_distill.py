"""Base class of the feature-level distillation losses (hint, attention transfer, FSP, feature affinity).

Each such loss compares the trunk features of a student exit with those of its teacher (see
:mod:`srdistill.losses.distill_pairs` for the pairing rules) and is configured as one entry of
``train.distill_opts`` in the options; several combine by summing. Subclasses implement :meth:`distance`.
"""
from collections import OrderedDict

import torch
from torch import nn as nn

from srdistill.losses.distill_pairs import check_exits, check_number, check_teacher, distill_pairs, weight_factor


class FeatureDistillLoss(nn.Module):
    """A weighted, scheduled feature-distillation term over the exits of a multi-exit network.

    Args:
        loss_weight (float): Weight of each exit's term. Default: 1.0.
        teacher (str): ``'deepest'`` (the final trunk features, default), ``'next'`` (the next deeper output's) or
            ``'peers'`` (every other output's, averaged).
        detach_teacher (bool): No gradient through the teacher's features. Default: True.
        exits (list[int] | None): Students (depths); default: all the rule gives.
        start_iter (int): Off up to this iteration. Default: 0.
        warmup_iter (int): Then ramp the weight linearly over this many iterations. Default: 0.
    """

    #: Short name used in the logged keys, ``l_<name>_e<depth>``.
    name = 'feat'

    def __init__(self, loss_weight=1.0, teacher='deepest', detach_teacher=True, exits=None, start_iter=0,
                 warmup_iter=0):
        super().__init__()
        check_number('loss_weight', loss_weight)
        check_number('start_iter', start_iter, integer=True)
        check_number('warmup_iter', warmup_iter, integer=True)
        self.loss_weight = float(loss_weight)
        self.teacher = check_teacher(teacher, ('deepest', 'next', 'peers'))
        self.detach_teacher = bool(detach_teacher)
        self.exits = check_exits(exits)
        self.start_iter, self.warmup_iter = start_iter, warmup_iter

    def check_network(self, net):
        """Raise ``ValueError`` if ``net`` (the bare network) lacks something this loss needs."""

    def distance(self, feats, student, teacher, net):
        """The unweighted distance between a student exit and one teacher output.

        Args:
            feats (list[Tensor]): Trunk features after blocks ``0..num_block`` (see
                ``MultiExitNet.forward_with_features``, srdistill/archs/multi_exit.py).
            student (int): The student's depth.
            teacher (int): The teacher's depth.
            net (nn.Module): The bare network (for learned adapters).

        Returns:
            Tensor: A scalar.
        """
        raise NotImplementedError

    def teacher_side(self, tensor):
        return tensor.detach() if self.detach_teacher else tensor

    def forward(self, feats, depths, net=None, current_iter=None):
        """Weighted terms ``{'l_<name>_e<depth>': scalar}`` for every student exit."""
        weight = self.loss_weight * weight_factor(current_iter, self.start_iter, self.warmup_iter)
        terms = OrderedDict()
        for student, teachers in distill_pairs(depths, self.teacher, self.exits):
            distance = torch.stack([self.distance(feats, student, t, net) for t in teachers]).mean()
            terms[f'l_{self.name}_e{student}'] = weight * distance
        return terms
