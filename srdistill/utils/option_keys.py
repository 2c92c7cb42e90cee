"""The vocabulary of a training options file: every key that BasicSR 1.4.2, srdistill or a registered component reads.

BasicSR reads its options with ``opt.get(key)`` or ``opt[key]``: a misspelled optional key is ignored without a word
(``manual_seeed: 0`` trains with a random seed, ``ema_decy: 0.999`` without EMA), and a misspelled required one is a
``KeyError`` once the experiment folder exists, some only at the first iteration. :func:`check_option_keys` refuses
the first key that nothing reads, naming the closest known one ("did you mean"), and the first required key that is
missing, before anything is written.

Where the keys come from:

- the tables below, read from BasicSR 1.4.2's source (``utils/options.py``, ``train.py``, ``models/base_model.py``,
  ``models/sr_model.py``, ``data/__init__.py``, ``data/paired_image_dataset.py``, ``utils/logger.py``,
  ``utils/misc.py``) and srdistill's model. Keys that BasicSR adds itself while parsing (``is_train``, ``dist``,
  ``rank``, ``path.experiments_root``, each dataset's ``phase`` and ``scale``, ...) are known too, so a parsed
  options dict passes as well as the file it came from;
- a registered component's signature (``inspect.signature``): the arguments of an arch's or loss's ``__init__``
  (following ``**kwargs`` to the base classes), of a metric function, of the optimiser and scheduler classes that
  BasicSR's ``BaseModel`` builds, and of an ``io_backend``.

A model or dataset class of BasicSR's with no table here (a GAN or video model, the video datasets) is not checked
key by key: they read keys not listed here, and refusing those would be wrong. A class of one's own inherits its
bases' keys and adds those of its ``option_keys`` class attribute, ``{section: {key: REQUIRED or OPTIONAL}}``
(sections as in :data:`MODEL_KEYS`; for a dataset class, ``{key: ...}``).
"""
import difflib
import inspect

import torch
from basicsr.models.lr_scheduler import CosineAnnealingRestartLR, MultiStepRestartLR
from basicsr.utils.file_client import FileClient
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

from srdistill.utils.errors import UserError

REQUIRED = 'required'
OPTIONAL = 'optional'
TRAINING = 'required in datasets.train'  # read for the training phase only
ADDED = 'added by BasicSR'  # written by parse_options / train_pipeline, never needed in the file

REQ, OPT, TRN, ADD = REQUIRED, OPTIONAL, TRAINING, ADDED  # short names for the tables

# model class -> section ('' is the top level) -> key -> marker
MODEL_KEYS = {
    'BaseModel': {  # utils/options.py (parse_options), train.py, models/base_model.py, utils/misc.py, utils/logger.py
        '': dict(name=REQ, model_type=REQ, num_gpu=REQ, manual_seed=OPT, scale=OPT, datasets=REQ, path=REQ,
                 val=OPT, logger=REQ, dist_params=OPT, find_unused_parameters=OPT,
                 is_train=ADD, dist=ADD, rank=ADD, world_size=ADD, auto_resume=ADD, root_path=ADD),
        'path': dict(resume_state=OPT, ignore_resume_networks=OPT, experiments_root=ADD, models=ADD,
                     training_states=ADD, log=ADD, visualization=ADD, results_root=ADD),
        'train': dict(total_iter=REQ, warmup_iter=OPT, scheduler=REQ),
        'val': dict(val_freq=REQ, save_img=REQ, metrics=OPT),
        'logger': dict(print_freq=REQ, save_checkpoint_freq=REQ, use_tb_logger=REQ, wandb=OPT),
        'logger.wandb': dict(project=OPT, resume_id=OPT),
    },
    'SRModel': {  # models/sr_model.py
        '': dict(network_g=REQ, train=REQ),
        'path': dict(pretrain_network_g=OPT, param_key_g=OPT, strict_load_g=OPT),
        'train': dict(ema_decay=OPT, optim_g=REQ, pixel_opt=OPT, perceptual_opt=OPT),
        'val': dict(suffix=OPT, pbar=OPT),
    },
    'SelfDistillSRModel': {  # srdistill/models/self_distill_model.py
        '': dict(network_t=OPT),
        'path': dict(pretrain_network_t=OPT, param_key_t=OPT, strict_load_t=OPT),
        'train': dict(pixel_opt=REQ, distill_opts=OPT, upcycle_opt=OPT, contrast_opt=OPT, amp=OPT, channels_last=OPT),
        'val': dict(tb_images=OPT),
    },
}

# every dataset: data/__init__.py (build_dataset, build_dataloader), train.py
LOADER_KEYS = dict(name=REQ, type=REQ, batch_size_per_gpu=TRN, num_worker_per_gpu=TRN, dataset_enlarge_ratio=OPT,
                   pin_memory=OPT, persistent_workers=OPT, prefetch_mode=OPT, num_prefetch_queue=OPT,
                   phase=ADD, scale=ADD)
DATASET_KEYS = {
    'PairedImageDataset': dict(dataroot_gt=REQ, dataroot_lq=REQ, io_backend=REQ, meta_info_file=OPT,
                               filename_tmpl=OPT, gt_size=TRN, use_hflip=TRN, use_rot=TRN, color=OPT, mean=OPT,
                               std=OPT),
    'PairedNpyDataset': dict(io_backend=OPT),  # srdistill: reads .npy files from disk, io_backend may be left out
    'SingleImageDataset': dict(dataroot_lq=REQ, io_backend=REQ, meta_info_file=OPT, color=OPT, mean=OPT, std=OPT),
}

# what BaseModel.get_optimizer and setup_schedulers build (models/base_model.py): anything else is a
# NotImplementedError once the experiment folder exists
OPTIMIZERS = {'Adam': torch.optim.Adam}
SCHEDULERS = {'MultiStepLR': MultiStepRestartLR, 'MultiStepRestartLR': MultiStepRestartLR,
              'CosineAnnealingRestartLR': CosineAnnealingRestartLR}


def _join(path, key):
    return f'{path}.{key}' if path and not key.startswith('[') else f'{path}{key}'


def suggest(word, choices):
    """The closest of ``choices`` to ``word`` (difflib), or None."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return close[0] if close else None


def lookup(registry, name):
    """``registry.get(name)`` (with BasicSR's ``_basicsr`` suffix fallback), or None, without BasicSR's print."""
    objs = dict(iter(registry))
    return objs.get(name, objs.get(f'{name}_basicsr')) if isinstance(name, str) else None


def registered(registry, name, key, opt_path):
    """``registry.get(name)``; an unknown name is a :class:`UserError` naming ``key`` and the closest registered name.
    """
    if name is None:
        raise UserError(f'{opt_path}: option `{key}` is missing.')
    obj = lookup(registry, name)
    if obj is None:
        raise UserError(f'{opt_path}: option `{key}`: no {registry._name} named {name!r} is registered'
                        f'{did_you_mean(name, registry.keys())}')
    return obj


def did_you_mean(word, choices, prefix=''):
    """``'; did you mean `<prefix><closest>`?'``, or ``'.'`` when nothing is close."""
    close = suggest(word, choices)
    return f'; did you mean `{_join(prefix, close)}`?' if close else '.'


def parameters(obj, supplied=()):
    """The parameters that ``obj`` (a class or a function) takes from the options (:class:`inspect.Parameter`).

    A class's ``**kwargs`` are followed to the ``__init__`` of its bases (a loss that passes them to its base class);
    a function's ``**kwargs`` take nothing (BasicSR's metrics ignore them). ``supplied`` are the arguments the caller
    passes itself (an optimiser's ``params``), which the options must not set.
    """
    if inspect.isclass(obj):
        inits = [c.__dict__['__init__'] for c in obj.__mro__ if '__init__' in c.__dict__]
        inits = [f for f in inits if f not in (object.__init__, torch.nn.Module.__init__)]
    else:
        inits = [obj]
    found = {}
    for init in inits:
        params = list(inspect.signature(init).parameters.values())
        for p in params:
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in ('self', *supplied):
                found.setdefault(p.name, p)
        if not inspect.isclass(obj) or not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return list(found.values())


def signature_keys(obj, supplied=()):
    """``{name: REQUIRED or OPTIONAL}`` of :func:`parameters`: required when the parameter has no default."""
    return {p.name: REQUIRED if p.default is p.empty else OPTIONAL for p in parameters(obj, supplied)}


def _merged(classes, table):
    """Keys of a class hierarchy (``classes`` most derived first): ``table[name]`` or the class's ``option_keys``,
    the most derived class winning. None when a class of BasicSR's has no table (its keys are unknown here)."""
    merged = {}
    for cls in reversed(classes):
        keys = table.get(cls.__name__, cls.__dict__.get('option_keys'))
        if keys is None:
            if cls.__module__.startswith('basicsr.'):
                return None
            continue
        for section, value in keys.items():
            if isinstance(value, dict):
                merged.setdefault(section, {}).update(value)
            else:
                merged[section] = value
    return merged


def model_keys(model_cls):
    """``{section: {key: marker}}`` for a model class (its bases' keys included), or None when it is not known."""
    from basicsr.models.base_model import BaseModel
    if not issubclass(model_cls, BaseModel):
        return None
    return _merged([c for c in model_cls.__mro__ if issubclass(c, BaseModel)], MODEL_KEYS)


def dataset_keys(dataset_cls):
    """``{key: marker}`` of a dataset class (loader keys included), or None when it is not known."""
    mro = dataset_cls.__mro__
    classes = mro[:mro.index(torch.utils.data.Dataset)] if torch.utils.data.Dataset in mro else mro[:-1]
    keys = _merged(classes, DATASET_KEYS)
    return None if keys is None else {**LOADER_KEYS, **keys}


class _Walk:
    """One pass over an options dict: per section, the first unknown key, then the first missing one, is refused."""

    def __init__(self, opt_path, forced):
        self.opt_path, self.forced = opt_path, dict(forced)
        self.elsewhere = {}  # key -> the section of the model's tables that reads it

    def mapping(self, value, path, required=False):
        """``value`` when it is a mapping; None when absent and not ``required``; a UserError otherwise."""
        if value is None and not required:
            return None
        if not isinstance(value, dict):
            what = 'it is missing' if value is None else f'got {value!r}'
            raise UserError(f'{self.opt_path}: option `{path}` must be a mapping of options (key: value lines); '
                            f'{what}.')
        return value

    def section(self, value, path, keys, owner, training=False, component=False):
        """Check the keys of the mapping ``value`` at ``path`` against ``keys`` ({key: marker}) of ``owner``."""
        for key in value:
            if key not in keys:
                self.unknown(path, key, keys, owner, component)
        for key, marker in keys.items():
            if (marker == REQUIRED or (marker == TRAINING and training)) and value.get(key) is None:
                raise UserError(f'{self.opt_path}: option `{_join(path, key)}` is missing ({owner} needs it).')

    def unknown(self, path, key, keys, owner, component=False):
        full = _join(path, str(key))
        entry = self.forced.get(full)
        where = f'{self.opt_path} (with --force_yml {entry})' if entry else self.opt_path
        hint = did_you_mean(key, keys, path)
        if hint == '.' and self.elsewhere.get(key, path) != path:
            hint = f'; it is an option of `{self.elsewhere[key] or "the top level"}`: ' \
                   f'`{_join(self.elsewhere[key], str(key))}`.'
        elif hint == '.':
            known = ', '.join(sorted(k for k, m in keys.items() if m != ADDED))
            hint = f': {owner} takes no such argument (it takes {known}).' if component else \
                f': {owner} reads no such key (it reads {known}).'
        raise UserError(f'{where}: unknown option `{full}`{hint}')

    def need_type(self, value, path):
        """A component's ``type`` is present; a key close to it (``typ``) is named as the likely mistake."""
        if isinstance(value, dict) and value.get('type') is None:
            close = [k for k in value if suggest(k, ['type'])]
            if close:
                self.unknown(path, close[0], {'type': REQUIRED}, path)
            raise UserError(f'{self.opt_path}: option `{path}.type` is missing.')

    def component(self, value, path, obj, owner, supplied=(), extra=None):
        """The keys of a component's options: ``type`` and the arguments of ``obj`` (its class or function)."""
        if isinstance(value, dict):  # anything else: check_train_options names it
            keys = {'type': REQUIRED, **signature_keys(obj, supplied), **(extra or {})}
            self.section(value, path, keys, owner, component=True)


def check_option_keys(opt, opt_path, forced=()):
    """Refuse an unknown or missing key in a training options dict (as read from the file, or as parsed by BasicSR).

    Args:
        opt (dict): The options.
        opt_path (str): The options file, named in messages.
        forced (Iterable[tuple[str, str]]): ``(key path, --force_yml entry)`` of keys set on the command line, so that
            a message names the entry beside the file.

    Raises:
        UserError: The first unknown key (with the closest known one), or the first missing required key.
    """
    walk = _Walk(opt_path, forced)
    walk.mapping(opt, 'the top level', required=True)
    model_cls = registered(MODEL_REGISTRY, opt.get('model_type'), 'model_type', opt_path)
    sections = model_keys(model_cls)
    if sections is not None:
        walk.elsewhere = {k: s for s, keys in sections.items() for k, m in keys.items() if m != ADDED}
        owner = f'BasicSR ({model_cls.__name__})'
        walk.section(opt, '', sections[''], owner)
        for name in ('path', 'train', 'val', 'logger', 'logger.wandb'):
            value = opt
            for part in name.split('.'):
                value = value.get(part) if isinstance(value, dict) else None
            value = walk.mapping(value, name, required=sections[''].get(name) == REQUIRED)
            if value is not None:
                walk.section(value, name, sections.get(name, {}), owner)
        _check_components(walk, opt, sections)
    _check_datasets(walk, walk.mapping(opt.get('datasets'), 'datasets', required=True))
    if isinstance(opt.get('dist_params'), dict):  # compat.init_dist(launcher, backend, port, **init_process_group)
        keys = {'backend': OPTIONAL, 'port': OPTIONAL, **signature_keys(torch.distributed.init_process_group)}
        walk.section(opt['dist_params'], 'dist_params', keys, 'the Slurm launcher (init_dist)')


def _type(value):
    return value.get('type') if isinstance(value, dict) else None


def _check_components(walk, opt, sections):
    """Networks and losses by their signature, the optimiser and scheduler as BasicSR builds them, the metrics."""
    train = opt.get('train') or {}
    components = [(key, opt.get(key), ARCH_REGISTRY, 'arch') for key in sections[''] if key.startswith('network_')]
    # BasicSR's convention: a `train` key ending in `_opt` holds a loss (pixel_opt, perceptual_opt, upcycle_opt, ...)
    components += [(f'train.{k}', train.get(k), LOSS_REGISTRY, 'loss') for k in sections['train'] if k.endswith('_opt')]
    if isinstance(train.get('distill_opts'), list):
        components += [(f'train.distill_opts[{i}]', d, LOSS_REGISTRY, 'loss')
                       for i, d in enumerate(train['distill_opts'])]
    for path, value, registry, kind in components:
        walk.need_type(value, path)
        cls = lookup(registry, _type(value))  # an unknown type: check_train_options names it as it builds it
        if cls is not None:
            walk.component(value, path, cls, f'{kind} {cls.__name__}')
    for key, table, supplied, extra in (('optim_g', OPTIMIZERS, ('params', ), {'lr': REQUIRED}),
                                        ('scheduler', SCHEDULERS, ('optimizer', ), None)):
        if isinstance(train.get(key), dict):
            walk.need_type(train[key], f'train.{key}')
            name = train[key].get('type')
            if name not in table:
                raise UserError(f'{walk.opt_path}: option `train.{key}.type`: BasicSR 1.4.2 builds '
                                f'{", ".join(table)}, not {name!r}{did_you_mean(name, table)}')
            walk.component(train[key], f'train.{key}', table[name], f'{name} (as BasicSR builds it)', supplied, extra)
    val = opt.get('val') if isinstance(opt.get('val'), dict) else {}
    for name, metric_opt in (walk.mapping(val.get('metrics'), 'val.metrics') or {}).items():
        path = f'val.metrics.{name}'
        walk.need_type(walk.mapping(metric_opt, path, required=True), path)
        fn = registered(METRIC_REGISTRY, _type(walk.mapping(metric_opt, path, required=True)), f'{path}.type',
                        walk.opt_path)
        walk.component(metric_opt, path, fn, f'metric {fn.__name__}', ('img', 'img2'), {'better': OPTIONAL})


def _check_datasets(walk, datasets):
    # train.py builds `train` and `val`, `val_1`, ...: any other phase is a ValueError once the folder exists
    phases = {'train': REQUIRED, 'val': OPTIONAL}
    phases.update({p: OPTIONAL for p in datasets if str(p).split('_')[0] == 'val'})
    walk.section(datasets, 'datasets', phases, 'BasicSR (train.py)')
    for phase, dataset_opt in datasets.items():
        path = f'datasets.{phase}'
        walk.need_type(walk.mapping(dataset_opt, path, required=True), path)
        cls = registered(DATASET_REGISTRY, _type(walk.mapping(dataset_opt, path, required=True)), f'{path}.type',
                         walk.opt_path)
        keys = dataset_keys(cls)
        if keys is None:
            continue
        walk.section(dataset_opt, path, keys, f'dataset {cls.__name__}', training=phase == 'train')
        backend = dataset_opt.get('io_backend')
        backends = FileClient._backends
        if isinstance(backend, dict):
            walk.need_type(backend, f'{path}.io_backend')
            name = backend.get('type')
            if name not in backends:
                raise UserError(f'{walk.opt_path}: option `{path}.io_backend.type` must be one of '
                                f'{", ".join(backends)}, got {name!r}{did_you_mean(name, backends)}')
            walk.component(backend, f'{path}.io_backend', backends[name], f'io_backend {name}',
                           extra={'db_paths': ADDED, 'client_keys': ADDED})  # the dataset sets them for lmdb
