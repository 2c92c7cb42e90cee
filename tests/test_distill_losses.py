"""Distillation variants and feature losses against golden values computed by hand on tiny tensors.

Every expected number below is worked out in the comment next to it (not by re-running the loss's formula).
"""
from collections import OrderedDict

import pytest
import torch
from basicsr.utils.registry import LOSS_REGISTRY

from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.losses.attention_transfer_loss import AttentionTransferLoss, attention_map
from srdistill.losses.distill_pairs import distill_pairs, weight_factor
from srdistill.losses.feature_affinity_loss import FeatureAffinityLoss, affinity_matrix
from srdistill.losses.feature_distill import FeatureDistillLoss
from srdistill.losses.fsp_loss import FSPLoss, fsp_matrix, section_bounds
from srdistill.losses.hint_loss import HintLoss
from srdistill.losses.self_distill_loss import SelfDistillationLoss


def t(*channels):
    """A (1, C, H, W) tensor from C channels given as nested lists of rows (or one flat row)."""
    rows = [c if isinstance(c[0], list) else [c] for c in channels]
    return torch.tensor([rows], dtype=torch.float32)


# --- output distillation: three outputs ------------------------------------------------------------------------------

def _three(requires_grad=False):
    """Two pixels; GT = [0, 0]; exit 1 = [1, 3]; exit 2 = [2, 2]; final (depth 3) = [4, -2].

    Pixel L1 vs GT:  e1 (1 + 3) / 2 = 2,  e2 (2 + 2) / 2 = 2,  e3 (4 + 2) / 2 = 3
        -> weighted 0.9 * (2 + 2 + 3) = 1.8 + 1.8 + 2.7 = 6.3.
    Pairwise L1:  d(e1, e2) = (1 + 1) / 2 = 1,  d(e1, e3) = (3 + 5) / 2 = 4,  d(e2, e3) = (2 + 4) / 2 = 3.
    Pairwise L2:  d(e1, e2) = (1 + 1) / 2 = 1,  d(e1, e3) = (9 + 25) / 2 = 17,  d(e2, e3) = (4 + 16) / 2 = 10.
    No difference is zero, so every L1 gradient is a clean sign.
    """
    gt = torch.zeros(1, 1, 1, 2)
    values = {1: [1., 3.], 2: [2., 2.], 3: [4., -2.]}
    outputs = OrderedDict((d, torch.tensor([[[v]]], requires_grad=requires_grad)) for d, v in values.items())
    return outputs, gt


def _values(terms):
    return {k: pytest.approx(v.item()) for k, v in terms.items()}


def test_deepest_teacher_with_l2_criterion():
    outputs, gt = _three()
    total, terms = SelfDistillationLoss(criterion='l2')(outputs, gt)
    # distill e1 = 0.1 * 17 = 1.7, e2 = 0.1 * 10 = 1.0; total = 6.3 + 2.7 = 9.0
    assert list(terms) == ['l_pix_e1', 'l_distill_e1', 'l_pix_e2', 'l_distill_e2', 'l_pix_e3']
    assert _values(terms) == {'l_pix_e1': 1.8, 'l_distill_e1': 1.7, 'l_pix_e2': 1.8, 'l_distill_e2': 1.0,
                              'l_pix_e3': 2.7}
    assert total.item() == pytest.approx(9.0)


@pytest.mark.parametrize('criterion, d1, d2, total', [
    ('l1', 0.1, 0.3, 6.7),  # e1 <- e2: 0.1 * 1;  e2 <- e3: 0.1 * 3;  6.3 + 0.4
    ('l2', 0.1, 1.0, 7.4),  # e1 <- e2: 0.1 * 1;  e2 <- e3: 0.1 * 10; 6.3 + 1.1
])
def test_next_teacher_is_a_cascade(criterion, d1, d2, total):
    outputs, gt = _three()
    loss, terms = SelfDistillationLoss(teacher='next', criterion=criterion)(outputs, gt)
    assert list(terms) == ['l_pix_e1', 'l_distill_e1', 'l_pix_e2', 'l_distill_e2', 'l_pix_e3']
    assert terms['l_distill_e1'].item() == pytest.approx(d1) and terms['l_distill_e2'].item() == pytest.approx(d2)
    assert loss.item() == pytest.approx(total)


@pytest.mark.parametrize('criterion, expected, total', [
    # e1: mean(1, 4) = 2.5;  e2: mean(1, 3) = 2;  e3: mean(4, 3) = 3.5  (x 0.1);  6.3 + 0.8
    ('l1', {1: 0.25, 2: 0.2, 3: 0.35}, 7.1),
    # e1: mean(1, 17) = 9;  e2: mean(1, 10) = 5.5;  e3: mean(17, 10) = 13.5  (x 0.1);  6.3 + 2.8
    ('l2', {1: 0.9, 2: 0.55, 3: 1.35}, 9.1),
])
def test_peers_every_output_learns_from_the_mean_of_the_others(criterion, expected, total):
    outputs, gt = _three()
    loss, terms = SelfDistillationLoss(teacher='peers', criterion=criterion)(outputs, gt)
    assert list(terms) == ['l_pix_e1', 'l_distill_e1', 'l_pix_e2', 'l_distill_e2', 'l_pix_e3', 'l_distill_e3']
    assert {d: terms[f'l_distill_e{d}'].item() for d in (1, 2, 3)} == pytest.approx(expected)
    assert loss.item() == pytest.approx(total)


def test_peers_gradient_of_the_final_output_detached_or_not():
    # final e3 = [4, -2]: pixel 0.9 * sign([4, -2]) / 2 = [0.45, -0.45];
    # its own term 0.1 * mean over 2 teachers of sign(e3 - t) / 2, sign(e3 - e1) = sign(e3 - e2) = [1, -1]
    #   -> 0.1 * 0.5 * ([0.5, -0.5] + [0.5, -0.5]) = [0.05, -0.05]          => detached: [0.5, -0.5]
    outputs, gt = _three(requires_grad=True)
    SelfDistillationLoss(teacher='peers')(outputs, gt)[0].backward()
    assert outputs[3].grad.flatten().tolist() == pytest.approx([0.5, -0.5])
    # not detached: e3 is also the teacher in e1's and e2's terms: 2 x 0.1 * 0.5 * sign(e3 - e) / 2 = [0.05, -0.05]
    outputs, gt = _three(requires_grad=True)
    SelfDistillationLoss(teacher='peers', detach_teacher=False)(outputs, gt)[0].backward()
    assert outputs[3].grad.flatten().tolist() == pytest.approx([0.55, -0.55])


def test_external_teacher_every_output_including_the_final():
    outputs, gt = _three(requires_grad=True)
    external = torch.tensor([[[[0.5, 1.]]]], requires_grad=True)
    loss, terms = SelfDistillationLoss(teacher='external')(outputs, gt, external=external)
    # L1 to [0.5, 1]:  e1 (0.5 + 2) / 2 = 1.25,  e2 (1.5 + 1) / 2 = 1.25,  e3 (3.5 + 3) / 2 = 3.25   (x 0.1)
    assert list(terms) == ['l_pix_e1', 'l_distill_e1', 'l_pix_e2', 'l_distill_e2', 'l_pix_e3', 'l_distill_e3']
    assert {d: terms[f'l_distill_e{d}'].item() for d in (1, 2, 3)} == pytest.approx({1: 0.125, 2: 0.125, 3: 0.325})
    assert loss.item() == pytest.approx(6.3 + 0.575)
    loss.backward()
    assert external.grad is None  # detached by default

    # not detached: d/d ext of 0.1 * sum_e mean|e - ext| = 0.05 * sum_e sign(ext - e)
    #   sign(ext - e1) = [-1, -1], sign(ext - e2) = [-1, -1], sign(ext - e3) = [-1, 1]  -> 0.05 * [-3, -1]
    loss, _ = SelfDistillationLoss(teacher='external', detach_teacher=False)(outputs, gt, external=external)
    loss.backward()
    assert external.grad.flatten().tolist() == pytest.approx([-0.15, -0.05])


def test_external_teacher_needs_its_output():
    outputs, gt = _three()
    loss = SelfDistillationLoss(teacher='external')
    assert loss.needs_external
    with pytest.raises(ValueError, match="teacher: external needs the external teacher's output"):
        loss(outputs, gt)
    # without a distillation weight nothing is needed
    no_distill = SelfDistillationLoss(teacher='external', distill_weight=0)
    assert not no_distill.needs_external
    assert list(no_distill(outputs, gt)[1]) == ['l_pix_e1', 'l_pix_e2', 'l_pix_e3']


@pytest.mark.parametrize('teacher, exits, kept', [
    ('deepest', [2], {2: 0.3}),    # e2 <- e3: 0.1 * 3
    ('next', [1], {1: 0.1}),       # e1 <- e2: 0.1 * 1
    ('peers', [3], {3: 0.35}),     # e3 <- mean(4, 3)
    ('peers', [1, 3], {1: 0.25, 3: 0.35}),
])
def test_exits_restrict_the_students(teacher, exits, kept):
    outputs, gt = _three()
    _, terms = SelfDistillationLoss(teacher=teacher, exits=exits)(outputs, gt)
    distilled = {int(k.rsplit('_e', 1)[1]): v.item() for k, v in terms.items() if k.startswith('l_distill')}
    assert distilled == pytest.approx(kept)
    assert [k for k in terms if k.startswith('l_pix')] == ['l_pix_e1', 'l_pix_e2', 'l_pix_e3']  # pixel terms stay


def test_exits_naming_a_non_student_fail_at_the_first_forward():
    outputs, gt = _three()
    with pytest.raises(ValueError, match=r"exits \[3\] are not students with teacher='deepest' \(students: \[1, 2\]\)"):
        SelfDistillationLoss(exits=[3])(outputs, gt)


@pytest.mark.parametrize('current_iter, factor', [
    (None, 1.0),  # outside training: full weight
    (1, 0.0), (10, 0.0),  # off up to and including start_iter = 10
    (11, 0.25), (12, 0.5), (13, 0.75),  # (iter - 10) / 4
    (14, 1.0), (100, 1.0),
])
def test_schedule_start_and_warmup(current_iter, factor):
    assert weight_factor(current_iter, start_iter=10, warmup_iter=4) == pytest.approx(factor)
    outputs, gt = _three()
    _, terms = SelfDistillationLoss(start_iter=10, warmup_iter=4)(outputs, gt, current_iter=current_iter)
    # deepest, l1: e1 0.1 * 4 = 0.4, e2 0.1 * 3 = 0.3, scaled by the factor; pixel terms never are
    assert terms['l_distill_e1'].item() == pytest.approx(0.4 * factor)
    assert terms['l_distill_e2'].item() == pytest.approx(0.3 * factor)
    assert terms['l_pix_e1'].item() == pytest.approx(1.8)


def test_schedule_edges():
    assert weight_factor(1) == 1.0 and weight_factor(0) == 0.0  # defaults: on from the first iteration (1-based)
    assert [weight_factor(i, start_iter=3) for i in (3, 4)] == [0.0, 1.0]  # no warm-up: a step
    assert [weight_factor(i, warmup_iter=2) for i in (1, 2, 3)] == [0.5, 1.0, 1.0]


def test_detach_teacher_gradient_deepest():
    # final e3 = [4, -2]: pixel only, 0.9 * sign / 2 = [0.45, -0.45] when detached;
    # not detached it also gets 0.1 * sign(e3 - e) / 2 from e1's and e2's terms, both [1, -1]: + [0.1, -0.1]
    outputs, gt = _three(requires_grad=True)
    SelfDistillationLoss()(outputs, gt)[0].backward()
    assert outputs[3].grad.flatten().tolist() == pytest.approx([0.45, -0.45])
    # the student e1 = [1, 3]: 0.9 * [1, 1] / 2 + 0.1 * sign(e1 - e3) / 2 = [0.45 - 0.05, 0.45 + 0.05]
    assert outputs[1].grad.flatten().tolist() == pytest.approx([0.40, 0.50])
    outputs, gt = _three(requires_grad=True)
    SelfDistillationLoss(detach_teacher=False)(outputs, gt)[0].backward()
    assert outputs[3].grad.flatten().tolist() == pytest.approx([0.55, -0.55])


@pytest.mark.parametrize('kwargs, message', [
    ({'teacher': 'best'}, r"teacher must be one of \['deepest', 'next', 'peers', 'external'\], got 'best'"),
    ({'criterion': 'huber'}, r"criterion must be one of \['l1', 'l2'\], got 'huber'"),
    ({'pixel_weight': -1}, r'pixel_weight must be a number >= 0, got -1'),
    ({'distill_weight': True}, r'distill_weight must be a number >= 0, got True'),
    ({'exits': 2}, r'exits must be a list of exit depths \(or omitted for all exits\), got 2'),
    ({'exits': ['8']}, r"exits must be a list of exit depths .*got \['8'\]"),
    ({'exits': [True]}, r'exits must be a list of exit depths'),
    ({'start_iter': -1}, r'start_iter must be an integer >= 0, got -1'),
    ({'warmup_iter': 2.5}, r'warmup_iter must be an integer >= 0, got 2.5'),
])
def test_self_distillation_constructor_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SelfDistillationLoss(**kwargs)


# --- pairing rules ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('teacher, pairs', [
    ('deepest', [(2, [8]), (4, [8])]),
    ('next', [(2, [4]), (4, [8])]),
    ('peers', [(2, [4, 8]), (4, [2, 8]), (8, [2, 4])]),
    ('external', [(2, ['external']), (4, ['external']), (8, ['external'])]),
])
def test_pairing_rules(teacher, pairs):
    assert distill_pairs([2, 4, 8], teacher) == pairs
    assert distill_pairs((2, 4, 8), teacher, exits=[4]) == [p for p in pairs if p[0] == 4]


def test_pairing_rules_with_a_single_output():
    # a plain SRResNet: nothing to learn from, except an external teacher
    assert distill_pairs([8], 'deepest') == distill_pairs([8], 'next') == distill_pairs([8], 'peers') == []
    assert distill_pairs([8], 'external') == [(8, ['external'])]


@pytest.mark.parametrize('teacher, exits, message', [
    ('deepest', [8], r"exits \[8\] are not students with teacher='deepest' \(students: \[2, 4\]\)"),
    ('next', [3, 4], r"exits \[3\] are not students with teacher='next' \(students: \[2, 4\]\)"),
    ('peers', [16], r"exits \[16\] are not students with teacher='peers' \(students: \[2, 4, 8\]\)"),
])
def test_pairing_unknown_exits(teacher, exits, message):
    with pytest.raises(ValueError, match=message):
        distill_pairs([2, 4, 8], teacher, exits)


def test_pairing_unknown_teacher():
    with pytest.raises(ValueError, match=r"teacher must be one of .*got 'self'"):
        distill_pairs([2, 4, 8], 'self')


# --- hint (FitNets) --------------------------------------------------------------------------------------------------

def _hint_case(**net_kwargs):
    """num_feat 2, blocks 1..2, exit 1. Student F1 = ch0 [1, 2], ch1 [3, 4]; teacher F2 = ch0 [0, 0], ch1 [1, 1].

    Identity adapter: MSE = ((1 - 0)^2 + (2 - 0)^2 + (3 - 1)^2 + (4 - 1)^2) / 4 = (1 + 4 + 4 + 9) / 4 = 4.5.
    """
    net = MultiExitSRResNet(num_feat=2, num_block=2, exits=[1], upscale=2, **net_kwargs)
    feats = [t([9., 9.], [9., 9.]), t([1., 2.], [3., 4.]).requires_grad_(), t([0., 0.], [1., 1.]).requires_grad_()]
    return net, feats


def test_hint_identity_adapter_is_plain_mse():
    net, feats = _hint_case(hint_adapters=True)
    terms = HintLoss()(feats, net.depths, net=net)
    assert list(terms) == ['l_hint_e1'] and terms['l_hint_e1'].item() == pytest.approx(4.5)
    assert HintLoss(loss_weight=0.5)(feats, net.depths, net=net)['l_hint_e1'].item() == pytest.approx(2.25)


def test_hint_value_follows_the_adapter():
    net, feats = _hint_case(hint_adapters=True)
    with torch.no_grad():  # double channel 0, subtract 1 from channel 1
        net.hint_adapters['1'].weight.copy_(torch.tensor([[2., 0.], [0., 1.]]).view(2, 2, 1, 1))
        net.hint_adapters['1'].bias.copy_(torch.tensor([0., -1.]))
    # adapted = ch0 [2, 4], ch1 [2, 3]; minus teacher ch0 [0, 0], ch1 [1, 1] -> [2, 4, 1, 2]; (4 + 16 + 1 + 4) / 4
    assert HintLoss()(feats, net.depths, net=net)['l_hint_e1'].item() == pytest.approx(6.25)


def test_hint_gradients_student_adapter_and_teacher():
    net, feats = _hint_case(hint_adapters=True)
    HintLoss()(feats, net.depths, net=net)['l_hint_e1'].backward()
    # d/dF1 mean((F1 - F2)^2) = 2 (F1 - F2) / 4: ch0 [0.5, 1], ch1 [1, 1.5]
    assert feats[1].grad.flatten().tolist() == pytest.approx([0.5, 1., 1., 1.5])
    assert feats[2].grad is None  # teacher detached
    # d/d bias_c = sum over positions of 2 (A - F2)_c / 4: ch0 (1 + 2) / 2 = 1.5, ch1 (2 + 3) / 2 = 2.5
    assert net.hint_adapters['1'].bias.grad.tolist() == pytest.approx([1.5, 2.5])

    net, feats = _hint_case(hint_adapters=True)
    HintLoss(detach_teacher=False)(feats, net.depths, net=net)['l_hint_e1'].backward()
    assert feats[2].grad.flatten().tolist() == pytest.approx([-0.5, -1., -1., -1.5])


def test_hint_needs_adapters():
    net, feats = _hint_case()
    with pytest.raises(ValueError, match='HintLoss needs network_g.hint_adapters: true'):
        HintLoss().check_network(net)
    with pytest.raises(ValueError, match='HintLoss needs network_g.hint_adapters: true'):
        HintLoss()(feats, net.depths, net=net)
    with pytest.raises(ValueError, match='hint_adapters needs at least one exit'):
        MultiExitSRResNet(num_feat=2, num_block=2, exits=[], hint_adapters=True)


def test_hint_adapters_start_as_identity():
    net = MultiExitSRResNet(num_feat=3, num_block=4, exits=[1, 2], upscale=2, hint_adapters=True)
    assert list(net.hint_adapters) == ['1', '2']
    x = torch.randn(1, 3, 2, 2)
    assert torch.equal(net.hint_adapters['2'](x), x)


# --- attention transfer ----------------------------------------------------------------------------------------------

# Student (2 channels, 2x2): mean over channels of |F|^2 = [(1+1)/2, (4+0)/2, (4+0)/2, (4+4)/2] = [1, 2, 2, 4],
# norm sqrt(1 + 4 + 4 + 16) = 5 -> Q = [0.2, 0.4, 0.4, 0.8]. The -1 checks that |F| is used.
AT_STUDENT = t([[1., 2.], [2., 2.]], [[-1., 0.], [0., 2.]])
# Teacher: |F|^2 means [(4+4)/2, 2, 2, (1+1)/2] = [4, 2, 2, 1] -> Q = [0.8, 0.4, 0.4, 0.2]
AT_TEACHER = t([[2., 2.], [2., 1.]], [[2., 0.], [0., 1.]])


def test_attention_map_p2():
    assert attention_map(AT_STUDENT).flatten().tolist() == pytest.approx([0.2, 0.4, 0.4, 0.8])
    assert attention_map(AT_TEACHER).flatten().tolist() == pytest.approx([0.8, 0.4, 0.4, 0.2])
    # p = 1: mean |F| = [1, 1, 1, 2], norm sqrt(7)
    assert attention_map(AT_STUDENT, p=1).flatten().tolist() == pytest.approx([v / 7**0.5 for v in (1, 1, 1, 2)])


def test_attention_transfer_loss_p2():
    feats = [torch.zeros(1, 2, 2, 2), AT_STUDENT.clone().requires_grad_(), AT_TEACHER.clone().requires_grad_()]
    # mean((Q_s - Q_t)^2) = ((-0.6)^2 + 0 + 0 + 0.6^2) / 4 = 0.72 / 4 = 0.18; x loss_weight 2
    terms = AttentionTransferLoss(loss_weight=2)(feats, [1, 2])
    assert list(terms) == ['l_at_e1'] and terms['l_at_e1'].item() == pytest.approx(0.36)
    terms['l_at_e1'].backward()
    assert feats[1].grad is not None and feats[1].grad.abs().sum() > 0 and feats[2].grad is None
    feats[1].grad = None
    AttentionTransferLoss(detach_teacher=False)(feats, [1, 2])['l_at_e1'].backward()
    assert feats[2].grad is not None and feats[2].grad.abs().sum() > 0
    # identical maps: zero
    same = [feats[0], AT_STUDENT, 3 * AT_STUDENT]  # scaling F scales every position alike: the same Q
    assert AttentionTransferLoss()(same, [1, 2])['l_at_e1'].item() == pytest.approx(0, abs=1e-12)


def test_attention_transfer_p_validation():
    with pytest.raises(ValueError, match=r'p must be a number >= 1, got 0.5'):
        AttentionTransferLoss(p=0.5)


# --- FSP -------------------------------------------------------------------------------------------------------------

def test_fsp_matrix_hand_case():
    f1, f2 = t([1., 2.], [3., 4.]), t([1., 0.], [0., 1.])  # H*W = 2
    # G_ij = sum_pos F1_i F2_j / 2:  G00 = (1*1 + 2*0) / 2 = 0.5,  G01 = (1*0 + 2*1) / 2 = 1,
    #                                G10 = (3*1 + 4*0) / 2 = 1.5,  G11 = (3*0 + 4*1) / 2 = 2
    assert fsp_matrix(f1, f2).tolist() == [[[0.5, 1.], [1.5, 2.]]]
    # different channel counts: F2 = one channel [1, 1] -> G = [[(1 + 2) / 2], [(3 + 4) / 2]]
    assert fsp_matrix(f1, t([1., 1.])).tolist() == [[[1.5], [3.5]]]


def test_section_bounds():
    assert section_bounds(8, 2) == [0, 4, 8]
    assert section_bounds(6, 3) == [0, 2, 4, 6]
    assert section_bounds(4, 1) == [0, 4]
    assert section_bounds(3, 2) == [0, 2, 3]  # round(1.5) = 2 (Python rounds halves to even)
    assert section_bounds(5, 2) == [0, 2, 5]  # round(2.5) = 2


def test_fsp_loss_one_section():
    # student exit 1: G(f0, f1);  teacher 2: G(f0, f2)
    f0, f1, f2 = t([1., 2.], [3., 4.]), t([1., 0.], [0., 1.]), t([1., 1.], [0., 0.])
    # G_s = [[0.5, 1], [1.5, 2]] (above);  G_t = [[(1 + 2) / 2, 0], [(3 + 4) / 2, 0]] = [[1.5, 0], [3.5, 0]]
    # diff [[-1, 1], [-2, 2]] -> mean of squares (1 + 1 + 4 + 4) / 4 = 2.5
    terms = FSPLoss(sections=1)([f0, f1, f2], [1, 2])
    assert list(terms) == ['l_fsp_e1'] and terms['l_fsp_e1'].item() == pytest.approx(2.5)


def test_fsp_loss_two_sections():
    # one channel, two positions: G(a, b) = mean(a * b). Exit 2 (bounds 0, 1, 2) vs final 4 (bounds 0, 2, 4).
    f = [t([1., 1.]), t([2., 0.]), t([1., 3.]), t([7., 7.]), t([2., 2.])]
    # student: G(f0, f1) = (2 + 0) / 2 = 1,  G(f1, f2) = (2 + 0) / 2 = 1
    # teacher: G(f0, f2) = (1 + 3) / 2 = 2,  G(f2, f4) = (2 + 6) / 2 = 4
    # mean over sections of (1 - 2)^2 = 1 and (1 - 4)^2 = 9 -> 5
    f = [x.requires_grad_() for x in f]
    terms = FSPLoss(sections=2)(f, [2, 4])
    assert list(terms) == ['l_fsp_e2'] and terms['l_fsp_e2'].item() == pytest.approx(5.)
    terms['l_fsp_e2'].backward()
    # f1 is student-only: d/df1 of 0.5 [(mean(f0 f1) - 2)^2 + (mean(f1 f2) - 4)^2]
    #   = (1 - 2) * f0 / 2 + (1 - 4) * f2 / 2 = [-0.5 - 1.5, -0.5 - 4.5] = [-2, -5]
    assert f[1].grad.flatten().tolist() == pytest.approx([-2., -5.])
    assert f[4].grad is None  # teacher-only features: detached
    with pytest.raises(ValueError, match=r'FSPLoss: output 1 has fewer blocks than sections \(2\)'):
        FSPLoss(sections=2)(f, [1, 4])
    with pytest.raises(ValueError, match=r'sections must be an integer >= 1, got 0'):
        FSPLoss(sections=0)


# --- feature affinity (FAKD) -----------------------------------------------------------------------------------------

# two positions, two channels; each position's channel vector normalised:
FA_A = t([3., 0.], [4., 2.])  # p0 = (3, 4) / 5 = (0.6, 0.8), p1 = (0, 2) / 2 = (0, 1) -> A = [[1, 0.8], [0.8, 1]]
FA_B = t([0., 5.], [1., 0.])  # p0 = (0, 1), p1 = (1, 0) -> A = [[1, 0], [0, 1]]
FA_C = t([1., 2.], [0., 0.])  # p0 = p1 = (1, 0) -> A = [[1, 1], [1, 1]]


def test_affinity_matrix_hand_case():
    assert affinity_matrix(FA_A).tolist() == [[[pytest.approx(1.), pytest.approx(0.8)],
                                               [pytest.approx(0.8), pytest.approx(1.)]]]
    assert affinity_matrix(FA_B).tolist() == [[[1., 0.], [0., 1.]]]
    assert affinity_matrix(FA_C).tolist() == [[[1., 1.], [1., 1.]]]
    assert torch.allclose(affinity_matrix(7 * FA_A), affinity_matrix(FA_A))  # scale-free


@pytest.mark.parametrize('teacher, expected', [
    # mean |A_x - A_y|:  d(A, B) = (0 + 0.8 + 0.8 + 0) / 4 = 0.4,  d(A, C) = (0 + 0.2 + 0.2 + 0) / 4 = 0.1,
    #                    d(B, C) = (0 + 1 + 1 + 0) / 4 = 0.5;  exits 1, 2 and final 3 hold A, B, C
    ('deepest', {1: 0.1, 2: 0.5}),
    ('next', {1: 0.4, 2: 0.5}),
    ('peers', {1: (0.4 + 0.1) / 2, 2: (0.4 + 0.5) / 2, 3: (0.1 + 0.5) / 2}),
])
def test_feature_affinity_loss(teacher, expected):
    feats = [torch.zeros(1, 2, 1, 2), FA_A, FA_B, FA_C]
    terms = FeatureAffinityLoss(teacher=teacher)(feats, [1, 2, 3])
    assert {int(k.rsplit('_e', 1)[1]): v.item() for k, v in terms.items()} == pytest.approx(expected)
    assert all(k.startswith('l_fakd_e') for k in terms)


# --- shared behaviour of the feature losses --------------------------------------------------------------------------

FEATURE_LOSSES = [HintLoss, AttentionTransferLoss, FSPLoss, FeatureAffinityLoss]


@pytest.mark.parametrize('cls', FEATURE_LOSSES)
def test_feature_losses_registered_and_gradients_reach_only_the_student(cls):
    assert LOSS_REGISTRY.get(cls.__name__) is cls and issubclass(cls, FeatureDistillLoss)
    torch.manual_seed(0)
    net = MultiExitSRResNet(num_feat=4, num_block=4, exits=[2], upscale=2, hint_adapters=True)
    outputs, feats = net(torch.rand(1, 3, 6, 6), exit='all', return_features=True)
    kwargs = {'sections': 1} if cls is FSPLoss else {}
    terms = cls(**kwargs)(feats, net.depths, net=net)
    assert list(terms) == [f'l_{cls.name}_e2']
    net.zero_grad()
    terms[f'l_{cls.name}_e2'].backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert grads['body.0.conv1.weight'].abs().sum() > 0  # the student's blocks learn
    assert all(grads[f'body.{i}.conv1.weight'] is None for i in (2, 3))  # the teacher's own blocks do not
    assert all(g is None for n, g in grads.items() if n.startswith(('exit_tails.', 'upconv', 'conv_hr', 'conv_last')))


@pytest.mark.parametrize('cls', FEATURE_LOSSES)
def test_feature_losses_schedule_and_zero_weight(cls):
    net = MultiExitSRResNet(num_feat=4, num_block=4, exits=[2], upscale=2, hint_adapters=True)
    torch.manual_seed(1)
    _, feats = net(torch.rand(1, 3, 5, 5), exit='all', return_features=True)
    extra = {'sections': 2} if cls is FSPLoss else {}
    full = cls(**extra)(feats, net.depths, net=net)[f'l_{cls.name}_e2'].item()
    scheduled = cls(start_iter=2, warmup_iter=4, **extra)
    # iter 2: off; iter 3: (3 - 2) / 4 = 0.25; iter 6 and later: full
    values = [scheduled(feats, net.depths, net=net, current_iter=i)[f'l_{cls.name}_e2'].item() for i in (2, 3, 6, 9)]
    assert full > 0 and values == pytest.approx([0, 0.25 * full, full, full])
    assert cls(loss_weight=0, **extra)(feats, net.depths, net=net)[f'l_{cls.name}_e2'].item() == 0


@pytest.mark.parametrize('kwargs, message', [
    ({'teacher': 'external'}, r"teacher must be one of \['deepest', 'next', 'peers'\], got 'external'"),
    ({'loss_weight': -0.5}, r'loss_weight must be a number >= 0, got -0.5'),
    ({'exits': 'all'}, r"exits must be a list of exit depths .*got 'all'"),
    ({'start_iter': 1.0}, r'start_iter must be an integer >= 0, got 1.0'),
])
@pytest.mark.parametrize('cls', FEATURE_LOSSES)
def test_feature_loss_constructor_validation(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_feature_loss_exits_filter_and_unknown_exit():
    feats = [torch.zeros(1, 2, 1, 2), FA_A, FA_B, FA_C]
    assert list(FeatureAffinityLoss(exits=[2])(feats, [1, 2, 3])) == ['l_fakd_e2']
    with pytest.raises(ValueError, match=r"exits \[3\] are not students with teacher='next'"):
        FeatureAffinityLoss(teacher='next', exits=[3])(feats, [1, 2, 3])
