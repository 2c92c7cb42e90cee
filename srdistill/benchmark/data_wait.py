"""Does data loading starve the device? Real BasicSR training iterations, timing the wait for each batch apart.

The dataset, data loader, sampler, prefetcher and model are built from a training options file exactly as BasicSR's
``train_pipeline`` builds them (``build_dataset``, ``EnlargedSampler``, ``build_dataloader``, ``CPUPrefetcher`` or
``CUDAPrefetcher`` by ``datasets.train.prefetch_mode``, ``build_model``), for one process on one device. Each
iteration is then timed in two parts, with the device synchronised at both ends of each:

- the data wait: ``prefetcher.next()`` (restarting the loader at the end of an epoch, as BasicSR does) and
  ``model.feed_data`` (the copy to the device);
- the step: ``update_learning_rate`` and ``optimize_parameters``.

With synchronisation the device is idle during the whole wait, so the data wait measured here is an upper bound of
the time a real (asynchronous) run leaves the device without work. The loop then also runs free, as a real run does
(no synchronisation but at the end, so the host prepares the next batch while the device works), in turn with the
same loop training on one batch already on the device. The throughput lost between the two is what the data costs a
real run: the verdict.

Before those iterations the loader's own capacity is measured, without the model: the CPU time of one sample in the
main process (``dataset[i]``: read, decode, crop, augment, to tensor) and the samples per second the data loader
delivers with its workers. Their product with a training step's consumption says how many CPU cores feeding a
faster device would take, whatever device ran the benchmark.
"""
import contextlib
import os
import statistics
import sys
import time
from os import path as osp

import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.data.prefetch_dataloader import CPUPrefetcher, CUDAPrefetcher
from basicsr.models import build_model
from basicsr.utils import set_random_seed

from srdistill.benchmark.measure import sync
from srdistill.compat import cpu_prefetch_fallback, load_options_file
from srdistill.models.train_options import check_train_options
from srdistill.utils.amp import AMP_DTYPES, NAMES
from srdistill.utils.errors import UserError

AMP_NAMES = {dtype: name for name, dtype in AMP_DTYPES.items()}
FREE_ROUNDS = 5  # free-running rounds with and without the data, in turn; their medians are reported


def _resolve(path, root):
    path = osp.expanduser(path)
    return path if osp.isabs(path) else osp.join(root, path)


def _parse_options(opt_path, root):
    """BasicSR's own ``parse_options(root, is_train=True)`` on ``-opt opt_path``, read with srdistill's safe loader.

    ``parse_options`` reads its arguments from ``sys.argv``: they are set for the call and restored. Its progress line
    ("Disable distributed.") goes to stderr, so that stdout holds the report alone. A file that ``parse_options``
    trips on (a missing ``num_gpu``, ``path`` or ``datasets``) is explained by the up-front checks.
    """
    from basicsr.utils.options import parse_options  # its YAML loader is compat.OptionsLoader (import srdistill)

    argv = sys.argv
    sys.argv = [argv[0] if argv else 'benchmark', '-opt', opt_path]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return parse_options(root, is_train=True)[0]
    except (KeyError, AttributeError, TypeError) as err:
        raw = load_options_file(opt_path)
        if isinstance(raw, dict):
            check_train_options(raw, opt_path)
        raise UserError(f'{opt_path}: BasicSR cannot parse the options ({type(err).__name__}: {err}).') from None
    finally:
        sys.argv = argv


def load_train_options(opt_path, device, root=None, num_worker=None, amp=None, channels_last=None):
    """A training options file as BasicSR's ``parse_options`` gives it, for a single-process run on ``device``.

    BasicSR's ``parse_options`` fills in ``is_train``, ``dist=False``, ``rank`` 0, ``world_size`` 1, a random
    ``manual_seed`` when unset (as training does) and each dataset's ``phase`` and ``scale``. Then, for the benchmark:
    ``num_gpu`` follows ``device`` (1 on CUDA, 0 on CPU), only ``datasets.train`` is kept, no resume state, and
    relative data and weight paths are taken relative to ``root``.

    Args:
        opt_path (str): The options file (YAML).
        device (str | torch.device): Where the model runs.
        root (str | None): Project root for relative paths. Default: the current directory (as BasicSR).
        num_worker (int | None): Override ``datasets.train.num_worker_per_gpu``. Default: None (the file's).
        amp (str | None): Override ``train.amp``: one of :data:`srdistill.utils.amp.NAMES`. Default: None (the
            file's).
        channels_last (bool | None): Override ``train.channels_last``. Default: None (the file's).

    Returns:
        dict: The options.

    Raises:
        UserError: A missing file or ``datasets.train``, options BasicSR cannot parse, or a bad override.
    """
    if not osp.isfile(opt_path):
        raise UserError(f'options file {opt_path} does not exist.')
    root = root or os.getcwd()
    opt = _parse_options(opt_path, root)
    train_opt = opt['datasets'].get('train')
    if not isinstance(train_opt, dict):
        raise UserError(f'{opt_path}: option `datasets.train` is missing.')
    opt.update(num_gpu=1 if torch.device(device).type == 'cuda' else 0, datasets={'train': train_opt})
    for key in ('dataroot_gt', 'dataroot_lq', 'meta_info_file'):
        if train_opt.get(key) is not None:
            train_opt[key] = _resolve(train_opt[key], root)
    path_opt = opt['path']
    for key, value in path_opt.items():
        if value is not None and 'pretrain_network' in key:
            path_opt[key] = _resolve(value, root)
    path_opt['resume_state'] = None
    if num_worker is not None:
        if num_worker < 0:
            raise UserError(f'--num-worker must be 0 or more, got {num_worker}.')
        train_opt['num_worker_per_gpu'] = num_worker
    train = opt.setdefault('train', {})
    if amp is not None:
        if amp not in NAMES:
            raise UserError(f'amp must be {", ".join(NAMES)}, got {amp!r}.')
        train['amp'] = None if amp == 'fp32' else amp
    if channels_last is not None:
        train['channels_last'] = bool(channels_last)
    cpu_prefetch_fallback(opt)  # prefetch_mode: cuda / pin_memory on a CPU run, as training does
    return opt


def _prepare_demo_data_if_missing(opt, root):
    """The demo's data (``datasets/demo``, made from scikit-image's photos, no download) when the options use it."""
    train_opt = opt['datasets']['train']
    demo = osp.join(osp.abspath(root), 'datasets', 'demo') + os.sep
    if osp.abspath(train_opt.get('dataroot_gt') or '').startswith(demo) and not osp.isdir(train_opt['dataroot_gt']):
        from srdistill.demo import prepare_demo_data
        prepare_demo_data(root, show_progress=False)


def _prefetcher(loader, opt):
    """BasicSR's train-loop prefetcher for ``datasets.train.prefetch_mode`` (None/``cpu``: CPU; ``cuda``: CUDA)."""
    train_opt = opt['datasets']['train']
    mode = train_opt.get('prefetch_mode')
    if mode is None or mode == 'cpu':
        return CPUPrefetcher(loader)
    return CUDAPrefetcher(loader, opt)  # 'cuda' (check_train_options refused anything else; CPU runs fell back)


def measure_data_wait(opt_path, device=None, iters=50, warmup=2, root=None, num_worker=None, amp=None,
                      channels_last=None):
    """Mean data wait and step time of real training iterations of the options file ``opt_path``.

    Args:
        opt_path (str): A BasicSR training options file, e.g. ``options/sd_x4_291.yml``.
        device (str | torch.device | None): Default: CUDA when present, else CPU.
        iters (int): Timed iterations. Default: 50.
        warmup (int): Untimed iterations before them (worker start-up, cuDNN autotuning). Default: 2.
        root (str | None): Project root for the relative paths of the options. Default: the current directory.
        num_worker (int | None): Override ``num_worker_per_gpu``. Default: None.
        amp (str | None): Override ``train.amp`` (``bf16`` / ``fp16`` / ``fp32``). Default: None.
        channels_last (bool | None): Override ``train.channels_last``. Default: None.

    Returns:
        dict: The settings actually used (``batch``, ``num_worker_per_gpu``, ``prefetch_mode``, the effective ``amp``
        and ``channels_last`` of the built model...) and ``data_wait_s`` (mean per iteration), ``max_data_wait_s``,
        ``step_s`` (mean), ``data_fraction`` (data wait / wall time of the timed iterations), ``samples_per_s``,
        ``free_samples_per_s`` (the loop running free, as a real run), ``model_samples_per_s`` (the same free loop on
        one batch already on the device, no loading), ``data_cost`` (the fraction of the free loop's time lost to the
        data: 1 - its time without data / its time with data) and ``epoch_restarts`` (loader restarts at epoch ends
        within the run, warm-up included); and the loader's
        capacity without the model (:func:`loader_capacity`): ``sample_ms``, ``loader_samples_per_s``.

    Raises:
        UserError: Bad options or missing data (with what to do), or data yielding no batch.
    """
    if iters < 1 or warmup < 0:
        raise UserError(f'data-wait iterations must be at least 1 (got {iters}), warm-up 0 or more (got {warmup}).')
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    root = root or os.getcwd()
    opt = load_train_options(opt_path, device, root, num_worker, amp, channels_last)
    _prepare_demo_data_if_missing(opt, root)
    check_train_options(opt, opt_path)
    if device.type == 'cuda' and device.index is not None:
        torch.cuda.set_device(device)  # BasicSR's models use the current CUDA device
    set_random_seed(opt['manual_seed'])

    train_opt = opt['datasets']['train']
    train_set = build_dataset(train_opt)
    sampler = EnlargedSampler(train_set, opt['world_size'], opt['rank'], train_opt.get('dataset_enlarge_ratio', 1))
    loader = build_dataloader(train_set, train_opt, num_gpu=opt['num_gpu'], dist=False, sampler=sampler,
                              seed=opt['manual_seed'])
    capacity = loader_capacity(train_set, loader, iters, warmup)
    prefetcher = _prefetcher(loader, opt)
    model = build_model(opt)
    benchmark_mode = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # as BasicSR's train_pipeline sets it
    batches = _Batches(prefetcher, sampler, opt)
    try:
        waits, steps = _timed_iterations(model, batches, opt, device, iters, warmup)
        # the same loop running free, with the data and without it (one batch already on the device), in turn
        on_device = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batches.next().items()}
        free, alone, first = [], [], warmup + iters + 1
        for _ in range(FREE_ROUNDS):
            free.append(_free_running(model, batches, opt, device, iters, first))
            alone.append(_free_running(model, batches, opt, device, iters, first + iters, on_device))
            first += 2 * iters
    finally:
        torch.backends.cudnn.benchmark = benchmark_mode
    del prefetcher, loader  # stops the loader's workers

    wall = sum(waits) + sum(steps)
    return dict(
        options=opt_path, name=opt.get('name'), model_type=opt['model_type'], network=dict(opt['network_g']),
        dataset=train_opt.get('name'), dataset_type=train_opt['type'], samples=len(train_set),
        dataset_enlarge_ratio=train_opt.get('dataset_enlarge_ratio', 1), batch=train_opt['batch_size_per_gpu'],
        gt_size=train_opt.get('gt_size'), num_worker_per_gpu=train_opt['num_worker_per_gpu'],
        prefetch_mode=train_opt.get('prefetch_mode') or 'none', pin_memory=bool(train_opt.get('pin_memory', False)),
        io_backend=(train_opt.get('io_backend') or {}).get('type') or 'disk',
        amp=AMP_NAMES.get(getattr(model, 'amp_dtype', None), 'fp32'),
        channels_last=bool(getattr(model, 'channels_last', False)), device=str(device), warmup=warmup, iters=iters,
        **capacity,
        data_wait_s=statistics.fmean(waits), max_data_wait_s=max(waits), step_s=statistics.fmean(steps),
        data_fraction=sum(waits) / wall, samples_per_s=iters * train_opt['batch_size_per_gpu'] / wall,
        free_samples_per_s=iters * train_opt['batch_size_per_gpu'] / statistics.median(free),
        model_samples_per_s=iters * train_opt['batch_size_per_gpu'] / statistics.median(alone),
        data_cost=1 - statistics.median(alone) / statistics.median(free), epoch_restarts=batches.restarts)


def loader_capacity(dataset, loader, batches=50, warmup=2):
    """What the training data pipeline delivers on its own, with no model running.

    Args:
        dataset (Dataset): The training set (random crops and flips, so every call is a new sample).
        loader (DataLoader): Its data loader (BasicSR's ``build_dataloader``), with its workers.
        batches (int): Timed batches of the loader; as many samples are also timed one by one. Default: 50.
        warmup (int): Untimed batches first (worker start-up). Default: 2.

    Returns:
        dict: ``sample_ms`` (mean CPU milliseconds of one ``dataset[i]`` in this process: one core's cost of a
        sample, timed on samples whose files were read once before, as in every epoch after the first) and
        ``loader_samples_per_s`` (samples per second out of ``loader`` with its workers, restarting it
        at the end of an epoch).
    """
    n = len(dataset)
    indices = [i % n for i in range(batches * (loader.batch_size or 1))]
    for i in indices:  # the files' first read (disk, page cache) is not what an epoch after the first costs
        dataset[i]
    start = time.perf_counter()
    for i in indices:
        dataset[i]
    sample_ms = (time.perf_counter() - start) / len(indices) * 1000

    def batches_of(loader):
        while True:
            got = False
            for batch in loader:
                got = True
                yield batch
            if not got:
                raise UserError(f'datasets.train yields no batch ({n} samples, batch {loader.batch_size}).')

    stream = batches_of(loader)
    for _ in range(warmup):
        next(stream)
    start, samples = time.perf_counter(), 0
    for _ in range(batches):
        samples += len(next(stream)['lq'])
    seconds = time.perf_counter() - start
    stream.close()
    return dict(sample_ms=sample_ms, loader_samples_per_s=samples / seconds)


class _Batches:
    """``prefetcher.next()`` as BasicSR's training loop calls it: at the end of an epoch the sampler moves to the next
    epoch and the loader restarts. ``restarts`` counts those restarts."""

    def __init__(self, prefetcher, sampler, opt):
        self.prefetcher, self.sampler, self.opt = prefetcher, sampler, opt
        self.restarts = 0  # also the current epoch
        sampler.set_epoch(0)
        prefetcher.reset()

    def next(self):
        batch = self.prefetcher.next()
        if batch is None:
            self.restarts += 1
            self.sampler.set_epoch(self.restarts)
            self.prefetcher.reset()
            batch = self.prefetcher.next()
            if batch is None:
                raise UserError(f'datasets.train yields no batch ({len(self.sampler)} samples an epoch, batch '
                                f'{self.opt["datasets"]["train"]["batch_size_per_gpu"]}, the last partial one '
                                'dropped).')
        return batch


def _step(model, opt, current_iter):
    model.update_learning_rate(current_iter, warmup_iter=opt['train'].get('warmup_iter', -1))
    model.optimize_parameters(current_iter)


def _timed_iterations(model, batches, opt, device, iters, warmup):
    """BasicSR's training loop, synchronised around each part: (data waits, steps) of the iterations after
    ``warmup``."""
    waits, steps = [], []
    for current_iter in range(1, warmup + iters + 1):
        sync(device)
        start = time.perf_counter()
        model.feed_data(batches.next())
        sync(device)
        fed = time.perf_counter()
        _step(model, opt, current_iter)
        sync(device)
        if current_iter > warmup:
            waits.append(fed - start)
            steps.append(time.perf_counter() - fed)
    return waits, steps


def _free_running(model, batches, opt, device, iters, first_iter, batch=None):
    """Seconds of ``iters`` iterations of BasicSR's loop as a real run goes: no synchronisation but at the end, so the
    host prepares the next batch while the device still works. With ``batch`` (already on the device) every iteration
    trains on it instead: the same loop with no data loading at all."""
    sync(device)
    start = time.perf_counter()
    for current_iter in range(first_iter, first_iter + iters):
        model.feed_data(batches.next() if batch is None else batch)
        _step(model, opt, current_iter)
    sync(device)
    return time.perf_counter() - start
