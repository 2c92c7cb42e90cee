"""Up-front checks of a training options file: every problem found here is one message naming the key or file.

The checker sits beside the model it validates options for (``SelfDistillSRModel``) and asks the same questions the
model asks when it is built: a component is accepted when the class its ``type`` names in BasicSR's registry is (a
subclass of) what the model needs, so a registered subclass passes here whenever it trains. Rules that belong to one
loss live in that loss's file, behind the hooks it shares with the model (``check_network``, ``students``).

They run right after BasicSR parses the options and before anything is written to disk (experiment folders,
logs), so a bad option never costs a renamed experiment folder or a traceback from a data-loader worker.
Components are built straight from the registries: BasicSR's ``build_*`` helpers would call ``get_root_logger``
before the pipeline configures it, and the log file would then never be written.
"""

from os import path as osp

import torch
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

from srdistill.data.checks import check_meta_info, check_paired_folders
from srdistill.data.paired_npy_dataset import PairedNpyDataset
from srdistill.losses.distill_pairs import distill_pairs
from srdistill.losses.feature_distill import FeatureDistillLoss
from srdistill.losses.self_distill_loss import SelfDistillationLoss
from srdistill.models.self_distill_model import SelfDistillSRModel
from srdistill.utils.amp import CHOICES as AMP_CHOICES
from srdistill.utils.amp import amp_dtype
from srdistill.utils.errors import UserError
from srdistill.utils.option_keys import check_option_keys, did_you_mean, lookup
from srdistill.utils.option_values import check_values
from srdistill.utils.pretrained import check_pretrained

PREPARE_HINT = ('Prepare it with `python tools/prepare_data.py folder --hr <HR images> --name <name>` (see '
                'datasets/README.md), or point the option at your data. To try srdistill without any data: '
                '`make demo`.')
NPY_HINT = ('Pack the image folders into .npy arrays with `python tools/prepare_data.py folder --hr <HR images> --name '
            '<name> --npy` (it writes <folder>_npy next to each image folder; see datasets/README.md), or use type '
            'PairedImageDataset on the image folders.')
DIV2K_HINT = ('DIV2K is not prepared: see datasets/README.md for how to download and prepare it. To train without '
              'DIV2K use options/sd_x4_291.yml (the classic 291 images); to try srdistill without any data: '
              '`make demo`.')


def _build(registry, component_opt):
    component_opt = dict(component_opt)
    name = component_opt.pop('type')
    cls = lookup(registry, name)
    if cls is None:
        raise KeyError(f'No object named {name!r} found in {registry._name!r} registry'
                       f'{did_you_mean(name, registry.keys())}')
    return cls(**component_opt)


def _reason(err):
    """The message of an exception, without the quotes ``str(KeyError)`` adds."""
    return err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else str(err)


def _build_on_meta(opt, key, opt_path):
    """Build the network ``opt[key]`` on the meta device (no memory, no init cost) so the arch's own validation runs.
    """
    try:
        if not isinstance(opt[key], dict) or 'type' not in opt[key]:
            raise ValueError('expected a mapping with a `type` (a registered architecture)')
        with torch.device('meta'):
            net = _build(ARCH_REGISTRY, opt[key])
    except (ValueError, TypeError, KeyError) as err:
        key = f'{key}.exits' if 'exits' in str(err) else key
        raise UserError(f'{opt_path}: option `{key}`: {_reason(err)}') from None
    empty = next(((name, p) for name, p in net.named_parameters() if p.numel() == 0), None)
    if empty is not None:  # e.g. num_feat: 0 builds, and fails at the first forward pass
        zeros = [f'`{key}.{k}`' for k, v in opt[key].items() if v == 0 and not isinstance(v, bool)]
        raise UserError(f'{opt_path}: option {" / ".join(zeros) or f"`{key}`"}: {empty[0]} would have shape '
                        f'{list(empty[1].shape)}, no weights; sizes (channels, blocks) must be at least 1.')
    return net


def _check_scale(opt, opt_path):
    scale = opt.get('scale')
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
        raise UserError(f'{opt_path}: option `scale` must be an integer factor >= 2 (the architecture says which it '
                        f'supports), got {scale!r}.')
    upscale = opt.get('network_g', {}).get('upscale', scale)
    if upscale != scale:
        raise UserError(f'{opt_path}: option `network_g.upscale` ({upscale}) differs from `scale` ({scale}); '
                        'set both to the same factor.')
    return scale


def _check_network(opt, opt_path):
    """``network_g`` built on the meta device (its arch validates its arguments)."""
    if 'network_g' not in opt:
        raise UserError(f'{opt_path}: option `network_g` is missing.')
    return _build_on_meta(opt, 'network_g', opt_path)


def _check_students(cri, net, key, opt_path):
    """A distillation loss's ``exits`` must name students of ``net`` under its ``teacher`` rule."""
    depths = getattr(net, 'depths', None)
    if depths is None or getattr(cri, 'exits', None) is None:
        return
    try:
        distill_pairs(depths, cri.teacher, cri.exits)
    except ValueError as err:
        raise UserError(f'{opt_path}: option `{key}.exits`: {err} (network_g has outputs {list(depths)}).') from None


def _check_losses(opt, opt_path, net):
    train_opt = opt.get('train') or {}
    losses = {}
    for key in ('pixel_opt', 'perceptual_opt'):
        if train_opt.get(key):
            try:
                losses[key] = _build(LOSS_REGISTRY, train_opt[key])
            except (ValueError, TypeError, KeyError) as err:
                raise UserError(f'{opt_path}: option `train.{key}`: {_reason(err)}') from None
    model_cls = lookup(MODEL_REGISTRY, opt.get('model_type'))
    if model_cls is not None and issubclass(model_cls, SelfDistillSRModel) \
            and not isinstance(losses.get('pixel_opt'), SelfDistillationLoss):
        raise UserError(f'{opt_path}: option `train.pixel_opt.type` must be SelfDistillationLoss (or a subclass) for '
                        f'model_type {model_cls.__name__} (it computes the loss of every exit).')
    if 'pixel_opt' in losses and hasattr(losses['pixel_opt'], 'teacher'):
        _check_students(losses['pixel_opt'], net, 'train.pixel_opt', opt_path)
    _check_feature_losses(train_opt.get('distill_opts'), net, opt_path)
    for key in ('upcycle_opt', 'contrast_opt'):  # the model builds them too; their own checks run here, up front
        if train_opt.get(key):
            try:
                cri = _build(LOSS_REGISTRY, train_opt[key])
                if hasattr(net, 'depths'):
                    cri.students(net.depths)
            except (ValueError, TypeError, KeyError, AttributeError) as err:
                raise UserError(f'{opt_path}: option `train.{key}`: {_reason(err)}') from None
    return losses.get('pixel_opt')


def _feature_loss_names():
    """The registered feature-distillation losses, for messages."""
    return ', '.join(sorted(name for name, cls in LOSS_REGISTRY
                            if isinstance(cls, type) and issubclass(cls, FeatureDistillLoss)))


def _check_feature_losses(distill_opts, net, opt_path):
    """Each ``train.distill_opts`` entry: a registered feature-distillation loss that ``network_g`` can serve.

    The loss's own :meth:`~srdistill.losses.feature_distill.FeatureDistillLoss.check_network` (the one the model calls)
    holds any rule of that loss alone.
    """
    if distill_opts is None:
        return
    if not isinstance(distill_opts, list):
        raise UserError(f'{opt_path}: option `train.distill_opts` must be a list of loss options (each with a '
                        f'`type`), got {type(distill_opts).__name__}.')
    for i, distill_opt in enumerate(distill_opts):
        key = f'train.distill_opts[{i}]'
        try:
            if not isinstance(distill_opt, dict) or 'type' not in distill_opt:
                raise ValueError(f'expected a mapping with a `type` (one of {_feature_loss_names()})')
            cri = _build(LOSS_REGISTRY, distill_opt)
            if not isinstance(cri, FeatureDistillLoss):
                raise ValueError(f'{distill_opt["type"]} is not a feature distillation loss (use one of '
                                 f'{_feature_loss_names()}; output-level distillation is configured in '
                                 'train.pixel_opt)')
        except (ValueError, TypeError, KeyError) as err:
            raise UserError(f'{opt_path}: option `{key}`: {_reason(err)}') from None
        _check_students(cri, net, key, opt_path)
        try:
            cri.check_network(net)
        except ValueError as err:
            raise UserError(f'{opt_path}: option `{key}`: {_reason(err)}') from None


def _check_teacher(opt, opt_path, pixel_loss, scale):
    """``network_t`` (the frozen external teacher): buildable, the right scale, its trained weights present."""
    if opt.get('network_t') is None:
        if getattr(pixel_loss, 'needs_external', False):
            raise UserError(f'{opt_path}: option `train.pixel_opt.teacher: external` needs `network_t` (the '
                            'teacher architecture) and `path.pretrain_network_t` (its trained weights).')
        return
    net_t = _build_on_meta(opt, 'network_t', opt_path)
    upscale = getattr(net_t, 'upscale', scale)
    if upscale != scale:
        raise UserError(f'{opt_path}: option `network_t`: the teacher upscales x{upscale}, but `scale` is {scale}.')
    path = (opt.get('path') or {}).get('pretrain_network_t')
    if not path:
        raise UserError(f'{opt_path}: option `path.pretrain_network_t` is missing: `network_t` (the external '
                        'teacher) must be a trained network.')
    check_pretrained(opt, opt_path, net_t, 't')


def _check_training_switches(opt, opt_path):
    train_opt = opt.get('train') or {}
    try:
        amp_dtype(train_opt.get('amp'))
    except ValueError:
        raise UserError(f'{opt_path}: option `train.amp` must be {AMP_CHOICES}, got {train_opt["amp"]!r}.') from None
    channels_last = train_opt.get('channels_last', False)
    if not isinstance(channels_last, bool):
        raise UserError(f'{opt_path}: option `train.channels_last` must be true or false, got {channels_last!r}.')
    optim = train_opt.get('optim_g') or {}
    for key in ('fused', 'foreach'):
        if optim.get(key) is not None and not isinstance(optim[key], bool):
            raise UserError(f'{opt_path}: option `train.optim_g.{key}` must be true or false, got {optim[key]!r}.')
    if optim.get('fused') and optim.get('foreach'):
        raise UserError(f'{opt_path}: options `train.optim_g.fused` and `train.optim_g.foreach` cannot both be true '
                        '(two implementations of the optimiser step); keep one.')


def _check_prefetch(train_opt, opt_path):
    """BasicSR checks these only after the experiment folder is made."""
    mode = train_opt.get('prefetch_mode')
    if mode not in (None, 'cpu', 'cuda'):
        raise UserError(f'{opt_path}: option `datasets.train.prefetch_mode` must be ~, cpu or cuda, got {mode!r}.')
    if mode == 'cuda' and train_opt.get('pin_memory') is not True:
        raise UserError(f'{opt_path}: option `datasets.train.prefetch_mode: cuda` needs `pin_memory: true` beside it '
                        "(BasicSR's CUDAPrefetcher copies from pinned memory). Add it, or set prefetch_mode: ~.")


def _check_datasets(opt, opt_path, scale):
    datasets = opt.get('datasets') or {}
    if 'train' not in datasets:
        raise UserError(f'{opt_path}: option `datasets.train` is missing.')
    _check_prefetch(datasets['train'], opt_path)
    for phase, dataset_opt in datasets.items():
        role = f'{opt_path}: datasets.{phase}'
        dataset_cls = lookup(DATASET_REGISTRY, dataset_opt.get('type'))
        if not (isinstance(dataset_cls, type) and issubclass(dataset_cls, PairedImageDataset)):
            continue  # other dataset types are checked by BasicSR when built
        npy = issubclass(dataset_cls, PairedNpyDataset)
        for key in ('dataroot_gt', 'dataroot_lq'):
            if not dataset_opt.get(key):
                raise UserError(f'{role}: option `{key}` is missing.')
        is_div2k = 'div2k' in (dataset_opt['dataroot_gt'] + dataset_opt['dataroot_lq']).lower()
        backend = (dataset_opt.get('io_backend') or {}).get('type', 'disk' if npy else None)
        if npy and backend != 'disk':
            raise UserError(f'{role}.io_backend: PairedNpyDataset reads .npy files from disk, not {backend}. Leave '
                            'io_backend out or set it to {type: disk}.')
        if backend == 'lmdb':
            for key in ('dataroot_gt', 'dataroot_lq'):
                meta = osp.join(dataset_opt[key], 'meta_info.txt')
                if not osp.isfile(meta):
                    raise UserError(f'{role}.{key}: {dataset_opt[key]} is not a complete LMDB (no {meta}). '
                                    f'{DIV2K_HINT if is_div2k else PREPARE_HINT}')
            continue
        if backend != 'disk':
            continue
        if dataset_opt.get('meta_info_file'):
            check_meta_info(dataset_opt['meta_info_file'], [dataset_opt['dataroot_gt']], role)
        check_paired_folders(
            dataset_opt['dataroot_gt'],
            dataset_opt['dataroot_lq'],
            scale,
            role,
            gt_size=dataset_opt.get('gt_size') if phase == 'train' else None,
            filename_tmpl=dataset_opt.get('filename_tmpl', '{}'),
            hint=NPY_HINT if npy else DIV2K_HINT if is_div2k else PREPARE_HINT,
            exact=phase == 'train',
            npy=npy)


def check_train_options(opt, opt_path, forced=()):
    """Check a training options dict; raise :class:`UserError` naming the first bad key or file.

    In order: every key known and every required one present (:mod:`srdistill.utils.option_keys`), the scale, the
    values (:mod:`srdistill.utils.option_values`), the networks and their pretrained weights, the losses, the
    training switches, the data.

    Args:
        opt (dict): Options as returned by BasicSR's ``parse_options`` (or as read from the file).
        opt_path (str): The options file, named in messages.
        forced (Iterable[tuple[str, str]]): ``(key path, entry)`` of each ``--force_yml`` entry, named in messages.
    """
    check_option_keys(opt, opt_path, forced)
    scale = _check_scale(opt, opt_path)
    check_values(opt, opt_path, scale, forced)
    net = _check_network(opt, opt_path)
    check_pretrained(opt, opt_path, net, 'g')
    pixel_loss = _check_losses(opt, opt_path, net)
    _check_teacher(opt, opt_path, pixel_loss, scale)
    _check_training_switches(opt, opt_path)
    _check_datasets(opt, opt_path, scale)
