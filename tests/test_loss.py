"""SelfDistillationLoss against hand-computed golden values (loss terms and gradients)."""
from collections import OrderedDict

import pytest
import torch
from basicsr.utils.registry import LOSS_REGISTRY

from srdistill.losses.self_distill_loss import SelfDistillationLoss


def _case():
    """Two pixels. GT = [0, 0]; exit 1 = [1, 3]; final (depth 2) = [2, 2].

    L1(exit, GT) = (1 + 3) / 2 = 2;  L1(final, GT) = 2;  L1(exit, final) = (1 + 1) / 2 = 1.
    """
    gt = torch.zeros(1, 1, 1, 2)
    e1 = torch.tensor([[[[1., 3.]]]], requires_grad=True)
    final = torch.tensor([[[[2., 2.]]]], requires_grad=True)
    return OrderedDict([(1, e1), (2, final)]), gt


def test_golden_values_default_weights():
    outputs, gt = _case()
    total, terms = SelfDistillationLoss()(outputs, gt)
    # 0.9 * 2 (exit pixel) + 0.1 * 1 (exit vs final) + 0.9 * 2 (final pixel) = 3.7
    assert list(terms) == ['l_pix_e1', 'l_distill_e1', 'l_pix_e2']
    assert terms['l_pix_e1'].item() == pytest.approx(1.8)
    assert terms['l_distill_e1'].item() == pytest.approx(0.1)
    assert terms['l_pix_e2'].item() == pytest.approx(1.8)
    assert total.item() == pytest.approx(3.7)


def test_golden_gradients_teacher_detached_or_not():
    # d/d final of 0.9 * mean|final - gt| = 0.9 * sign / 2 = [0.45, 0.45]
    outputs, gt = _case()
    SelfDistillationLoss(detach_teacher=True)(outputs, gt)[0].backward()
    assert outputs[2].grad.flatten().tolist() == pytest.approx([0.45, 0.45])
    # exit: 0.9 * sign(e - gt) / 2 + 0.1 * sign(e - final) / 2 = [0.45 - 0.05, 0.45 + 0.05]
    assert outputs[1].grad.flatten().tolist() == pytest.approx([0.40, 0.50])

    # not detached: the final also gets 0.1 * sign(final - e) / 2 = [+0.05, -0.05]
    outputs, gt = _case()
    SelfDistillationLoss(detach_teacher=False)(outputs, gt)[0].backward()
    assert outputs[2].grad.flatten().tolist() == pytest.approx([0.50, 0.40])


def test_custom_weights_and_single_output():
    outputs, gt = _case()
    total, terms = SelfDistillationLoss(pixel_weight=1.0, distill_weight=0.5)(outputs, gt)
    assert total.item() == pytest.approx(2 + 0.5 + 2)
    single = OrderedDict([(8, outputs[2])])  # a plain SRResNet: just pixel_weight * L1
    total, terms = SelfDistillationLoss()(single, gt)
    assert list(terms) == ['l_pix_e8'] and total.item() == pytest.approx(1.8)


def test_registered():
    assert LOSS_REGISTRY.get('SelfDistillationLoss') is SelfDistillationLoss


@pytest.mark.parametrize('kwargs, message', [
    ({'pixel_weight': -0.1}, r'pixel_weight must be a number >= 0, got -0.1'),
    ({'distill_weight': -1}, r'distill_weight must be a number >= 0, got -1'),
    ({'distill_weight': 'a'}, r'distill_weight must be a number'),
    ({'pixel_weight': 0, 'distill_weight': 0}, 'both 0'),
])
def test_invalid_weights(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SelfDistillationLoss(**kwargs)
