"""FitNets hint loss (Romero et al. 2015) between an exit's features and its teacher's."""
from basicsr.utils.registry import LOSS_REGISTRY
from torch.nn import functional as F

from srdistill.losses.feature_distill import FeatureDistillLoss


@LOSS_REGISTRY.register()
class HintLoss(FeatureDistillLoss):
    """``MSE(adapter_k(F_k), F_t)``: the exit's trunk features ``F_k``, through a learned 1x1 convolution, against the
    teacher's ``F_t``.

    The adapters belong to the network (``network_g.hint_adapters: true``), so they train, checkpoint and resume
    with it; they start as the identity and exported exits drop them. Arguments: see :class:`FeatureDistillLoss`.
    """

    name = 'hint'

    def check_network(self, net):
        if not hasattr(net, 'hint_adapters'):
            raise ValueError('HintLoss needs network_g.hint_adapters: true (a learned 1x1 adapter per exit).')

    def distance(self, feats, student, teacher, net):
        self.check_network(net)
        adapted = net.hint_adapters[str(student)](feats[student]) if student in net.exits else feats[student]
        return F.mse_loss(adapted, self.teacher_side(feats[teacher]))
