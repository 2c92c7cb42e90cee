"""Up-front checks of a training options file: every problem found here is one message naming the key or file.

They run right after BasicSR parses the options and before anything is written to disk (experiment folders,
logs), so a bad option never costs a renamed experiment folder or a traceback from a data-loader worker.
Components are built straight from the registries: BasicSR's ``build_*`` helpers would call ``get_root_logger``
before the pipeline configures it, and the log file would then never be written.
"""

from os import path as osp

import torch
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY

from srdistill.archs.multi_exit_srresnet_arch import SUPPORTED_SCALES
from srdistill.data.checks import check_meta_info, check_paired_folders
from srdistill.utils.errors import UserError

PREPARE_HINT = ('Prepare it with `python tools/prepare_data.py folder --hr <HR images> --name <name>` (see '
                'datasets/README.md), or point the option at your data. To try srdistill without any data: '
                '`make demo`.')
DIV2K_HINT = ('DIV2K is not prepared: see datasets/README.md for how to download and prepare it. To train without '
              'DIV2K use options/sd_x4_291.yml (the classic 291 images); to try srdistill without any data: '
              '`make demo`.')


def _build(registry, component_opt):
    component_opt = dict(component_opt)
    return registry.get(component_opt.pop('type'))(**component_opt)


def _check_scale(opt, opt_path):
    scale = opt.get('scale')
    if scale not in SUPPORTED_SCALES:
        raise UserError(f'{opt_path}: option `scale` must be one of {list(SUPPORTED_SCALES)}, got {scale!r}.')
    upscale = opt.get('network_g', {}).get('upscale', scale)
    if upscale != scale:
        raise UserError(f'{opt_path}: option `network_g.upscale` ({upscale}) differs from `scale` ({scale}); '
                        'set both to the same factor.')
    return scale


def _check_network(opt, opt_path):
    """Build ``network_g`` on the meta device (no memory, no init cost) so the arch's own validation runs."""
    if 'network_g' not in opt:
        raise UserError(f'{opt_path}: option `network_g` is missing.')
    try:
        with torch.device('meta'):
            _build(ARCH_REGISTRY, opt['network_g'])
    except (ValueError, TypeError, KeyError) as err:
        key = 'network_g.exits' if 'exits' in str(err) else 'network_g'
        raise UserError(f'{opt_path}: option `{key}`: {err}') from None


def _check_losses(opt, opt_path):
    train_opt = opt.get('train') or {}
    for key in ('pixel_opt', 'perceptual_opt'):
        if train_opt.get(key):
            try:
                _build(LOSS_REGISTRY, train_opt[key])
            except (ValueError, TypeError, KeyError) as err:
                raise UserError(f'{opt_path}: option `train.{key}`: {err}') from None
    if opt.get('model_type') == 'SelfDistillSRModel' and (train_opt.get('pixel_opt') or {}).get('type') \
            != 'SelfDistillationLoss':
        raise UserError(f'{opt_path}: option `train.pixel_opt.type` must be SelfDistillationLoss for model_type '
                        'SelfDistillSRModel (it computes the loss of every exit).')


def _check_datasets(opt, opt_path, scale):
    datasets = opt.get('datasets') or {}
    if 'train' not in datasets:
        raise UserError(f'{opt_path}: option `datasets.train` is missing.')
    for phase, dataset_opt in datasets.items():
        role = f'{opt_path}: datasets.{phase}'
        if dataset_opt.get('type') != 'PairedImageDataset':
            continue  # other dataset types are checked by BasicSR when built
        for key in ('dataroot_gt', 'dataroot_lq'):
            if not dataset_opt.get(key):
                raise UserError(f'{role}: option `{key}` is missing.')
        is_div2k = 'div2k' in (dataset_opt['dataroot_gt'] + dataset_opt['dataroot_lq']).lower()
        backend = dataset_opt.get('io_backend', {}).get('type')
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
            hint=DIV2K_HINT if is_div2k else PREPARE_HINT,
            exact=phase == 'train')


def check_train_options(opt, opt_path):
    """Check a parsed training options dict; raise :class:`UserError` naming the first bad key or file.

    Args:
        opt (dict): Options as returned by BasicSR's ``parse_options``.
        opt_path (str): The options file, named in messages.
    """
    scale = _check_scale(opt, opt_path)
    _check_network(opt, opt_path)
    _check_losses(opt, opt_path)
    _check_datasets(opt, opt_path, scale)
