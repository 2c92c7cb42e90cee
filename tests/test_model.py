"""SelfDistillSRModel on CPU: one optimisation step, per-exit loss logging, per-exit validation and tensorboard."""
import copy

import pytest
import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model

# Y PSNR (dB) / SSIM of the untrained tiny net (torch seed 0) on tiny_opt's two real 48x48 validation crops
VAL_PSNR = {'psnr_e2': 21.7691, 'psnr_e4': 21.7695}
VAL_SSIM = {'ssim_e2': 0.60899, 'ssim_e4': 0.60905}


class RecordingTB:
    """Stands in for tensorboard's SummaryWriter, recording what the model writes."""

    def __init__(self):
        self.scalars, self.images = {}, {}

    def add_scalar(self, tag, value, step):
        self.scalars[tag] = value

    def add_image(self, tag, img, step, dataformats='CHW'):
        self.images[tag] = (img.shape, dataformats)


def _model(opt, tmp_path):
    opt = copy.deepcopy(opt)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, root_path=str(tmp_path))
    opt['path'].update(models=str(tmp_path / 'models'), training_states=str(tmp_path / 'states'),
                       visualization=str(tmp_path / 'vis'), experiments_root=str(tmp_path), log=str(tmp_path))
    for phase, dataset_opt in opt['datasets'].items():
        dataset_opt.update(phase=phase, scale=opt['scale'])
    return opt, build_model(opt)


def _batch(opt):
    dataset = build_dataset(opt['datasets']['train'])
    return next(iter(build_dataloader(dataset, opt['datasets']['train'], num_gpu=0, dist=False, seed=0)))


def test_one_step_changes_weights_and_logs_every_loss_term(tiny_opt, tmp_path):
    tiny_opt['network_g'].update(num_block=4, exits=[1, 2])
    opt, model = _model(tiny_opt, tmp_path)
    before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    model.feed_data(_batch(opt))
    model.optimize_parameters(1)

    assert set(model.log_dict) == {'l_pix_e1', 'l_distill_e1', 'l_pix_e2', 'l_distill_e2', 'l_pix_e4', 'l_total'}
    terms = sum(v for k, v in model.log_dict.items() if k != 'l_total')
    assert model.log_dict['l_total'] == pytest.approx(terms, rel=1e-5)
    assert all(v > 0 for v in model.log_dict.values())
    after = model.net_g.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    # every exit tail, the trunk and the final tail learned something
    for prefix in ('conv_first.', 'body.0.', 'body.3.', 'exit_tails.1.', 'exit_tails.2.', 'conv_last.'):
        assert any(k.startswith(prefix) for k in changed), f'{prefix} did not change'


def test_validation_reports_each_exit_with_best_and_tensorboard_images(tiny_opt, tmp_path):
    torch.manual_seed(0)  # the initial weights, whatever ran before in this process
    opt, model = _model(tiny_opt, tmp_path)
    opt['datasets']['val']['phase'] = 'val'
    loader = build_dataloader(build_dataset(opt['datasets']['val']), opt['datasets']['val'], num_gpu=0, dist=False)
    tb = RecordingTB()
    model.validation(loader, current_iter=1, tb_logger=tb, save_img=True)

    # golden values: a forward pass, deterministic on one CPU; another CPU's float32 kernels move the last bits, which
    # can flip a rounded pixel (~3e-4 dB each on these 40x40 crops), far below 0.01 dB
    assert list(model.metric_results) == ['psnr_e2', 'ssim_e2', 'psnr_e4', 'ssim_e4']
    assert {k: v for k, v in model.metric_results.items() if k.startswith('psnr')} == pytest.approx(VAL_PSNR, abs=0.01)
    assert {k: v for k, v in model.metric_results.items() if k.startswith('ssim')} == pytest.approx(VAL_SSIM, abs=1e-4)
    best = model.best_metric_results['val']
    assert best['psnr_e2']['val'] == model.metric_results['psnr_e2'] and best['psnr_e2']['iter'] == 1
    assert set(tb.scalars) == {f'metrics/val/{m}_e{d}' for m in ('psnr', 'ssim') for d in (2, 4)}
    # SR samples of both exits and the GT, for both validation images (val.tb_images defaults to 2)
    assert {t.rsplit('/', 1)[1] for t in tb.images} == {'e2', 'e4', 'gt'} and len(tb.images) == 6
    assert all(shape == (48, 48, 3) and fmt == 'HWC' for shape, fmt in tb.images.values())
    saved = sorted(p.name for p in (tmp_path / 'vis').rglob('*.png'))
    assert saved == ['img00_e2_1.png', 'img00_e4_1.png', 'img01_e2_1.png', 'img01_e4_1.png']


def test_pixel_opt_must_be_the_self_distillation_loss(tiny_opt, tmp_path):
    tiny_opt['train']['pixel_opt'] = {'type': 'L1Loss', 'loss_weight': 1.0}
    with pytest.raises(ValueError, match='train.pixel_opt.type must be SelfDistillationLoss'):
        _model(tiny_opt, tmp_path)
