"""Every fix srdistill applies to BasicSR 1.4.2 (its newest release) on the current torch/torchvision stack.

BasicSR is the framework this package extends; a few of its parts break on torch >= 2.6 / torchvision >= 0.17 or
behave surprisingly. Each fix below is one small function with a comment saying what breaks and why the fix is
right. Nothing in site-packages is edited: fixes are applied when :mod:`srdistill` is imported, which happens
before any BasicSR module is used (``srdistill/__init__.py`` imports this module first).

`apply()` is idempotent.
"""
import importlib
import os
import os.path as osp
import sys
import types
from collections import Counter

import torch

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


def load_training_state(path, device):
    """Load a ``*.state`` file written by BasicSR's ``save_training_state`` onto ``device``, without pickle code.

    The state holds optimiser and scheduler state dicts; BasicSR's ``MultiStepRestartLR`` keeps its milestones in a
    ``collections.Counter``, the only non-tensor class in it, which is allow-listed explicitly.

    Args:
        path (str): Path of the ``.state`` file.
        device (torch.device | str): Where the optimiser tensors go (the model's device).

    Returns:
        dict: The training state (``epoch``, ``iter``, ``optimizers``, ``schedulers``).
    """
    with torch.serialization.safe_globals([Counter]):
        return torch.load(path, map_location=device, weights_only=True)


def _latest_state(state_dir):
    """Path of the ``<iter>.state`` with the highest iteration in ``state_dir``, or None."""
    if not osp.isdir(state_dir):
        return None
    iters = [int(f[:-len('.state')]) for f in sorted(os.listdir(state_dir))
             if f.endswith('.state') and f[:-len('.state')].isdigit()]
    return osp.join(state_dir, f'{max(iters)}.state') if iters else None


def load_resume_state(opt):
    """Drop-in replacement of ``basicsr.train.load_resume_state`` fixing three bugs.

    1. Resuming on a machine without CUDA fails: BasicSR calls ``torch.cuda.current_device()`` and maps every tensor
       with ``storage.cuda(...)``. We map onto the device the model will use (``num_gpu`` 0 means CPU) and load with
       ``weights_only=True``.
    2. ``--auto_resume`` looked for ``experiments/<name>/training_states`` relative to the *current directory*, not
       the project root the experiment lives in; started from elsewhere it silently trained from scratch and renamed
       the existing experiment folder to ``*_archived_*``. We use ``opt['path']['training_states']``, which
       ``parse_options`` already made absolute under the root path.
    3. ``check_resume`` set ``param_key_t`` of an external teacher to ``params``: a teacher loaded from its
       ``params_ema`` switched weights at every resume.
    """
    from basicsr.utils import check_resume

    resume_state_path = None
    if opt['auto_resume']:
        resume_state_path = _latest_state(opt['path']['training_states'])
        if resume_state_path is not None:
            opt['path']['resume_state'] = resume_state_path
            print(f'Auto-resume: found {resume_state_path}', flush=True)
        else:
            print(f"Auto-resume: no training state in {opt['path']['training_states']}; starting from scratch.",
                  flush=True)
    elif opt['path'].get('resume_state'):
        resume_state_path = opt['path']['resume_state']

    if resume_state_path is None:
        return None
    device = torch.device('cuda', torch.cuda.current_device()) if opt['num_gpu'] != 0 else torch.device('cpu')
    resume_state = load_training_state(resume_state_path, device)
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
    batch to the GPU on a side stream while the current step runs: on an H100 it cut the data wait of the 291
    options from 2.7 to 0.4 ms per iteration (docs/speed.md). Without CUDA (``num_gpu`` 0) it fails on
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
       (re-importing everything) at every epoch: 2.3-2.7 s per iteration of a tiny model instead of 0.06-0.09 s. We
       keep the platform default (fork on Linux), which is safe here: workers are started before any CUDA call in them.

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
    train_mod = importlib.import_module('basicsr.train')
    test_mod = importlib.import_module('basicsr.test')
    train_mod.load_resume_state = load_resume_state
    importlib.import_module('basicsr.utils.options').init_dist = init_dist
    importlib.import_module('basicsr.models.base_model').BaseModel.model_to_device = model_to_device
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
