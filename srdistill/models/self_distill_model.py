"""BasicSR model that trains every exit of a multi-exit network together and validates each of them."""
import contextlib
from collections import OrderedDict
from os import path as osp

import torch
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.registry import MODEL_REGISTRY
from tqdm import tqdm

from srdistill.losses.contrastive_distill_loss import ContrastiveDistillLoss
from srdistill.losses.feature_distill import FeatureDistillLoss
from srdistill.losses.self_distill_loss import SelfDistillationLoss
from srdistill.losses.upcycled_distill_loss import UpcycledDistillLoss
from srdistill.models import nan_guard
from srdistill.utils.amp import amp_dtype


@MODEL_REGISTRY.register()
class SelfDistillSRModel(SRModel):
    """Self-distillation SR model for a network whose ``forward(x, exit='all')`` returns ``{depth: SR image}``.

    Overridden from :class:`basicsr.models.sr_model.SRModel`:

    - ``init_training_settings``: inherited, then checks that ``train.pixel_opt`` is a loss over all outputs
      (:class:`SelfDistillationLoss`), builds the feature-distillation terms ``train.distill_opts`` (a list of
      :class:`~srdistill.losses.feature_distill.FeatureDistillLoss` options), the extra-input term
      ``train.upcycle_opt`` (:class:`UpcycledDistillLoss`), the contrastive term ``train.contrast_opt``
      (:class:`ContrastiveDistillLoss`), the frozen external teacher
      ``network_t`` when configured, mixed precision (``train.amp``: ``bf16`` / ``fp16`` / ``~`` = fp32, the default;
      CUDA only) and the memory format (``train.channels_last``, default true: faster training steps on the CPU and
      the GPU, PSNR unchanged; docs/speed.md);
    - ``optimize_parameters``: one pass of the trunk gives every exit's output (and its features when a feature term
      is configured); the loss terms are logged per exit (``l_pix_e8``, ``l_distill_e8``, ``l_hint_e8``, ...,
      ``l_pix_e32`` and ``l_total``); losses are computed in fp32; a perceptual loss, if configured, applies to the
      final output;
    - ``test``: every exit from one forward pass (``self.outputs``); ``self.output`` is the final one;
    - ``nondist_validation``: each metric for each exit (``psnr_e8``, ``ssim_e8``, ..., ``psnr_e32``), best value per
      exit, tensorboard scalars and SR image samples per exit (``val.tb_images`` images, default 2).

    Inherited unchanged: network building and loading, EMA, optimisers, schedulers, saving, resuming.
    """

    def model_to_device(self, net):
        """BasicSR's, after putting a training network in channels_last (``train.channels_last``): before DDP wraps it,
        which fixes its gradient buckets' strides from the parameters' (changed afterwards, every gradient would be
        copied between layouts)."""
        if self.is_train and (self.opt.get('train') or {}).get('channels_last', True):
            net = net.to(memory_format=torch.channels_last)
        return super().model_to_device(net)

    def init_training_settings(self):
        train_opt = self.opt['train']
        self.amp_dtype = _amp_dtype(train_opt.get('amp'), self.device)
        self.channels_last = bool(train_opt.get('channels_last', True))  # net_g is already (see model_to_device)
        super().init_training_settings()
        if not isinstance(self.cri_pix, SelfDistillationLoss):
            raise ValueError('train.pixel_opt.type must be SelfDistillationLoss for SelfDistillSRModel '
                             f'(got {type(self.cri_pix).__name__}); it computes the loss of every exit.')
        bare = self.get_bare_model(self.net_g)
        self.cri_distill = []
        for distill_opt in train_opt.get('distill_opts') or []:
            cri = build_loss(distill_opt).to(self.device)
            if not isinstance(cri, FeatureDistillLoss):
                raise ValueError(f'train.distill_opts: {distill_opt["type"]} is not a feature distillation loss.')
            cri.check_network(bare)
            self.cri_distill.append(cri)
        self.cri_upcycle = self._build_term(train_opt, 'upcycle_opt', UpcycledDistillLoss, bare)
        self.cri_contrast = self._build_term(train_opt, 'contrast_opt', ContrastiveDistillLoss, bare)
        self.net_t = self._build_teacher() if self.opt.get('network_t') else None
        if self.cri_pix.needs_external and self.net_t is None:
            raise ValueError('train.pixel_opt.teacher: external needs network_t (and path.pretrain_network_t).')
        self.grad_scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def _build_term(self, train_opt, key, cls, bare):
        """The loss ``train.<key>`` (an instance of ``cls``), or None when the option is absent."""
        if not train_opt.get(key):
            return None
        cri = build_loss(train_opt[key]).to(self.device)
        if not isinstance(cri, cls):
            raise ValueError(f'train.{key}.type must be {cls.__name__} (or a subclass), got {type(cri).__name__}.')
        cri.students(bare.depths)  # raises if its `exits` are not exits of the network
        return cri

    def _build_teacher(self):
        """The frozen external teacher ``network_t`` (any registered arch), loaded from ``path.pretrain_network_t``."""
        net_t = build_network(self.opt['network_t']).to(self.device)
        load_path = self.opt['path'].get('pretrain_network_t')
        if load_path is None:
            raise ValueError('network_t needs path.pretrain_network_t: the external teacher must be trained.')
        self.load_network(net_t, load_path, self.opt['path'].get('strict_load_t', True),
                          self.opt['path'].get('param_key_t', 'params'))
        net_t.eval()
        for p in net_t.parameters():
            p.requires_grad_(False)
        return net_t

    @property
    def depths(self):
        """tuple[int]: Output depths of the network, shallowest first, the final output last."""
        return self.get_bare_model(self.net_g).depths

    def feed_data(self, data):
        super().feed_data(data)
        if getattr(self, 'channels_last', False) and self.net_g.training:
            self.lq = self.lq.contiguous(memory_format=torch.channels_last)

    def _autocast(self):
        # fp32 enters no autocast context: on a step bound by the host (a fast GPU), its Python costs time
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        with self._autocast():
            if self.cri_distill:
                outputs, feats = self.net_g(self.lq, exit='all', return_features=True)
            else:
                outputs, feats = self.net_g(self.lq, exit='all'), None
            external = None
            if self.cri_pix.needs_external:
                with torch.no_grad():
                    external = self.net_t(self.lq).float()
        # losses in fp32, whatever the forward ran in
        outputs = OrderedDict((depth, sr.float()) for depth, sr in outputs.items())
        self.output = next(reversed(outputs.values()))

        l_total, loss_dict = self.cri_pix(outputs, self.gt, external=external, current_iter=current_iter)
        if feats is not None:
            feats = [f.float() for f in feats]
            bare = self.get_bare_model(self.net_g)
            for cri in self.cri_distill:
                terms = cri(feats, self.depths, net=bare, current_iter=current_iter)
                loss_dict.update(terms)
                l_total = l_total + sum(terms.values())
        extra = OrderedDict()
        if self.cri_contrast is not None:
            extra.update(self.cri_contrast(outputs, self.lq, current_iter=current_iter))
        if self.cri_upcycle is not None:
            with self._autocast():
                extra.update(self.cri_upcycle(self.net_g, self.lq, self.gt, current_iter=current_iter))
        for key, value in extra.items():
            loss_dict[key] = value
            l_total = l_total + value
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            for key, value in (('l_percep', l_percep), ('l_style', l_style)):
                if value is not None:
                    l_total = l_total + value
                    loss_dict[key] = value
        loss_dict['l_total'] = l_total

        if self.grad_scaler.is_enabled():  # fp16
            self.grad_scaler.scale(l_total).backward()
            self.grad_scaler.step(self.optimizer_g)
            self.grad_scaler.update()
        else:
            l_total.backward()
            self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        nan_guard.check_losses(self.log_dict, current_iter, self.opt)  # before EMA; stops the run on NaN
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def test(self):
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        with torch.no_grad():
            self.outputs = net(self.lq, exit='all')
        net.train(was_training)
        self.output = next(reversed(self.outputs.values()))

    def _initialize_best_metric_results(self, dataset_name):
        """Like BasicSR's, but with one record per metric per exit (the keys of ``self.metric_results``)."""
        if not hasattr(self, 'best_metric_results'):
            self.best_metric_results = dict()
        if dataset_name in self.best_metric_results:
            return
        record = dict()
        for name in self.metric_results:
            better = self.opt['val']['metrics'][name.rsplit('_e', 1)[0]].get('better', 'higher')
            record[name] = dict(better=better, val=float('-inf') if better == 'higher' else float('inf'), iter=-1)
        self.best_metric_results[dataset_name] = record

    def _save_path(self, dataset_name, img_name, depth, current_iter):
        if self.opt['is_train']:
            return osp.join(self.opt['path']['visualization'], img_name, f'{img_name}_e{depth}_{current_iter}.png')
        suffix = self.opt['val'].get('suffix') or self.opt['name']
        return osp.join(self.opt['path']['visualization'], dataset_name, f'{img_name}_e{depth}_{suffix}.png')

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        metrics = self.opt['val'].get('metrics') or {}
        num_tb_images = self.opt['val'].get('tb_images', 2)
        self.metric_results = OrderedDict((f'{m}_e{d}', 0.) for d in self.depths for m in metrics)
        if metrics:
            self._initialize_best_metric_results(dataset_name)

        pbar = tqdm(total=len(dataloader), unit='image') if self.opt['val'].get('pbar', False) else None
        for idx, val_data in enumerate(dataloader):
            img_name = osp.splitext(osp.basename(val_data['lq_path'][0]))[0]
            self.feed_data(val_data)
            self.test()
            gt_img = tensor2img([self.gt.detach().cpu()]) if hasattr(self, 'gt') else None
            add_to_tb = tb_logger is not None and idx < num_tb_images
            if add_to_tb and gt_img is not None:
                tb_logger.add_image(f'samples/{dataset_name}/{img_name}/gt', _rgb(gt_img), current_iter,
                                    dataformats='HWC')
            for depth, output in self.outputs.items():
                sr_img = tensor2img([output.detach().cpu()])
                for name, metric_opt in metrics.items():
                    self.metric_results[f'{name}_e{depth}'] += calculate_metric(dict(img=sr_img, img2=gt_img),
                                                                               metric_opt)
                if save_img:
                    imwrite(sr_img, self._save_path(dataset_name, img_name, depth, current_iter))
                if add_to_tb:
                    tb_logger.add_image(f'samples/{dataset_name}/{img_name}/e{depth}', _rgb(sr_img), current_iter,
                                        dataformats='HWC')
            del self.lq, self.output, self.outputs
            if hasattr(self, 'gt'):
                del self.gt
            if pbar:
                pbar.update(1)
                pbar.set_description(f'Test {img_name}')
        if pbar:
            pbar.close()

        if metrics:
            for name in self.metric_results:
                self.metric_results[name] /= (idx + 1)
                self._update_best_metric_result(dataset_name, name, self.metric_results[name], current_iter)
            self._log_validation_metric_values(current_iter, dataset_name, tb_logger)


def _amp_dtype(amp, device):
    """``train.amp`` -> autocast dtype (``None``: fp32; values: :mod:`srdistill.utils.amp`). CUDA only; elsewhere
    ignored, with a log line."""
    dtype = amp_dtype(amp)
    if dtype is not None and device.type != 'cuda':
        get_root_logger().info(f'train.amp: {amp} applies on CUDA only; training in fp32 on {device.type}.')
        return None
    return dtype


def _rgb(img):
    """BGR (or grayscale) uint8 HWC image from ``tensor2img`` -> RGB HWC for tensorboard."""
    return img[..., None] if img.ndim == 2 else img[..., ::-1].copy()
