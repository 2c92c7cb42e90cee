"""FSP, the flow of solution procedure (Yim et al. 2017), matched between an exit's section and its teacher's."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY

from srdistill.losses.distill_pairs import check_number, distill_pairs
from srdistill.losses.feature_distill import FeatureDistillLoss


def fsp_matrix(feat1, feat2):
    """``G_ij = sum over positions of F1_i * F2_j / (H*W)`` for features (N, C1, H, W), (N, C2, H, W) -> (N, C1, C2)."""
    n, c1, h, w = feat1.shape
    return torch.bmm(feat1.flatten(2), feat2.flatten(2).transpose(1, 2)) / (h * w)


def section_bounds(depth, sections):
    """Block depths splitting the blocks ``1..depth`` into ``sections`` near-equal sections: ``[0, ..., depth]``."""
    return [round(i * depth / sections) for i in range(sections + 1)]


@LOSS_REGISTRY.register()
class FSPLoss(FeatureDistillLoss):
    """Match FSP matrices section by section.

    The student exit ``k`` (blocks ``1..k``) and its teacher (blocks ``1..t``) are each cut into ``sections`` parts at
    :func:`section_bounds`; for each part the FSP matrix between the features at its start and end is computed, and
    the loss is the mean over parts of ``mean((G_student - G_teacher)^2)``.

    Args:
        sections (int): Parts per network. Default: 2.
        Others: see :class:`FeatureDistillLoss`.
    """

    name = 'fsp'

    def __init__(self, sections=2, **kwargs):
        super().__init__(**kwargs)
        check_number('sections', sections, minimum=1, integer=True)
        self.sections = sections

    def check_network(self, net):
        """Every student needs at least ``sections`` blocks to cut into ``sections`` parts: refuse a network whose
        exits are too shallow when the options are checked and the model is built, not at the first step."""
        super().check_network(net)
        depths = getattr(net, 'depths', None)
        if not depths:
            return
        short = [d for d, _ in distill_pairs(depths, self.teacher, self.exits) if d < self.sections]
        if short:
            raise ValueError(f'`sections: {self.sections}` needs at least {self.sections} blocks per student, but '
                             f'exit(s) {short} have fewer; lower `sections` or leave those exits out with `exits`.')

    def distance(self, feats, student, teacher, net):
        if min(student, teacher) < self.sections:
            raise ValueError(f'FSPLoss: output {min(student, teacher)} has fewer blocks than sections '
                             f'({self.sections}).')
        s_bounds, t_bounds = section_bounds(student, self.sections), section_bounds(teacher, self.sections)
        parts = []
        for i in range(self.sections):
            g_student = fsp_matrix(feats[s_bounds[i]], feats[s_bounds[i + 1]])
            g_teacher = self.teacher_side(fsp_matrix(feats[t_bounds[i]], feats[t_bounds[i + 1]]))
            parts.append((g_student - g_teacher).pow(2).mean())
        return torch.stack(parts).mean()
