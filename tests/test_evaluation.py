"""Per-exit evaluation of checkpoints (as the demo reports it) and checkpoint loading."""
import cv2
import pytest
import torch
from conftest import make_paired_folder

from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.evaluation.exits import evaluate, load_network, markdown_table, paired_files
from srdistill.metrics.psnr_ssim_y_metric import bicubic_upsample, calculate_psnr_y
from srdistill.utils.errors import UserError

NET = {'type': 'MultiExitSRResNet', 'num_feat': 8, 'num_block': 4, 'exits': [2], 'upscale': 4}


def _zero_output_net():
    """All convolutions zero: every exit outputs exactly the bilinear upsampling of its input."""
    net = MultiExitSRResNet(num_feat=8, num_block=4, exits=[2], upscale=4)
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    return net.eval()


def test_every_exit_and_bicubic_scored_on_real_pairs(tmp_path):
    gt_dir, lq_dir = make_paired_folder(str(tmp_path / 'val'), n=2, size=64)
    pairs = paired_files(gt_dir, lq_dir)
    scores = evaluate(_zero_output_net(), pairs, 4, device=torch.device('cpu'))
    assert list(scores) == ['bicubic', 'e2', 'e4']
    assert scores['e2'] == scores['e4']  # both are the bilinear upsampling

    expected = []
    for gt_path, lq_path in pairs:
        gt, lq = cv2.imread(gt_path), cv2.imread(lq_path)
        expected.append(calculate_psnr_y(bicubic_upsample(lq, 4), gt, crop_border=4))
    assert scores['bicubic'][0] == pytest.approx(sum(expected) / 2)
    assert scores['bicubic'][0] > scores['e2'][0]  # MATLAB bicubic beats bilinear on real photos
    table = markdown_table(scores, 'val')
    assert table.splitlines()[0] == '| output | val PSNR (dB) | val SSIM |' and len(table.splitlines()) == 5


def test_load_network_from_basicsr_checkpoint_and_bare_state_dict(tmp_path):
    net = MultiExitSRResNet(num_feat=8, num_block=4, exits=[2])
    ema = {k: v + 1 for k, v in net.state_dict().items()}
    torch.save({'params': net.state_dict(), 'params_ema': ema}, tmp_path / 'net_g.pth')
    torch.save({f'module.{k}': v for k, v in net.state_dict().items()}, tmp_path / 'bare.pth')
    loaded = load_network(NET, str(tmp_path / 'net_g.pth'), device='cpu')
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())
    loaded = load_network(NET, str(tmp_path / 'net_g.pth'), param_key='params_ema', device='cpu')
    assert all(torch.equal(v, ema[k]) for k, v in loaded.state_dict().items())
    loaded = load_network(NET, str(tmp_path / 'bare.pth'), device='cpu')
    assert not loaded.training and all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_load_network_errors(tmp_path):
    with pytest.raises(UserError, match='missing.pth does not exist'):
        load_network(NET, str(tmp_path / 'missing.pth'))
    torch.save({'params': MultiExitSRResNet(num_feat=8, num_block=3).state_dict()}, tmp_path / 'other.pth')
    with pytest.raises(UserError, match='other.pth does not fit network'):
        load_network(NET, str(tmp_path / 'other.pth'))

