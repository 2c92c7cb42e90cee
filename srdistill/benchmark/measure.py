"""Timers for the benchmark: training steps of BasicSR models, inference variants, and a matmul reference.

All times are medians of repeated runs after warm-up, with CUDA synchronised around each run. Where several things are
compared, they are timed interleaved (:func:`interleaved_ms`), so a drift of the machine's speed affects them alike.
"""
import copy
import statistics
import time

import torch
from basicsr.models import build_model

from srdistill.utils.amp import AMP_DTYPES


def sync(device):
    """Wait for the device's queued work (CUDA); nothing to wait for elsewhere (or when ``device`` is None)."""
    if device is not None and torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def median_time(fn, device, warmup=2, repeats=5):
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_ms(fns, warmup=2, repeats=5, device=None):
    """Milliseconds of each call of each of ``fns``, timed interleaved: ``repeats`` rounds after ``warmup`` calls each.

    Each round calls every function once, in list order on even rounds and in reverse order on odd ones: a call timed
    right after another one runs slower or faster than the one before it (caches, allocator; a fixed order made the
    first of several training steps 1-2% slower than the next), and a drift of the machine's speed during the run
    (another process, a GPU's clocks ramping up from idle) affects every function alike, so their ratios stay fair.

    Args:
        fns (list[callable]): Functions of no arguments.
        warmup (int): Untimed calls of each function, before the first round. Default: 2.
        repeats (int): Timed rounds. Default: 5.
        device (str | torch.device | None): Synchronised after each call (CUDA). Default: None (nothing to wait for).

    Returns:
        list[list[float]]: Per function, its ``repeats`` times in ms, in round order.
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    sync(device)
    times = [[] for _ in fns]
    for repeat in range(repeats):
        for i in (range(len(fns)) if repeat % 2 == 0 else reversed(range(len(fns)))):
            start = time.perf_counter()
            fns[i]()
            sync(device)
            times[i].append((time.perf_counter() - start) * 1000)
    return times


def spread(times_ms):
    """Median and spread of ``times_ms``: ``median_ms``, ``min_ms``, ``max_ms``, ``q1_ms``, ``q3_ms`` (the quartiles,
    linear interpolation between the sorted times, as NumPy's default) and ``n``."""
    if not times_ms:
        raise ValueError('no times to summarise')
    q1, _, q3 = statistics.quantiles(times_ms, n=4, method='inclusive') if len(times_ms) > 1 else times_ms * 3
    return dict(median_ms=statistics.median(times_ms), min_ms=min(times_ms), max_ms=max(times_ms), q1_ms=q1, q3_ms=q3,
                n=len(times_ms))


def training_steps(model_opts, batch, gt_size, scale, device, warmup=2, repeats=5):
    """Median seconds of one ``optimize_parameters`` step of each BasicSR model built from ``model_opts``, and the
    operations one step dispatches.

    The models are timed interleaved (:func:`interleaved_ms`: after every model's warm-up, each repeat times one step
    of every model in turn, every other repeat in reverse order), so their ratios stay fair. The batch lives on the
    device already (random data), so this is the model's own cost, not the data pipeline's. After the timing, one
    more step of each model runs under the profiler (:func:`step_ops`).

    Args:
        model_opts (list[dict]): BasicSR options (``model_type``, ``network_g``, ``train``...).
        batch (int): Samples per step.
        gt_size (int): HR patch size.
        scale (int): Upscaling factor.
        device (str | torch.device): Where to run.

    Returns:
        list[dict]: One per options dict: ``step_s`` (median seconds per step) and :func:`step_ops`' counts.
    """
    data = {'lq': torch.rand(batch, 3, gt_size // scale, gt_size // scale, device=device),
            'gt': torch.rand(batch, 3, gt_size, gt_size, device=device)}
    steps = []
    for model_opt in model_opts:
        opt = copy.deepcopy(model_opt)
        opt.update(is_train=True, dist=False, rank=0, world_size=1,
                   num_gpu=1 if torch.device(device).type == 'cuda' else 0)
        model = build_model(opt)
        counter = {'n': 0}

        def one_step(model=model, counter=counter):
            counter['n'] += 1
            model.feed_data(data)
            model.optimize_parameters(counter['n'])

        steps.append(one_step)
    times = [[t / 1000 for t in ms] for ms in interleaved_ms(steps, warmup, repeats, device)]
    return [dict(step_s=statistics.median(t), **step_ops(one_step, device)) for t, one_step in zip(times, steps)]


def step_ops(fn, device):
    """What one call of ``fn`` dispatches, from the PyTorch profiler: the host-side work of a step.

    Returns:
        dict: ``aten_ops`` (top-level ATen operator calls: those not called from inside another ATen operator) and,
        on CUDA, ``cuda_kernels`` (kernels launched). Two steps that run the same network and loss but differ in
        these counts differ in the host overhead that bounds a small model on a fast GPU.
    """
    cuda = torch.device(device).type == 'cuda'
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    sync(device)
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        sync(device)
    events = prof.events()
    counts = {'aten_ops': sum(1 for e in events if e.name.startswith('aten::') and (
        e.cpu_parent is None or not e.cpu_parent.name.startswith('aten::')))}
    if cuda:
        counts['cuda_kernels'] = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    return counts


def inference_variants(net, depth, lr_size, device, warmup=2, repeats=5, compile_=True, onnx_path=None):
    """Median ms of one LR image through the exit at ``depth``, per execution variant.

    Variants: ``eager``; ``channels_last`` (memory format); ``compile`` (``torch.compile``, compile time excluded and
    reported as ``compile_s``); ``onnxruntime`` (when ``onnx_path`` is given); on CUDA also ``fp16`` and ``bf16``
    autocast.

    Returns:
        dict[str, float]: variant -> ms (and ``compile_s``).
    """
    x = torch.rand(1, 3, *lr_size, device=device)
    net = net.to(device).eval()
    results = {}
    with torch.no_grad():
        results['eager'] = median_time(lambda: net(x, exit=depth), device, warmup, repeats) * 1000
        cl_net = copy.deepcopy(net).to(memory_format=torch.channels_last)
        x_cl = x.to(memory_format=torch.channels_last)
        results['channels_last'] = median_time(lambda: cl_net(x_cl, exit=depth), device, warmup, repeats) * 1000
        if torch.device(device).type == 'cuda':
            for name, dtype in AMP_DTYPES.items():
                def run(dtype=dtype):
                    with torch.autocast('cuda', dtype=dtype):
                        net(x, exit=depth)
                results[name] = median_time(run, device, warmup, repeats) * 1000
        if compile_:
            compiled = torch.compile(lambda t: net(t, exit=depth))
            start = time.perf_counter()
            compiled(x)
            sync(device)
            results['compile_s'] = time.perf_counter() - start
            results['compile'] = median_time(lambda: compiled(x), device, warmup, repeats) * 1000
    if onnx_path is not None:
        import onnxruntime as ort
        providers = ['CUDAExecutionProvider'] if torch.device(device).type == 'cuda' else []
        session = ort.InferenceSession(onnx_path, providers=providers + ['CPUExecutionProvider'])
        feed = {'lr': x.cpu().numpy()}
        results['onnxruntime'] = median_time(lambda: session.run(None, feed), 'cpu', warmup, repeats) * 1000
    return results


def matmul_gflops(device, n=None, repeats=5, tf32=False):
    """Achieved GFLOP/s of an ``n`` x ``n`` fp32 matmul: the device's practical peak for dense work.

    ``n`` defaults to 2048 on a CPU and 8192 on CUDA, where a 2048 product is too short to fill the GPU. With
    ``tf32=True`` the matmul may use TF32 tensor cores (CUDA), the precision cuDNN uses for fp32 convolutions by
    default, so a network's convolutions compare with the matmul of the same precision. Returns ``(gflops, n)``.
    """
    device = torch.device(device)
    n = n or (8192 if device.type == 'cuda' else 2048)
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        seconds = median_time(lambda: a @ b, device, warmup=2, repeats=repeats)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * n**3 / seconds / 1e9, n
