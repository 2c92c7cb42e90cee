"""Timers for the benchmark: training steps of BasicSR models, inference variants, and a matmul reference.

All times are medians of repeated runs after warm-up, with CUDA synchronised around each run.
"""
import copy
import statistics
import time

import torch
from basicsr.models import build_model


def sync(device):
    """Wait for the device's queued work (CUDA); nothing to wait for elsewhere."""
    if torch.device(device).type == 'cuda':
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


def training_step_times(model_opts, batch, gt_size, scale, device, warmup=2, repeats=5):
    """Median seconds of one ``optimize_parameters`` step of each BasicSR model built from ``model_opts``.

    The models are timed interleaved: after every model's warm-up, each repeat times one step of every model in turn,
    so a drift of the device's speed during the run (a GPU's clocks ramping up from idle, another process) affects
    them alike and their ratios stay fair. The batch lives on the device already (random data), so this is the model's
    own cost, not the data pipeline's.

    Args:
        model_opts (list[dict]): BasicSR options (``model_type``, ``network_g``, ``train``...).
        batch (int): Samples per step.
        gt_size (int): HR patch size.
        scale (int): Upscaling factor.
        device (str | torch.device): Where to run.

    Returns:
        list[float]: Median seconds per step, one per options dict.
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

        for _ in range(warmup):
            one_step()
        steps.append(one_step)
    sync(device)
    times = [[] for _ in steps]
    for _ in range(repeats):
        for i, one_step in enumerate(steps):
            start = time.perf_counter()
            one_step()
            sync(device)
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def training_step_time(model_opt, batch, gt_size, scale, device, warmup=2, repeats=5):
    """Median seconds of one training step of one model (see :func:`training_step_times`)."""
    return training_step_times([model_opt], batch, gt_size, scale, device, warmup, repeats)[0]


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
            for name, dtype in (('fp16', torch.float16), ('bf16', torch.bfloat16)):
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


def matmul_gflops(device, n=2048, repeats=5):
    """Achieved GFLOP/s of an ``n`` x ``n`` fp32 matmul: the device's practical peak for dense work."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    seconds = median_time(lambda: a @ b, device, warmup=2, repeats=repeats)
    return 2 * n**3 / seconds / 1e9
