"""CUDA paths (skipped without a GPU; run on the lent GPU machine): mixed-precision and channels_last training, and
half-precision inference, each checked against fp32 on real image crops."""
import copy

import numpy as np
import pytest
import torch
from basicsr.models import build_model
from conftest import photo_crops, run_train, write_opt

from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.inference.runners import TorchRunner
from srdistill.utils.matlab_imresize import imresize

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def _batch(n=4, size=64):
    hr = np.stack(photo_crops(n, size))[..., ::-1] / 255.
    lq = np.stack([imresize(h, 1 / 4) for h in hr])
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float()  # noqa: E731
    return {'lq': to_t(lq), 'gt': to_t(hr)}


def _model(tiny_opt, tmp_path, **train):
    opt = copy.deepcopy(tiny_opt)
    opt['num_gpu'] = 1
    opt['network_g'].update(num_feat=32, num_block=8, exits=[4])
    opt['train'].update(train)
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['path'].update(models=str(tmp_path), training_states=str(tmp_path), visualization=str(tmp_path))
    torch.manual_seed(0)
    return build_model(opt)


@pytest.mark.parametrize('train', [{'amp': 'bf16'}, {'amp': 'fp16'}, {'channels_last': True},
                                   {'amp': 'bf16', 'channels_last': True},
                                   {'channels_last': True, 'optim_g': {'type': 'Adam', 'lr': 2e-4, 'betas': [0.9, 0.99],
                                                                       'fused': True}}])
def test_fast_training_settings_follow_fp32(tiny_opt, tmp_path, train):
    """20 steps on the same batches: the losses track the fp32 run's (bf16 has ~3 significant digits); the last case
    checks fused Adam (with channels_last) against torch's default Adam."""
    batch = _batch()
    losses = {}
    # the reference is plain fp32 in the default (contiguous) layout: channels_last is on unless switched off
    for name, settings in (('fp32', {'channels_last': False}), ('fast', train)):
        model = _model(tiny_opt, tmp_path, **settings)
        if 'amp' in settings:
            assert model.amp_dtype == {'bf16': torch.bfloat16, 'fp16': torch.float16}[settings['amp']]
        losses[name] = []
        for it in range(1, 21):
            model.feed_data(batch)
            model.optimize_parameters(it)
            losses[name].append(model.log_dict['l_total'])
    fp32, fast = np.array(losses['fp32']), np.array(losses['fast'])
    assert np.isfinite(fast).all() and fast[-1] < fast[0]
    tolerance = 0.03 if 'amp' in train else 1e-4
    assert np.abs(fast / fp32 - 1).max() < tolerance, (fp32, fast)


@pytest.mark.parametrize('precision', ['fp16', 'bf16'])
def test_half_precision_inference_matches_fp32(precision):
    net = MultiExitSRResNet(num_feat=32, num_block=8, exits=[4])
    lq = _batch(1)['lq'].permute(0, 2, 3, 1).numpy()[..., ::-1].transpose(0, 3, 1, 2).copy()
    ref = TorchRunner(copy.deepcopy(net), 4, 'cpu', exit_depth=4)(lq)
    out = TorchRunner(copy.deepcopy(net), 4, 'cuda', precision=precision, exit_depth=4)(lq)
    psnr = 10 * np.log10(1 / np.mean((out - ref)**2))
    assert psnr > (45 if precision == 'fp16' else 35), psnr


def test_training_with_the_cuda_prefetcher(tiny_opt, tmp_path):
    """The training options' prefetch_mode: cuda + pin_memory: true through tools/train.py's pipeline on a GPU:
    BasicSR's CUDAPrefetcher feeds the run (no CPU fallback), and it trains and checkpoints."""
    tiny_opt['datasets']['train'].update(prefetch_mode='cuda', pin_memory=True)
    result = run_train(tmp_path, '-opt', write_opt(tmp_path / 'tiny.yml', tiny_opt), '--force_yml', 'num_gpu=1')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'fall back' not in result.stderr
    exp = tmp_path / 'experiments' / 'tiny_sd'
    assert 'Use cuda prefetch dataloader' in next(exp.glob('train_*.log')).read_text()
    assert (exp / 'models' / 'net_g_latest.pth').is_file()
