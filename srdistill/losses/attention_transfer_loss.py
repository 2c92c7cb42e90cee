"""Attention transfer (Zagoruyko & Komodakis 2017) between an exit's features and its teacher's."""
from basicsr.utils.registry import LOSS_REGISTRY
from torch.nn import functional as F

from srdistill.losses.distill_pairs import check_number
from srdistill.losses.feature_distill import FeatureDistillLoss


def attention_map(feat, p=2):
    """Spatial attention of features (N, C, H, W): the channel mean of ``|F|^p``, flattened, L2-normalised -> (N, H*W).
    """
    return F.normalize(feat.abs().pow(p).mean(1).flatten(1), dim=1)


@LOSS_REGISTRY.register()
class AttentionTransferLoss(FeatureDistillLoss):
    """``mean((Q_k - Q_t)^2)`` of the attention maps :func:`attention_map` (as in the authors' code, ``at_loss``).

    Args:
        p (float): Exponent of ``|F|``. Default: 2.
        Others: see :class:`FeatureDistillLoss`.
    """

    name = 'at'

    def __init__(self, p=2, **kwargs):
        super().__init__(**kwargs)
        check_number('p', p, minimum=1)
        self.p = p

    def distance(self, feats, student, teacher, net):
        target = self.teacher_side(attention_map(feats[teacher], self.p))
        return (attention_map(feats[student], self.p) - target).pow(2).mean()
