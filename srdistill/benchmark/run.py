"""The speed benchmark's measurements: training throughput (with the fast settings), per-exit inference latency, the
exit's and the final network's latency in each runtime (:mod:`srdistill.benchmark.runtimes`), achieved GFLOP/s, and
optionally the data wait of real training iterations and the PSNR of trained weights under each
fast setting. :mod:`srdistill.benchmark.report` renders them."""
import os
import platform
import tempfile
from os import path as osp

import torch

from srdistill.archs.cost import exit_macs, forward_macs
from srdistill.archs.multi_exit import build_network
from srdistill.benchmark.data_wait import measure_data_wait
from srdistill.benchmark.measure import inference_variants, matmul_gflops, training_steps
from srdistill.benchmark.precision import precision_check
from srdistill.benchmark.runtimes import RUNTIMES, runtime_latencies
from srdistill.utils.amp import AMP_DTYPES
from srdistill.version import __version__

DATA_STARVED_FRACTION = 0.05  # the report says data loading starves the device above this share of the wall time


def _model_opts(arch, num_feat, num_block, exit_depth, scale, exit_head='full'):
    train = {'ema_decay': 0, 'optim_g': {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.99]},
             'scheduler': {'type': 'MultiStepLR', 'milestones': [10**9], 'gamma': 0.5}}
    ours = {'type': arch, 'num_feat': num_feat, 'num_block': num_block, 'upscale': scale}
    with torch.device('meta'):
        plain = build_network(dict(ours, exits=[])).exit_network_opt(num_block)  # the BasicSR network it extends
    # the reference rows use the default memory layout, as BasicSR's SRModel does; the fast settings come after
    base = {'scale': scale, 'path': {}, 'is_train': True}
    return {
        'self-distillation (exit {})'.format(exit_depth): dict(
            base, model_type='SelfDistillSRModel', network_g=dict(ours, exits=[exit_depth], exit_head=exit_head),
            train=dict(train, pixel_opt={'type': 'SelfDistillationLoss'}, channels_last=False)),
        'same trunk, no exit': dict(base, model_type='SelfDistillSRModel', network_g=dict(ours, exits=[]),
                                    train=dict(train, pixel_opt={'type': 'SelfDistillationLoss'},
                                               channels_last=False)),
        f'BasicSR SRModel + {plain["type"]}': dict(
            base, model_type='SRModel', network_g=plain, train=dict(train, pixel_opt={'type': 'L1Loss',
                                                                                      'loss_weight': 1.0})),
    }


def fast_training_settings(device):
    """``(label, train.amp, train.channels_last, fused Adam)`` of the self-distillation model's fast settings.

    channels_last, and channels_last with PyTorch's fused Adam (``train.optim_g.fused: true``: one kernel for all
    parameters instead of several per parameter, which matters where the host's dispatch bounds the step), everywhere;
    bf16 / fp16 autocast (``train.amp``) and bf16 + channels_last on CUDA only, since the model trains in fp32
    elsewhere.
    """
    settings = [('channels_last', None, True, False), ('channels_last + fused Adam', None, True, True)]
    if torch.device(device).type == 'cuda':
        settings += [(name, name, False, False) for name in AMP_DTYPES]
        settings.append(('bf16 + channels_last', 'bf16', True, False))
    return settings


def environment(device):
    cpu = platform.processor()
    if osp.exists('/proc/cpuinfo'):
        names = [line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name')]
        cpu = names[0] if names else cpu
    import basicsr
    import onnxruntime
    env = dict(platform=platform.platform(), python=platform.python_version(), cpu=cpu, cpu_count=os.cpu_count(),
               torch_threads=torch.get_num_threads(), torch=torch.__version__, basicsr=basicsr.__version__,
               onnxruntime=onnxruntime.__version__, srdistill=__version__, device=str(device))
    if torch.device(device).type == 'cuda':
        env['gpu'] = torch.cuda.get_device_name(device)
    return env


def _training_rows(arch, num_feat, num_block, exit_depth, scale, exit_head, batch, gt_size, device, warmup, repeats):
    """The training rows: the three models, then the self-distillation model's fast settings, timed interleaved."""
    lq = gt_size // scale
    model_opts = _model_opts(arch, num_feat, num_block, exit_depth, scale, exit_head)
    sd_name, sd_opt = next(iter(model_opts.items()))
    runs = [(name, opt, None, False, name == sd_name) for name, opt in model_opts.items()]
    for label, amp, channels_last, fused in fast_training_settings(device):
        optim = dict(sd_opt['train']['optim_g'], **({'fused': True} if fused else {}))
        opt = dict(sd_opt, train=dict(sd_opt['train'], amp=amp, channels_last=channels_last, optim_g=optim))
        runs.append((f'{sd_name}, {label}', opt, amp, channels_last, True))
    measured = training_steps([run[1] for run in runs], batch, gt_size, scale, device, warmup, repeats)
    rows = []
    for (name, opt, amp, channels_last, is_sd), step in zip(runs, measured):
        net_g = dict(opt['network_g'], type=arch, exits=opt['network_g'].get('exits', []))
        with torch.device('meta'):
            macs = forward_macs(build_network(net_g), (lq, lq), exit='all') * batch
        rows.append(dict(model=name, samples_per_s=batch / step['step_s'], forward_gmacs=macs / 1e9, amp=amp or 'fp32',
                         channels_last=channels_last, fused_adam=opt['train']['optim_g'].get('fused') is True, **step))
    sd_step = rows[0]['step_s']  # fp32 self-distillation
    for row, run in zip(rows, runs):
        row['speedup_vs_sd_fp32'] = sd_step / row['step_s'] if run[-1] else None
    return rows


def runtime_versions():
    """Versions of the optional runtimes that are installed (ONNX Runtime's is in :func:`environment`)."""
    versions = {}
    for module in ('openvino', 'ncnn'):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    return versions


def run_benchmark(num_feat=64, num_block=32, exit_depth=8, scale=4, batch=16, gt_size=96, lr_size=(180, 320),
                  device=None, warmup=2, repeats=5, compile_=True, data_opt=None, data_iters=50, num_worker=None,
                  data_amp=None, data_channels_last=None, ckpt=None, val_dir=None, param_key='params', root=None,
                  arch='MultiExitSRResNet', exit_head='full', skip_training=False, runtimes=RUNTIMES):
    """Measure everything; returns the report dict (see :func:`srdistill.benchmark.report.markdown`).

    Args:
        num_feat, num_block, exit_depth, scale: The network (``num_block`` blocks, exit after ``exit_depth``).
        batch, gt_size: Training batch of random ``gt_size`` HR patches already on the device.
        lr_size (tuple[int]): (H, W) of the LR image for inference.
        device (str | torch.device | None): Default: CUDA when present, else CPU.
        warmup, repeats: Untimed and timed runs per measurement (medians).
        compile_ (bool): Also time ``torch.compile``.
        data_opt (str | list[str] | None): Training options file(s), e.g. the same set as PNG and as ``.npy``: also
            measure, for each, the loader's capacity and the data wait of real training iterations
            (:func:`~srdistill.benchmark.data_wait.measure_data_wait`). Default: None (skipped).
        data_iters (int): Timed iterations of that run. Default: 50.
        num_worker, data_amp, data_channels_last: Overrides of that run's ``num_worker_per_gpu``, ``train.amp``,
            ``train.channels_last``. Default: None (the file's).
        ckpt (str | None): A training checkpoint: also check the PSNR of each fast setting on ``val_dir``
            (:func:`~srdistill.benchmark.precision.precision_check`). Default: None (skipped).
        val_dir (str | None): Benchmark folder (``HR/``, ``LR_bicubic/X<scale>/``) for ``ckpt``.
        param_key (str): Weights of ``ckpt``: ``params`` or ``params_ema``. Default: ``'params'``.
        root (str | None): Project root for the relative paths in ``data_opt``. Default: the current directory.
        arch (str): A registered multi-exit architecture. Default: ``'MultiExitSRResNet'``.
        exit_head (str): The exit's head, ``'full'`` or ``'light'`` (docs/architecture.md). Default: ``'full'``.
        skip_training (bool): Measure inference only (no training rows; not with ``data_opt``). Default: False.
        runtimes (tuple[str]): Runtimes of the per-runtime table (:data:`~srdistill.benchmark.runtimes.RUNTIMES`),
            timed on the CPU whatever ``device`` is; empty: no table. Default: all.
    """
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if ckpt is not None and val_dir is None:
        raise ValueError('the precision check (ckpt) needs val_dir, a folder with HR/ and LR_bicubic/X<scale>/.')
    if skip_training and data_opt is not None:
        raise ValueError('the data wait (data_opt) runs training iterations: not with skip_training.')
    settings = dict(arch=arch, exit_head=exit_head,
                    num_feat=num_feat, num_block=num_block, exit=exit_depth, scale=scale, batch=batch,
                    gt_size=gt_size, lr_size=list(lr_size), warmup=warmup, repeats=repeats,
                    skip_training=skip_training)
    report = {'environment': environment(device), 'settings': settings, 'training': [], 'inference': []}
    if data_opt is not None:
        # first, in a process nothing else has run in yet: measured after torch.compile and ONNX Runtime had run in
        # it, the host-bound training loop of an H100 ran up to 1.6x slower (docs/speed.md)
        report['data_wait'] = [measure_data_wait(path, device, data_iters, warmup, root, num_worker, data_amp,
                                                 data_channels_last)
                               for path in ([data_opt] if isinstance(data_opt, str) else data_opt)]

    if not skip_training:
        report['training'] = _training_rows(arch, num_feat, num_block, exit_depth, scale, exit_head, batch, gt_size,
                                            device, warmup, repeats)
    net = build_network(dict(type=arch, num_feat=num_feat, num_block=num_block, exits=[exit_depth], exit_head=exit_head,
                             upscale=scale)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        for depth in (exit_depth, num_block):
            onnx_path = osp.join(tmp, f'e{depth}.onnx')
            sub = net.exit_network(depth)
            dims = {0: torch.export.Dim('batch'), 2: torch.export.Dim('height'), 3: torch.export.Dim('width')}
            torch.onnx.export(sub, (torch.rand(1, 3, *lr_size), ), onnx_path, input_names=['lr'], output_names=['sr'],
                              dynamo=True, dynamic_shapes=(dims, ), external_data=False, verbose=False)
            times = inference_variants(net, depth, lr_size, device, warmup, repeats, compile_, onnx_path)
            macs = exit_macs(net, depth, (lr_size[0] * scale, lr_size[1] * scale))
            report['inference'].append(dict(output=f'e{depth}', gmacs=macs / 1e9, ms=times,
                                            achieved_gflops=2 * macs / (times['eager'] / 1000) / 1e9))
    if runtimes:  # on the CPU, where the runtimes SR users run (OpenVINO, ncnn) compete
        depths = (exit_depth, num_block)
        hr_size = (lr_size[0] * scale, lr_size[1] * scale)
        report['runtimes'] = dict(
            exit=f'e{exit_depth}', final=f'e{num_block}', runtimes=list(runtimes), versions=runtime_versions(),
            gmacs={f'e{d}': exit_macs(net, d, hr_size) / 1e9 for d in depths},
            latency=runtime_latencies({f'e{d}': net.exit_network(d) for d in depths}, lr_size, tuple(runtimes),
                                      warmup, repeats))
    report['matmul_gflops'], report['matmul_n'] = matmul_gflops(device)
    if torch.device(device).type == 'cuda' and torch.backends.cudnn.allow_tf32:
        # cuDNN runs the network's fp32 convolutions in TF32 (PyTorch's default): compare with a TF32 matmul too
        report['matmul_tf32_gflops'] = matmul_gflops(device, tf32=True)[0]
    if ckpt is not None:
        report['precision'] = precision_check(ckpt, val_dir, device, param_key)
    return report
