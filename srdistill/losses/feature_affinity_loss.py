"""FAKD feature-affinity distillation for SR (He et al., ICIP 2020) between an exit's features and its teacher's."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch.nn import functional as F

from srdistill.losses.feature_distill import FeatureDistillLoss


def affinity_matrix(feat):
    """Spatial affinity of features (N, C, H, W): cosine similarity between every two positions -> (N, HW, HW).

    Each position's channel vector is L2-normalised, then ``A = F^T F``.
    """
    flat = F.normalize(feat.flatten(2), dim=1)
    return torch.bmm(flat.transpose(1, 2), flat)


@LOSS_REGISTRY.register()
class FeatureAffinityLoss(FeatureDistillLoss):
    """``mean(|A_k - A_t|)`` of the spatial affinity matrices :func:`affinity_matrix` (FAKD uses L1).

    Memory grows with the square of the patch area: (H*W)^2 per sample, 576^2 for 24x24 LR patches.
    Arguments: see :class:`FeatureDistillLoss`.
    """

    name = 'fakd'

    def distance(self, feats, student, teacher, net):
        target = self.teacher_side(affinity_matrix(feats[teacher]))
        return (affinity_matrix(feats[student]) - target).abs().mean()
