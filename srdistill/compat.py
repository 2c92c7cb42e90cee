"""Every fix srdistill applies to BasicSR 1.4.2 (its newest release) on the current torch/torchvision stack.

BasicSR is the framework this package extends; a few of its parts break on torch >= 2.6 / torchvision >= 0.17 or
behave surprisingly. Each fix below is one small function with a comment saying what breaks and why the fix is
right. Nothing in site-packages is edited: fixes are applied when :mod:`srdistill` is imported, which happens
before any BasicSR module is used (``srdistill/__init__.py`` imports this module first).

`apply()` is idempotent.
"""
import ast
import importlib
import itertools
import os
import os.path as osp
import pickle
import re
import sys
import types
from collections import Counter, OrderedDict

import torch
import yaml

from srdistill.utils.errors import UserError

_APPLIED = False


def _fix_functional_tensor_import():
    """``import basicsr`` fails: ModuleNotFoundError 'torchvision.transforms.functional_tensor'.

    ``basicsr/data/degradations.py`` imports ``rgb_to_grayscale`` from that module, which torchvision 0.17 renamed to
    the private ``_functional_tensor``. Register the old name as an alias of the new module before BasicSR is
    imported. (Must run before the first ``import basicsr``.)
    """
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        from torchvision.transforms import _functional_tensor
        alias = types.ModuleType(name, 'Alias of torchvision.transforms._functional_tensor (srdistill.compat).')
        alias.__dict__.update({k: v for k, v in vars(_functional_tensor).items() if not k.startswith('__')})
        sys.modules[name] = alias


class OptionsLoader(yaml.SafeLoader):
    """YAML loader for options files: BasicSR's ordered mapping on a safe loader that names the file and line.

    BasicSR's ``ordered_yaml()`` returned ``yaml.Loader`` (or ``CLoader``), which builds any Python object a tag asks
    for: ``x: !!python/object/apply:os.system ["touch PWNED"]`` in an options file ran a command. Options files are
    shared as data, so they are read by ``SafeLoader``: YAML's standard tags only (``!!float 1e-4``, BasicSR's way of
    writing a learning rate, is one of them). A refused tag or a syntax error is a :class:`UserError` naming the file,
    the line and what is wrong, raised while reading, before anything is built, run or written.
    """

    def construct_undefined(self, node):
        tag = node.tag.replace('tag:yaml.org,2002:', '!!')
        raise UserError(f'{_where(node.start_mark)}: the tag {tag} is refused: options files are read as plain data '
                        '(YAML\'s standard tags such as !!float only, no Python objects).')

    def get_single_data(self):
        try:
            return super().get_single_data()
        except yaml.MarkedYAMLError as err:
            what, mark, since = err.problem, err.problem_mark, err.context_mark
            if err.context:
                started = f' started on line {since.line + 1}' if since and mark and since.line != mark.line else ''
                what = f'{what} ({err.context}{started})'
            raise UserError(f'{_where(mark or since)}: YAML syntax error: {what}.') from None
        except yaml.YAMLError as err:
            reason = (str(err).splitlines() or [type(err).__name__])[0]
            raise UserError(f'{getattr(self, "name", "options")}: not a YAML file: {reason}') from None


OptionsLoader.add_constructor(None, OptionsLoader.construct_undefined)  # SafeLoader registered its own function
OptionsLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              lambda loader, node: OrderedDict(loader.construct_pairs(node)))


class OptionsDumper(yaml.SafeDumper):
    """Writes options (``OrderedDict`` as a plain mapping) as BasicSR's ``ordered_yaml()`` dumper does."""


OptionsDumper.add_representer(OrderedDict, lambda dumper, data: dumper.represent_dict(data.items()))


def _where(mark):
    """``file, line N`` (or ``file``) of a YAML mark."""
    if mark is None:
        return 'options'
    return f'{mark.name}, line {mark.line + 1}'


def ordered_yaml():
    """Drop-in replacement of ``basicsr.utils.options.ordered_yaml`` (``parse_options`` calls it): a safe loader.

    Returns:
        tuple: (:class:`OptionsLoader`, :class:`OptionsDumper`).
    """
    return OptionsLoader, OptionsDumper


def load_options_file(path):
    """Read an options file with :class:`OptionsLoader` (ordered, safe). Raises UserError naming file and line."""
    with open(path) as f:
        return yaml.load(f, Loader=OptionsLoader)


def _postprocess_yml_value(value):
    """Drop-in replacement of BasicSR's parser of a ``--force_yml key=value`` value, without ``eval``.

    BasicSR ran ``eval(value)`` on a value starting with ``[``; it is now read with ``ast.literal_eval`` (literals
    only; :func:`check_force_yml` has named a bad one). Otherwise the same rules: ``~``/``none``,
    ``true``/``false``, ``!!float``, numbers, else the string.
    """
    if value == '~' or value.lower() == 'none':
        return None
    if value.lower() in ('true', 'false'):
        return value.lower() == 'true'
    if value.startswith('!!float'):
        return float(value.replace('!!float', ''))
    if value.isdigit():
        return int(value)
    if value.replace('.', '', 1).isdigit() and value.count('.') < 2:
        return float(value)
    if value.startswith('['):
        return ast.literal_eval(value)  # ValueError / SyntaxError for anything but literals
    return value


_FORCE_YML_KEYS = re.compile(r'[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)*')


def check_force_yml(argv):
    """Refuse ``--force_yml`` entries that are not ``key:subkey=value`` before BasicSR parses them.

    BasicSR splits each entry on ``=`` (a ``ValueError`` traceback without one) and ``exec``s
    ``opt["key"]["subkey"]=value`` built from the keys as typed, so a key holding ``"]`` was Python code. Keys are
    now names only (letters, digits, ``_``, ``.``, ``-``), joined by ``:``.

    Args:
        argv (list[str]): The command line (``sys.argv``).

    Raises:
        UserError: Naming the entry and the expected form.
    """
    if '--force_yml' not in argv:
        return
    for entry in argv[argv.index('--force_yml') + 1:]:
        if entry.startswith('-'):
            break
        keys, sep, value = entry.partition('=')
        if not sep or '=' in value or not _FORCE_YML_KEYS.fullmatch(keys.strip()):
            raise UserError(f'--force_yml {entry}: expected key:subkey=value (one "=", keys of letters, digits, '
                            '"_", "." and "-"), e.g. train:ema_decay=0.999.')
        try:
            _postprocess_yml_value(value.strip())
        except (ValueError, SyntaxError):
            raise UserError(f'--force_yml {entry}: a value in [...] must be a list of literals, e.g. [1, 2] or '
                            '["a", "b"].') from None


class RefusedCheckpoint(UserError, pickle.UnpicklingError):
    """A checkpoint holding pickled Python objects besides tensors: refused, since unpickling them can run code."""


def load_checkpoint(path, map_location='cpu'):
    """The one way srdistill and BasicSR's loaders read a ``.pth`` / ``.state`` file: ``weights_only=True``, explicitly.

    BasicSR's ``BaseModel.load_network`` (``path.pretrain_network_g``, the teacher, every resume) called ``torch.load``
    without ``weights_only``: torch >= 2.6 defaults it to True, but ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns an
    unset argument back to False, and a pickled payload then ran while loading. An explicit True is not overridden.

    Args:
        path (str): The file.
        map_location: As for ``torch.load``. Default: ``'cpu'``.

    Returns:
        The loaded object (dicts, lists, tensors, numbers and the allow-listed classes only).

    Raises:
        RefusedCheckpoint: The file holds other pickled objects (also a ``pickle.UnpicklingError``).
        UserError: A missing, empty, truncated or non-PyTorch file.
    """
    if not osp.isfile(path):
        raise UserError(f'{path}: no such checkpoint file.')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r'(?:Unsupported global: GLOBAL|unsupported GLOBAL) (\S+)', str(err))
        found = f', here {found.group(1)}' if found else ''
        raise RefusedCheckpoint(f'{path}: Weights only load failed: the file holds pickled Python objects besides '
                                f'tensors{found}; loading them could run code, so it is refused (save the state dict '
                                'alone, as BasicSR does).') from None
    except Exception as err:  # noqa: BLE001 (any format error: a 0-byte, truncated or foreign file)
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f'{path}: not a loadable PyTorch checkpoint ({reason}).') from None


def load_training_state(path, device):
    """Load a ``*.state`` file written by BasicSR's ``save_training_state`` onto ``device``, without pickle code.

    The state holds optimiser and scheduler state dicts; BasicSR's ``MultiStepRestartLR`` keeps its milestones in a
    ``collections.Counter``, the only non-tensor class in it, which is allow-listed explicitly.

    Args:
        path (str): Path of the ``.state`` file.
        device (torch.device | str): Where the optimiser tensors go (the model's device).

    Returns:
        dict: The training state (``epoch``, ``iter``, ``optimizers``, ``schedulers``).

    Raises:
        UserError: The file does not load (see :func:`load_checkpoint`).
    """
    with torch.serialization.safe_globals([Counter]):
        return load_checkpoint(path, map_location=device)


def load_network(self, net, load_path, strict=True, param_key='params'):
    """Drop-in replacement of ``BaseModel.load_network``: BasicSR's, reading the file with :func:`load_checkpoint`
    (``weights_only=True`` explicitly; a refused or broken file is one :class:`UserError` line naming it)."""
    from basicsr.utils import get_root_logger

    logger = get_root_logger()
    net = self.get_bare_model(net)
    load_net = load_checkpoint(load_path)
    if param_key is not None:
        if param_key not in load_net and 'params' in load_net:
            param_key = 'params'
            logger.info('Loading: params_ema does not exist, use params.')
        load_net = load_net[param_key]
    logger.info(f'Loading {net.__class__.__name__} model from {load_path}, with param key: [{param_key}].')
    load_net = OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v) for k, v in load_net.items())
    self._print_different_keys_loading(net, load_net, strict)
    net.load_state_dict(load_net, strict=strict)


class _WeightsOnlyTorch(types.ModuleType):
    """``torch`` as seen by BasicSR modules that load side weights (VGG for the perceptual loss, SpyNet, ...): the
    same module, except that ``load`` always passes ``weights_only=True``."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def load(f, map_location=None, **kwargs):
        kwargs['weights_only'] = True
        return torch.load(f, map_location=map_location, **kwargs)


# BasicSR modules that call ``torch.load`` themselves (besides base_model and train, replaced above)
WEIGHT_LOADING_MODULES = ('archs.vgg_arch', 'archs.spynet_arch', 'archs.basicvsr_arch', 'archs.tof_arch',
                          'archs.dfdnet_arch', 'archs.inception')


def _weights_only_side_loads():
    """Every other ``torch.load`` in BasicSR passes ``weights_only=True`` too (see :func:`load_checkpoint`)."""
    proxy = _WeightsOnlyTorch('torch', 'torch whose load is weights_only (srdistill.compat)')
    for name in WEIGHT_LOADING_MODULES:
        mod = importlib.import_module(f'basicsr.{name}')
        if mod.torch is torch:
            mod.torch = proxy


def atomic_save(obj, path):
    """``torch.save(obj, path)`` that leaves either the old file or the complete new one, never a half-written one.

    BasicSR wrote ``training_states/<iter>.state`` and ``models/net_g_<iter>.pth`` in place: a kill during the write
    left a 0-byte or truncated file, and every later ``--auto_resume`` failed on it (``EOFError``, ``PytorchStreamReader
    failed``). The data goes to the hidden temporary name of :mod:`srdistill.utils.partial_files` in the same folder
    (never a ``<iter>.state`` or ``net_g_<iter>.pth``), is flushed and fsynced, then renamed over ``path`` (atomic on
    POSIX). Temporary files left by a killed run are removed by the next save in that folder.

    Args:
        obj: What to save.
        path (str): The destination.
    """
    from srdistill.utils.partial_files import partial_path, remove_stale

    folder = osp.dirname(path) or '.'
    tmp = partial_path(path)
    try:
        with open(tmp, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    remove_stale(folder)


def _save_retrying(obj, path):
    """:func:`atomic_save` with BasicSR's three tries against occasional write errors (then a warning, as BasicSR)."""
    import time

    from basicsr.utils import get_root_logger

    for retry in (2, 1, 0):
        try:
            atomic_save(obj, path)
            return
        except Exception as err:  # noqa: BLE001 (BasicSR's policy: a failed save does not stop training)
            get_root_logger().warning(f'Save {path} error: {err}, remaining retry times: {retry}')
            if retry:
                time.sleep(1)
    get_root_logger().warning(f'Still cannot save {path}. Just ignore it.')


def save_network(self, net, net_label, current_iter, param_key='params'):
    """Drop-in replacement of ``BaseModel.save_network`` (rank 0 only, as BasicSR's): the file is written with
    :func:`atomic_save`, and non-finite weights are refused (``nan_guard.check_weights``): BasicSR's periodic and
    final (``net_g_latest.pth``) saves wrote NaN weights of a diverged run over nothing, keeping status 0."""
    from srdistill.models import nan_guard

    if current_iter == -1:
        current_iter = 'latest'
    save_filename = f'{net_label}_{current_iter}.pth'
    nets = net if isinstance(net, list) else [net]
    param_keys = param_key if isinstance(param_key, list) else [param_key]
    assert len(nets) == len(param_keys), 'The lengths of net and param_key should be the same.'
    save_dict = {}
    for net_, key in zip(nets, param_keys):
        state_dict = self.get_bare_model(net_).state_dict()
        save_dict[key] = OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v.cpu())
                                     for k, v in state_dict.items())
    nan_guard.check_weights(save_dict, save_filename, current_iter)
    _save_retrying(save_dict, osp.join(self.opt['path']['models'], save_filename))


def save_training_state(self, epoch, current_iter):
    """Drop-in replacement of ``BaseModel.save_training_state`` (rank 0 only, as BasicSR's), written with
    :func:`atomic_save`, and holding the random state the data augmentation draws from (``rng``, see
    :func:`resume_training`). Nothing is saved for BasicSR's final ``save(-1, -1)``, as before."""
    if current_iter == -1:
        return
    state = {'epoch': epoch, 'iter': current_iter, 'optimizers': [o.state_dict() for o in self.optimizers],
             'schedulers': [s.state_dict() for s in self.schedulers], 'rng': _rng_state()}
    _save_retrying(state, osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))


def _rng_state():
    """Python's and NumPy's global random states as plain lists and numbers (loadable with ``weights_only``)."""
    import random

    import numpy as np

    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {'python': random.getstate(), 'numpy': [name, keys.tolist(), pos, has_gauss, cached]}


def resume_training(self, resume_state):
    """Drop-in replacement of ``BaseModel.resume_training``: BasicSR's (optimisers, schedulers), then the random
    state saved with the training state.

    BasicSR's data augmentation (``paired_random_crop``, ``augment``) draws from Python's global ``random`` in the
    process that loads the data (the main process with ``num_worker_per_gpu: 0``); a resumed run re-seeded it from
    ``manual_seed`` and so cropped and flipped other patches than the run it continues. Restored here, right before
    the training loop, on rank 0 (the state is rank 0's; other ranks of a distributed run keep their fresh seeds).
    Data-loader workers re-seed themselves at every epoch (BasicSR's ``worker_init_fn``) and are not covered.
    """
    import random

    import numpy as np

    self._basicsr_resume_training(resume_state)
    rng = resume_state.get('rng')
    if rng and self.opt.get('rank', 0) == 0:
        random.setstate((rng['python'][0], tuple(rng['python'][1]), rng['python'][2]))
        name, keys, pos, has_gauss, cached = rng['numpy']
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _resumable_sampler(sampler_cls):
    """BasicSR's ``EnlargedSampler`` that can skip the samples of its first epoch a resumed run already trained on."""

    class ResumableSampler(sampler_cls):
        skip = None  # (epoch, number of samples): set by :func:`_continue_the_epoch`, used once

        def __iter__(self):
            indices = super().__iter__()
            if self.skip is not None and self.skip[0] == self.epoch:
                indices = itertools.islice(indices, self.skip[1], None)
                self.skip = None
            return indices

    ResumableSampler.__name__ = ResumableSampler.__qualname__ = sampler_cls.__name__
    return ResumableSampler


def _continue_the_epoch(create_train_val_dataloader):
    """Wrap ``basicsr.train.create_train_val_dataloader`` so a resumed run continues its epoch where it stopped.

    BasicSR resumes at the *start* of the saved epoch: the batches of that epoch already trained on are trained on
    again and the epoch's last ones are never seen, and a state saved at an epoch's end replays that whole epoch. With
    iterations counted from 0, epoch ``e`` began at iteration ``e * len(train_loader)``; the sampler (``epoch``-seeded,
    so the order is the one the interrupted run had) now skips the samples of the iterations done since.
    """

    def create_continuing(opt, logger):
        result = create_train_val_dataloader(opt, logger)
        train_loader, train_sampler = result[0], result[1]
        state_path = opt['path'].get('resume_state')
        if state_path and train_loader is not None and hasattr(train_sampler, 'skip') and len(train_loader):
            state = load_training_state(state_path, 'cpu')
            done = min(state['iter'] - state['epoch'] * len(train_loader), len(train_loader))
            if done > 0:
                train_sampler.skip = (state['epoch'], done * train_loader.batch_size)
                logger.info(f"Resume: epoch {state['epoch']} continues after its first {done} iterations.")
        return result

    create_continuing.__wrapped__ = create_train_val_dataloader
    return create_continuing


def _states_newest_first(state_dir):
    """Paths of the ``<iter>.state`` files in ``state_dir``, highest iteration first (temporary files excluded)."""
    if not osp.isdir(state_dir):
        return []
    iters = [int(f[:-len('.state')]) for f in os.listdir(state_dir)
             if f.endswith('.state') and f[:-len('.state')].isdigit()]
    return [osp.join(state_dir, f'{i}.state') for i in sorted(iters, reverse=True)]


def _latest_state(state_dir):
    """Path of the ``<iter>.state`` with the highest iteration in ``state_dir``, or None."""
    states = _states_newest_first(state_dir)
    return states[0] if states else None


def _resumed_networks(opt, resume_iter):
    """The checkpoints ``check_resume`` will load for a resume at ``resume_iter``: ``models/net_<x>_<iter>.pth`` of
    every ``network_<x>`` except those in ``path.ignore_resume_networks``."""
    ignored = opt['path'].get('ignore_resume_networks') or []
    return [osp.join(opt['path']['models'], f"net_{key[len('network_'):]}_{resume_iter}.pth")
            for key in opt if key.startswith('network_') and key not in ignored]


def _load_resumable(opt, state_path, device):
    """The state at ``state_path`` once it and the networks saved with it load. Raises UserError otherwise."""
    state = load_training_state(state_path, device)
    if not isinstance(state, dict) or not isinstance(state.get('iter'), int):
        raise UserError(f'{state_path}: not a BasicSR training state (no `iter`).')
    for net_path in _resumed_networks(opt, state['iter']):
        load_checkpoint(net_path)
    return state


def load_resume_state(opt):
    """Drop-in replacement of ``basicsr.train.load_resume_state`` fixing four bugs.

    1. Resuming on a machine without CUDA fails: BasicSR calls ``torch.cuda.current_device()`` and maps every tensor
       with ``storage.cuda(...)``. We map onto the device the model will use (``num_gpu`` 0 means CPU) and load with
       ``weights_only=True``.
    2. ``--auto_resume`` looked for ``experiments/<name>/training_states`` relative to the *current directory*, not
       the project root the experiment lives in; started from elsewhere it silently trained from scratch and renamed
       the existing experiment folder to ``*_archived_*``. We use ``opt['path']['training_states']``, which
       ``parse_options`` already made absolute under the root path.
    3. ``check_resume`` set ``param_key_t`` of an external teacher to ``params``: a teacher loaded from its
       ``params_ema`` switched weights at every resume.
    4. ``--auto_resume`` took the newest state even when it (or its ``net_g_<iter>.pth``) did not load, a file cut
       short by a kill (before :func:`atomic_save`, or a disk error), and failed at every later try. It now skips such
       a state with a one-line warning and takes the one before. An explicit ``path.resume_state`` that does not load
       is a :class:`UserError`.
    """
    from basicsr.utils import check_resume

    device = torch.device('cuda', torch.cuda.current_device()) if opt['num_gpu'] != 0 else torch.device('cpu')
    resume_state = None
    if opt['auto_resume']:
        for state_path in _states_newest_first(opt['path']['training_states']):
            try:
                resume_state = _load_resumable(opt, state_path, device)
            except UserError as err:
                print(f'srdistill: warning: auto-resume skips {osp.basename(state_path)}: {err}', file=sys.stderr,
                      flush=True)
                continue
            opt['path']['resume_state'] = state_path
            print(f'Auto-resume: found {state_path}', flush=True)
            break
        else:
            print(f"Auto-resume: no loadable training state in {opt['path']['training_states']}; starting from "
                  'scratch.', flush=True)
    elif opt['path'].get('resume_state'):
        resume_state = _load_resumable(opt, opt['path']['resume_state'], device)

    if resume_state is None:
        return None
    # check_resume also resets every ``param_key_*`` to ``params``, those of the networks it must leave alone (an
    # external teacher, ``ignore_resume_networks``) included: keep theirs.
    kept = {f"param_key_{n.replace('network_', '')}" for n in opt['path'].get('ignore_resume_networks') or []}
    kept = {k: opt['path'][k] for k in kept if k in opt['path']}
    check_resume(opt, resume_state['iter'])
    opt['path'].update(kept)
    return resume_state


def _with_option_defaults(parse_options):
    """Wrap BasicSR's ``parse_options`` so options read later without ``.get`` have a default.

    ``SRModel.nondist_validation`` reads ``opt['val']['suffix']`` in test mode and raises ``KeyError`` for test
    options that omit it (BasicSR's own example options all set it). ``suffix: ~`` is BasicSR's documented default.

    When resuming, ``check_resume`` points ``path.pretrain_network_<x>`` of *every* ``network_<x>`` at
    ``models/net_<x>_<iter>.pth``. Only ``net_g`` is saved there; the frozen external teacher ``network_t`` must keep
    being loaded from its own ``path.pretrain_network_t`` (the resumed run would otherwise fail on a missing
    ``net_t_<iter>.pth``), so it is listed in ``path.ignore_resume_networks``, BasicSR's option for exactly this.
    """

    def parse_options_with_defaults(root_path, is_train=True):
        check_force_yml(sys.argv)
        opt, args = parse_options(root_path, is_train=is_train)
        note = cpu_prefetch_fallback(opt)
        if note:
            print(f'srdistill: note: {note}', file=sys.stderr)
        if opt.get('val') is not None:
            opt['val'].setdefault('suffix', None)
        if opt.get('network_t') is not None:
            path_opt = opt.setdefault('path', {})
            ignored = path_opt.get('ignore_resume_networks') or []
            ignored = [ignored] if isinstance(ignored, str) else list(ignored)
            if 'network_t' not in ignored:
                ignored.append('network_t')
            path_opt['ignore_resume_networks'] = ignored
        return opt, args

    parse_options_with_defaults.__wrapped__ = parse_options
    return parse_options_with_defaults


# datasets.train option: (its GPU value, what it falls back to without CUDA)
CPU_FALLBACK = {'prefetch_mode': ('cuda', 'cpu'), 'pin_memory': (True, False)}


def cpu_prefetch_fallback(opt):
    """Let ``prefetch_mode: cuda`` options train on a machine without CUDA. Returns a note when it changed ``opt``.

    BasicSR's ``CUDAPrefetcher`` (``datasets.train.prefetch_mode: cuda``, with ``pin_memory: true``) copies the next
    batch to the GPU on a side stream while the current step runs, which shortens the wait for each batch
    (docs/speed.md, "Data loading"). Without CUDA (``num_gpu`` 0) it fails on
    ``torch.cuda.Stream()``, and ``pin_memory`` only draws a warning from the data loader. The fix: there, both fall
    back to what BasicSR does by default (the CPU prefetcher, no pinning), so one options file serves both machines.
    """
    train_opt = (opt.get('datasets') or {}).get('train')
    if not isinstance(train_opt, dict) or opt.get('num_gpu') != 0:
        return None
    if train_opt.get('prefetch_mode') == 'cuda' and train_opt.get('pin_memory') is not True:
        return None  # a mistake on any machine: check_train_options names it
    changed = [key for key, (gpu, _) in CPU_FALLBACK.items() if train_opt.get(key) == gpu]
    if not changed:
        return None
    for key in changed:
        train_opt[key] = CPU_FALLBACK[key][1]
    before, after = (' and '.join(f'{key}: {str(CPU_FALLBACK[key][i]).lower()}' for key in changed) for i in (0, 1))
    return f"no CUDA device, so datasets.train {before} {'fall' if len(changed) > 1 else 'falls'} back to {after}."


def init_dist(launcher, backend=None, **kwargs):
    """Drop-in replacement of ``basicsr.utils.dist_util.init_dist`` (as ``parse_options`` calls it) fixing three bugs.

    1. The backend was hard-coded to NCCL and ``torch.cuda.set_device(rank % num_gpus)`` was always called: on a machine
       without GPUs that is a ``ZeroDivisionError``. We use NCCL with CUDA and Gloo without (an explicit ``backend``
       in ``dist_params`` is kept, except NCCL where there is no CUDA), and pin a GPU only when there is one.
    2. It pinned GPU ``RANK % num_gpus``; with several nodes the right index is the *local* rank (torchrun sets
       ``LOCAL_RANK``).
    3. It set the ``spawn`` start method for all multiprocessing, so data-loader workers are re-created by spawning
       (re-importing everything) at every epoch, which dominated a small model's iteration time
       (docs/experiments.md, "Measurements behind the code"). We keep the platform default (fork on Linux), which
       is safe here: workers are started before any CUDA call in them.

    Args:
        launcher (str): ``'pytorch'`` (torchrun, ``torch.distributed.launch``) or ``'slurm'``.
        backend (str | None): Process-group backend. Default: NCCL with CUDA, else Gloo.
        **kwargs: ``port`` for Slurm (else ``MASTER_PORT`` or 29500); others go to ``init_process_group``.
    """
    import subprocess

    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if backend is None or (backend == 'nccl' and not cuda):
        backend = 'nccl' if cuda else 'gloo'
    port = kwargs.pop('port', None)
    if launcher == 'slurm':
        proc_id, ntasks = int(os.environ['SLURM_PROCID']), int(os.environ['SLURM_NTASKS'])
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
        os.environ['MASTER_PORT'] = str(port or os.environ.get('MASTER_PORT', 29500))
        os.environ.update(WORLD_SIZE=str(ntasks), RANK=str(proc_id),
                          LOCAL_RANK=os.environ.get('SLURM_LOCALID', str(proc_id % max(torch.cuda.device_count(), 1))))
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher type: {launcher}')
    if cuda:
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', os.environ.get('RANK', 0))) % torch.cuda.device_count())
    dist.init_process_group(backend=backend, **kwargs)


def model_to_device(self, net):
    """Drop-in replacement of ``BaseModel.model_to_device``: DistributedDataParallel was always given CUDA
    ``device_ids`` (``torch.cuda.current_device()``), which fails without an NVIDIA driver. On CPU DDP takes none."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    net = net.to(self.device)
    if self.opt['dist']:
        device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
        net = DistributedDataParallel(net, device_ids=device_ids,
                                      find_unused_parameters=self.opt.get('find_unused_parameters', False))
    elif self.opt['num_gpu'] > 1:
        net = DataParallel(net)
    return net


def normalize_argv(argv):
    """``torch.distributed.launch`` passes ``--local-rank=N`` (since torch 2.0); BasicSR's parser knows only
    ``--local_rank`` and exits with "unrecognized arguments". Returns ``argv`` with the spelling BasicSR expects."""
    return [('--local_rank' + a[len('--local-rank'):]) if a.startswith('--local-rank') else a for a in argv]


def _patch_pipelines():
    """Point ``basicsr.train`` / ``basicsr.test`` at the fixed functions (they look them up as module globals)."""
    from basicsr.utils.dist_util import master_only

    train_mod = importlib.import_module('basicsr.train')
    test_mod = importlib.import_module('basicsr.test')
    train_mod.load_resume_state = load_resume_state
    options_mod = importlib.import_module('basicsr.utils.options')
    options_mod.init_dist = init_dist
    options_mod.ordered_yaml = ordered_yaml
    options_mod._postprocess_yml_value = _postprocess_yml_value
    base_model = importlib.import_module('basicsr.models.base_model').BaseModel
    base_model.model_to_device = model_to_device
    base_model.load_network = load_network
    base_model.save_network = master_only(save_network)
    base_model.save_training_state = master_only(save_training_state)
    if not hasattr(base_model, '_basicsr_resume_training'):
        base_model._basicsr_resume_training = base_model.resume_training
        base_model.resume_training = resume_training
    train_mod.EnlargedSampler = _resumable_sampler(train_mod.EnlargedSampler)
    train_mod.create_train_val_dataloader = _continue_the_epoch(train_mod.create_train_val_dataloader)
    _weights_only_side_loads()
    for mod in (train_mod, test_mod):
        if not hasattr(mod.parse_options, '__wrapped__'):
            mod.parse_options = _with_option_defaults(mod.parse_options)


def apply():
    """Apply every fix (idempotent). Called by ``import srdistill``."""
    global _APPLIED
    if _APPLIED:
        return
    _fix_functional_tensor_import()
    import basicsr  # noqa: F401  (safe to import now)
    _patch_pipelines()
    _APPLIED = True
