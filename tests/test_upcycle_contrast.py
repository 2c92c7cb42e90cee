"""The extra-input and contrastive distillation terms and the exit gradient scale: golden values on hand-computed
cases, and one training step of each through SelfDistillSRModel on real image crops."""
from collections import OrderedDict

import pytest
import torch
from conftest import run_train, write_opt
from test_model import _batch, _model

from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.losses.contrastive_distill_loss import ContrastiveDistillLoss, haar_details
from srdistill.losses.upcycled_distill_loss import UpcycledDistillLoss, zoom_in_inputs, zoom_out_inputs

TINY_NET = {'type': 'MultiExitSRResNet', 'num_feat': 8, 'num_block': 4, 'exits': [1, 2], 'upscale': 4}


class _StubNet(torch.nn.Module):
    """Outputs known by hand: the final output (depth 2) is the nearest upsampling of x, exit 1 half of it."""

    depths, upscale = (1, 2), 2

    def forward(self, x, exit=None):  # noqa: A002
        up = x.repeat_interleave(2, -1).repeat_interleave(2, -2)
        outputs = OrderedDict([(1, 0.5 * up), (2, up)])
        if exit is None:
            return outputs[2]
        if exit == 'all':
            return outputs
        return outputs[exit] if isinstance(exit, int) else OrderedDict((d, outputs[d]) for d in exit)


def test_haar_details_of_a_2x2_image():
    x = torch.tensor([[[[1., 2.], [3., 4.]]]])
    lh, hl, hh = haar_details(x, levels=2)  # the second level has no 2x2 left: one level only
    assert (lh.item(), hl.item(), hh.item()) == (-1.0, -2.0, 0.0)


def test_contrastive_golden_value_with_shuffled_negatives():
    t0, t1 = torch.tensor([[1., 2.], [3., 4.]]), torch.zeros(2, 2)
    teacher = torch.stack([t0, t1])[:, None]
    student = torch.stack([t0 + torch.tensor([[0.5, 0.], [0., 0.]]), t1])[:, None]
    loss = ContrastiveDistillLoss(loss_weight=1.0, levels=1, negatives=['shuffled'], eps=0)
    terms = loss(OrderedDict([(1, student), (2, teacher)]), lq=torch.zeros(2, 1, 1, 1))
    # image 0: pull = mean|details of the 0.5 bump| = 0.25, push = mean|details of S0| = (0.75 + 1.75 + 0.25) / 3;
    # image 1: pull 0 (S1 = T1)
    expected = (0.25 / (2.75 / 3) + 0) / 2
    assert list(terms) == ['l_contrast_e1']
    assert terms['l_contrast_e1'].item() == pytest.approx(expected, rel=1e-6)


def test_contrastive_golden_value_with_the_bicubic_negative_in_pixel_space():
    lq = torch.full((1, 3, 2, 2), 0.5)  # bicubic of a constant image is the constant
    outputs = OrderedDict([(1, torch.full((1, 3, 8, 8), 0.6)), (2, torch.full((1, 3, 8, 8), 0.7))])
    loss = ContrastiveDistillLoss(loss_weight=0.1, feature='pixel', eps=0)
    assert loss(outputs, lq)['l_contrast_e1'].item() == pytest.approx(0.1 * 0.1 / 0.1, rel=1e-5)


def test_contrastive_gradient_pulls_the_student_towards_the_teacher_and_away_from_bicubic():
    torch.manual_seed(0)
    lq = torch.rand(2, 3, 6, 6)
    teacher = torch.rand(2, 3, 24, 24)
    student = teacher.clone().requires_grad_(True)
    with torch.no_grad():
        student += 0.05 * torch.randn_like(student)
    loss = ContrastiveDistillLoss(loss_weight=1.0)
    before = loss(OrderedDict([(1, student), (2, teacher)]), lq)['l_contrast_e1']
    before.backward()
    with torch.no_grad():
        stepped = student - 1e-3 * student.grad / student.grad.abs().max()
    after = loss(OrderedDict([(1, stepped), (2, teacher)]), lq)['l_contrast_e1']
    assert after < before


def test_zoom_in_inputs_are_lr_sized_cells_of_the_hr_patch():
    gt = torch.arange(2 * 16 * 16, dtype=torch.float32).view(2, 1, 16, 16)
    z = zoom_in_inputs(gt, 4, torch.Generator().manual_seed(0))
    assert z.shape == (2, 1, 4, 4)
    for i in range(2):
        cells = [gt[i, :, r * 4:(r + 1) * 4, c * 4:(c + 1) * 4] for r in range(4) for c in range(4)]
        assert sum(torch.equal(z[i], cell) for cell in cells) == 1


def test_zoom_out_of_a_constant_patch_is_the_constant():
    y = zoom_out_inputs(torch.full((1, 3, 24, 24), 0.25), 4)
    assert y.shape == (1, 3, 6, 6)
    assert torch.allclose(y, torch.full_like(y, 0.25), atol=1e-6)


def test_upcycled_golden_values_on_a_stub_network():
    gt = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    lq = torch.full((3, 3, 4, 4), 0.4)
    net = _StubNet()
    # zoom-in, identity transform: student 0.5 * up(z) against label up(z) -> 0.5 * mean(z)
    loss = UpcycledDistillLoss(zoom_in_weight=2.0, zoom_out_weight=0)
    z = zoom_in_inputs(gt, 2, torch.Generator().manual_seed(7))
    terms = loss(net, lq, gt, generator=torch.Generator().manual_seed(7))
    assert terms['l_upin_e1'].item() == pytest.approx(2.0 * 0.5 * z.mean().item(), rel=1e-5)
    # colour inversion always on: T^-1(0.5 * up(1 - z)) = 0.5 + 0.5 * up(z) against up(z) -> 0.5 * mean(1 - z)
    loss = UpcycledDistillLoss(zoom_in_weight=1.0, consistency_prob=1.0, transforms=['invert'])
    terms = loss(net, lq, gt, generator=torch.Generator().manual_seed(7))
    z = zoom_in_inputs(gt, 2, torch.Generator().manual_seed(7))
    assert terms['l_upin_e1'].item() == pytest.approx(0.5 * (1 - z).mean().item(), rel=1e-5)
    # zoom-out of a constant 0.4 LR: the final output reproduces it (0); exit 1 gives 0.2: |0.2 - 0.4| * (1 + ratio)
    loss = UpcycledDistillLoss(zoom_in_weight=0, zoom_out_weight=1.0, distill_ratio=0.5)
    terms = loss(net, lq, gt)
    assert terms['l_upout_e2'].item() == pytest.approx(0, abs=1e-6)
    assert terms['l_upout_e1'].item() == pytest.approx(0.2 * 1.5, rel=1e-5)


def test_upcycled_schedule_and_bad_options():
    loss = UpcycledDistillLoss(start_iter=10)
    assert loss(_StubNet(), torch.rand(1, 3, 4, 4), torch.rand(1, 3, 8, 8), current_iter=10) == {}
    with pytest.raises(ValueError, match='both 0'):
        UpcycledDistillLoss(zoom_in_weight=0, zoom_out_weight=0)
    with pytest.raises(ValueError, match='transforms'):
        UpcycledDistillLoss(transforms=['rotate45'])
    with pytest.raises(ValueError, match='not students'):
        UpcycledDistillLoss(exits=[3]).students((1, 2, 4))


def test_label_consistency_of_an_equivariant_student_is_zero():
    """A student that is exactly flip/transpose/invert-equivariant and equal to the teacher has zero zoom-in loss
    under every transform: the term measures inconsistency, not the transform."""
    class Equivariant(_StubNet):
        def forward(self, x, exit=None):  # noqa: A002
            up = x.repeat_interleave(2, -1).repeat_interleave(2, -2)
            return up if exit is None or isinstance(exit, int) else OrderedDict((d, up) for d in (1, ))

    loss = UpcycledDistillLoss(consistency_prob=1.0)
    terms = loss(Equivariant(), torch.rand(2, 3, 4, 4), torch.rand(2, 3, 8, 8))
    assert terms['l_upin_e1'].item() == pytest.approx(0, abs=1e-7)


def test_exit_list_gives_the_same_outputs_as_each_exit_alone():
    torch.manual_seed(0)
    net = MultiExitSRResNet(num_feat=8, num_block=4, exits=[1, 2], upscale=4).eval()
    x = torch.rand(1, 3, 6, 6)
    outs = net(x, exit=[2, 1])
    assert list(outs) == [1, 2]
    for depth in (1, 2):
        assert torch.equal(outs[depth], net(x, exit=depth))
    with pytest.raises(ValueError, match='a list of them'):
        net(x, exit=[3])


def test_exit_grad_scale_multiplies_only_the_trunk_gradient_from_the_exit():
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    grads = {}
    for scale in (0.0, 1.0, 2.0):
        torch.manual_seed(0)
        net = MultiExitSRResNet(num_feat=8, num_block=4, exits=[2], upscale=4, exit_grad_scale=scale)
        net(x, exit=2).mean().backward()
        grads[scale] = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    assert torch.count_nonzero(grads[0.0]['body.0.conv1.weight']) == 0
    assert torch.allclose(grads[2.0]['body.0.conv1.weight'], 2 * grads[1.0]['body.0.conv1.weight'], rtol=1e-5)
    assert torch.equal(grads[2.0]['exit_tails.2.conv_last.weight'], grads[1.0]['exit_tails.2.conv_last.weight'])
    with pytest.raises(ValueError, match='exit_grad_scale'):
        MultiExitSRResNet(num_feat=8, num_block=4, exits=[2], exit_grad_scale=-1)


def test_one_step_with_both_terms_logs_them_and_the_total(tiny_opt, tmp_path):
    tiny_opt['network_g'] = dict(TINY_NET, exit_grad_scale=2.0)
    tiny_opt['train']['upcycle_opt'] = {'type': 'UpcycledDistillLoss', 'zoom_out_weight': 0.5,
                                        'consistency_prob': 0.3}
    tiny_opt['train']['contrast_opt'] = {'type': 'ContrastiveDistillLoss', 'loss_weight': 0.1}
    opt, model = _model(tiny_opt, tmp_path)
    model.feed_data(_batch(opt))
    model.optimize_parameters(1)
    log = model.log_dict
    for key in ('l_upin_e1', 'l_upin_e2', 'l_upout_e1', 'l_upout_e2', 'l_upout_e4', 'l_contrast_e1',
                'l_contrast_e2'):
        assert log[key] > 0, key
    assert log['l_total'] == pytest.approx(sum(v for k, v in log.items() if k != 'l_total'), rel=1e-5)


def test_wrong_term_type_is_refused(tiny_opt, tmp_path):
    tiny_opt['network_g'] = dict(TINY_NET)
    tiny_opt['train']['upcycle_opt'] = {'type': 'ContrastiveDistillLoss'}
    with pytest.raises(ValueError, match='upcycle_opt.type must be UpcycledDistillLoss'):
        _model(tiny_opt, tmp_path)


def test_training_entry_point_with_the_terms_from_yaml(tiny_opt, tmp_path):
    tiny_opt['network_g'] = dict(TINY_NET)
    tiny_opt['train']['upcycle_opt'] = {'type': 'UpcycledDistillLoss', 'consistency_prob': 0.5}
    tiny_opt['train']['contrast_opt'] = {'type': 'ContrastiveDistillLoss'}
    proc = run_train(tmp_path, '-opt', write_opt(tmp_path / 'opt.yml', tiny_opt))
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (tmp_path / 'experiments' / 'tiny_sd').glob('train_tiny_sd_*.log')
    text = next(log).read_text()
    assert 'l_upin_e1' in text and 'l_contrast_e2' in text


def test_a_bad_term_option_is_one_line_before_anything_is_written(tiny_opt, tmp_path):
    tiny_opt['network_g'] = dict(TINY_NET)
    tiny_opt['train']['upcycle_opt'] = {'type': 'UpcycledDistillLoss', 'consistency_prob': 1.5}
    proc = run_train(tmp_path, '-opt', write_opt(tmp_path / 'opt.yml', tiny_opt))
    assert proc.returncode == 2
    assert 'option `train.upcycle_opt`: consistency_prob must be at most 1' in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / 'experiments').exists()
