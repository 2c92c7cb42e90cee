"""Per-exit evaluation: metrics plumbing, checkpoints (multi-exit and plain MSRResNet), costs, tiling, ensemble."""
import cv2
import numpy as np
import pytest
import torch
from basicsr.archs.srresnet_arch import MSRResNet
from conftest import make_paired_folder

from srdistill.archs.checkpoints import infer_network_opt, load_checkpoint, read_state_dict
from srdistill.archs.cost import exit_macs
from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.evaluation.exits import evaluate, markdown_table, paired_files
from srdistill.metrics.psnr_ssim_y_metric import bicubic_upsample, calculate_psnr_y
from srdistill.utils.errors import UserError
from srdistill.utils.tiling import self_ensemble, tiled_forward


def _zero_output_net():
    """All convolutions zero: every exit outputs exactly the bilinear upsampling of its input."""
    net = MultiExitSRResNet(num_feat=8, num_block=4, exits=[2], upscale=4)
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    return net.eval()


def test_every_exit_and_bicubic_scored_on_real_pairs(tmp_path):
    gt_dir, lq_dir = make_paired_folder(str(tmp_path / 'val'), n=2, size=64)
    pairs = paired_files(gt_dir, lq_dir)
    scores, per_image = evaluate(_zero_output_net(), pairs, 4, device=torch.device('cpu'), rgb=True,
                                 save_dir=str(tmp_path / 'sr'))
    assert list(scores) == ['bicubic_srcnn', 'bicubic', 'e2', 'e4']
    assert list(scores['e2']) == ['psnr', 'ssim', 'psnr_rgb']
    assert scores['e2'] == scores['e4']  # both are the bilinear upsampling

    expected = [calculate_psnr_y(bicubic_upsample(cv2.imread(lq), 4), cv2.imread(gt), crop_border=4)
                for gt, lq in pairs]
    assert scores['bicubic']['psnr'] == pytest.approx(np.mean(expected))
    assert [name for name, _ in per_image] == ['img00', 'img01']
    assert per_image[1][1]['bicubic']['psnr'] == pytest.approx(expected[1])
    assert scores['bicubic']['psnr'] > scores['e2']['psnr']  # MATLAB bicubic beats bilinear on real photos
    assert sorted(p.name for p in (tmp_path / 'sr' / 'e4').iterdir()) == ['img00.png', 'img01.png']
    table = markdown_table(scores, 'val')
    assert table.splitlines()[0] == '| output | val PSNR (dB) | val SSIM |' and len(table.splitlines()) == 6


def test_checkpoints_multi_exit_and_plain_msrresnet(tmp_path):
    net = MultiExitSRResNet(num_feat=8, num_block=4, exits=[2], upscale=3)
    ema = {k: v + 1 for k, v in net.state_dict().items()}
    torch.save({'params': net.state_dict(), 'params_ema': ema}, tmp_path / 'net_g.pth')
    loaded, opt = load_checkpoint(str(tmp_path / 'net_g.pth'))
    assert opt == dict(type='MultiExitSRResNet', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=4, exits=[2],
                       upscale=3)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())
    loaded, _ = load_checkpoint(str(tmp_path / 'net_g.pth'), param_key='params_ema')
    assert all(torch.equal(v, ema[k]) for k, v in loaded.state_dict().items())

    plain = MSRResNet(num_feat=8, num_block=3, upscale=2)  # BasicSR's own, DataParallel-prefixed
    torch.save({f'module.{k}': v for k, v in plain.state_dict().items()}, tmp_path / 'msrresnet.pth')
    loaded, opt = load_checkpoint(str(tmp_path / 'msrresnet.pth'))
    assert opt['exits'] == [] and opt['num_block'] == 3 and opt['upscale'] == 2
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        assert torch.equal(loaded(x, exit='all')[3], plain.eval()(x))


def test_checkpoint_errors(tmp_path):
    with pytest.raises(UserError, match='missing.pth does not exist'):
        read_state_dict(str(tmp_path / 'missing.pth'))
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(UserError, match='junk.pth is not a loadable PyTorch checkpoint'):
        read_state_dict(str(tmp_path / 'junk.pth'))
    torch.save({'params': torch.nn.Linear(2, 2).state_dict()}, tmp_path / 'linear.pth')
    with pytest.raises(UserError, match='linear.pth is not a checkpoint of a network srdistill knows'):
        load_checkpoint(str(tmp_path / 'linear.pth'))
    torch.save({'params': MultiExitSRResNet(num_feat=8, num_block=4, exits=[2]).state_dict()}, tmp_path / 'x4.pth')
    with pytest.raises(UserError, match=r'x4.pth is a x4 model, but scale 2 was asked for'):
        load_checkpoint(str(tmp_path / 'x4.pth'), scale=2)
    (tmp_path / 'o.yml').write_text('network_g: {type: MultiExitSRResNet, num_feat: 8, num_block: 6, exits: [2]}\n')
    with pytest.raises(UserError, match=r'does not match .*o.yml: network_g.num_block is 6 there, 4 in the checkpoint'):
        load_checkpoint(str(tmp_path / 'x4.pth'), opt_path=str(tmp_path / 'o.yml'))
    assert infer_network_opt(MultiExitSRResNet(num_feat=4, num_block=5, exits=[1, 3]).state_dict())['exits'] == [1, 3]


def test_costs_of_each_exit():
    net = MultiExitSRResNet(num_feat=16, num_block=6, exits=[2], upscale=4)
    assert net.exit_parameters(2) == sum(p.numel() for p in MSRResNet(num_feat=16, num_block=2).parameters())
    assert net.exit_parameters(6) == sum(p.numel() for p in MSRResNet(num_feat=16, num_block=6).parameters())
    # hand count for a 16x16 output (4x4 LR): conv_first 16*3*9*16 px; each block 2*16*16*9*16; tail: upconv1
    # 64*16*9*16 px, upconv2 64*16*9*64 px, conv_hr 16*16*9*256 px, conv_last 3*16*9*256 px
    lr, block = 16, 2 * 16 * 16 * 9 * 16
    tail = 64 * 16 * 9 * lr + 64 * 16 * 9 * 4 * lr + 16 * 16 * 9 * 16 * lr + 3 * 16 * 9 * 16 * lr
    assert exit_macs(net, 2, output_size=(16, 16)) == 16 * 3 * 9 * lr + 2 * block + tail
    assert exit_macs(net, 6, output_size=(16, 16)) == 16 * 3 * 9 * lr + 6 * block + tail


def test_tiled_equals_untiled_and_self_ensemble():
    torch.manual_seed(0)
    net = MultiExitSRResNet(num_feat=8, num_block=3, exits=[1], upscale=2).eval()
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        whole = net(x, exit='all')
        tiled = tiled_forward(lambda t: net(t, exit='all'), x, 2, tile=16, overlap=14)
    # receptive-field radius of the deepest output: 1 + 2 * 3 + 2 (tail at LR) = 9 LR px > overlap // 2 = 7 at worst,
    # so compare with a tolerance; with overlap 20 (radius 10 covered) the outputs agree to float rounding
    assert all(torch.allclose(whole[k], tiled[k], atol=5e-3) for k in whole)
    with torch.no_grad():
        exact = tiled_forward(lambda t: net(t, exit='all'), x, 2, tile=24, overlap=20)
    assert all(torch.allclose(whole[k], exact[k], atol=1e-6) for k in whole)
    with pytest.raises(ValueError, match='overlap'):
        tiled_forward(net, x, 2, tile=8, overlap=8)
    # x8 self-ensemble of a flip/rotation-equivariant function is the function itself
    up = self_ensemble(lambda t: {'a': torch.nn.functional.interpolate(t, scale_factor=2, mode='nearest')}, x)
    assert torch.allclose(up['a'], torch.nn.functional.interpolate(x, scale_factor=2, mode='nearest'))


def test_tradeoff_plot_draws_the_latency_panel_only_with_latencies(tmp_path):
    import cv2

    from srdistill.evaluation.figures import plot_tradeoff
    rows = [dict(model='bicubic', output='bicubic', macs=None, latency_ms=None, **{'A/psnr': 25.0}),
            dict(model='net', output='e4', macs=5e9, latency_ms=None, **{'A/psnr': 26.0}),
            dict(model='net', output='e8', macs=9e9, latency_ms=None, **{'A/psnr': 26.5})]
    one = cv2.imread(plot_tradeoff(rows, 'A', str(tmp_path / 'one.png')))
    rows[1]['latency_ms'], rows[2]['latency_ms'] = 10.0, 18.0
    two = cv2.imread(plot_tradeoff(rows, 'A', str(tmp_path / 'two.png')))
    assert (one.shape[1], two.shape[1]) == (660, 1320)  # 5.5 inches per panel at 120 dpi


def test_tradeoff_plot_draws_the_latency_spread_as_error_bars(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from srdistill.evaluation.figures import plot_tradeoff
    drawn = []
    real = Axes.errorbar

    def spy(self, x, y, *args, **kwargs):
        drawn.append((list(x), list(y), [list(side) for side in kwargs['xerr']]))
        return real(self, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, 'errorbar', spy)
    rows = [dict(model='bicubic', output='bicubic', macs=None, latency_ms=None, **{'A/psnr': 25.0}),
            dict(model='net', output='e8', macs=9e9, latency_ms=18.0, latency_q1_ms=16.0, latency_q3_ms=21.0,
                 **{'A/psnr': 26.5}),
            dict(model='net', output='e4', macs=5e9, latency_ms=10.0, latency_q1_ms=9.0, latency_q3_ms=10.5,
                 **{'A/psnr': 26.0}),
            dict(model='old', output='e4', macs=5e9, latency_ms=12.0, **{'A/psnr': 25.5})]  # no quartiles: no bar
    plot_tradeoff(rows, 'A', str(tmp_path / 'p.png'))
    # on the latency panel only, at the medians, from the first quartile to the third
    assert drawn == [([10.0, 18.0], [26.0, 26.5], [[1.0, 2.0], [0.5, 3.0]])]
    assert (tmp_path / 'p.png').read_bytes()[:4] == b'\x89PNG'
