"""The self-distillation loss of the paper: pixel L1 on every output plus L1 of each exit against the deepest output."""
from collections import OrderedDict

from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn as nn
from torch.nn import functional as F


@LOSS_REGISTRY.register()
class SelfDistillationLoss(nn.Module):
    """Pixel + self-distillation loss over the outputs of a multi-exit network.

    For every exit ``e`` (shallower than the final output ``f``)::

        pixel_weight * L1(SR_e, GT) + distill_weight * L1(SR_e, SR_f)

    and for the final output ``pixel_weight * L1(SR_f, GT)`` (its distillation term against itself is zero). The
    terms are summed. The defaults 0.9 / 0.1 are the paper's 9:1. With a single output (a plain SRResNet, the
    baselines) this is ``pixel_weight`` times the usual L1 loss.

    Args:
        pixel_weight (float): Weight of each output's L1 against the ground truth. Default: 0.9.
        distill_weight (float): Weight of each exit's L1 against the final output. Default: 0.1.
        detach_teacher (bool): Stop the distillation gradient at the final output, so that only the exits learn from
            it (the teacher is not pulled towards its students). Default: True.
    """

    def __init__(self, pixel_weight=0.9, distill_weight=0.1, detach_teacher=True):
        super().__init__()
        for key, value in (('pixel_weight', pixel_weight), ('distill_weight', distill_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f'{key} must be a number >= 0, got {value!r}.')
        if pixel_weight == 0 and distill_weight == 0:
            raise ValueError('pixel_weight and distill_weight are both 0: nothing would be learned.')
        self.pixel_weight = float(pixel_weight)
        self.distill_weight = float(distill_weight)
        self.detach_teacher = bool(detach_teacher)

    def forward(self, outputs, gt):
        """Compute the loss.

        Args:
            outputs (OrderedDict[int, Tensor]): SR images ``{depth: (N, C, H, W)}``, shallowest first; the last entry
                is the final output (the teacher).
            gt (Tensor): Ground truth, (N, C, H, W).

        Returns:
            tuple[Tensor, OrderedDict[str, Tensor]]: The total loss (a scalar) and its weighted terms, keyed
            ``l_pix_e<depth>`` and ``l_distill_e<depth>`` for logging.
        """
        final_depth = next(reversed(outputs))
        teacher = outputs[final_depth].detach() if self.detach_teacher else outputs[final_depth]
        terms = OrderedDict()
        for depth, sr in outputs.items():
            terms[f'l_pix_e{depth}'] = self.pixel_weight * F.l1_loss(sr, gt)
            if depth != final_depth and self.distill_weight > 0:
                terms[f'l_distill_e{depth}'] = self.distill_weight * F.l1_loss(sr, teacher)
        return sum(terms.values()), terms
