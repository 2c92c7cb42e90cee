"""The speed benchmark: training throughput, per-exit inference latency, achieved GFLOP/s; a markdown/JSON report."""
import json
import os
import platform
import tempfile
from os import path as osp

import torch

from srdistill.archs.multi_exit_srresnet_arch import MultiExitSRResNet
from srdistill.benchmark.measure import inference_variants, matmul_gflops, training_step_time
from srdistill.evaluation.cost import exit_macs, forward_macs
from srdistill.export.subnet import build_exit
from srdistill.version import __version__


def _model_opts(num_feat, num_block, exit_depth, scale):
    train = {'ema_decay': 0, 'optim_g': {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.99]},
             'scheduler': {'type': 'MultiStepLR', 'milestones': [10**9], 'gamma': 0.5}}
    ours = {'type': 'MultiExitSRResNet', 'num_feat': num_feat, 'num_block': num_block, 'upscale': scale}
    base = {'scale': scale, 'path': {}, 'is_train': True}
    return {
        'self-distillation (exit {})'.format(exit_depth): dict(
            base, model_type='SelfDistillSRModel', network_g=dict(ours, exits=[exit_depth]),
            train=dict(train, pixel_opt={'type': 'SelfDistillationLoss'})),
        'same trunk, no exit': dict(base, model_type='SelfDistillSRModel', network_g=dict(ours, exits=[]),
                                    train=dict(train, pixel_opt={'type': 'SelfDistillationLoss'})),
        'BasicSR SRModel + MSRResNet': dict(
            base, model_type='SRModel', network_g={'type': 'MSRResNet', 'num_feat': num_feat, 'num_block': num_block,
                                                   'upscale': scale},
            train=dict(train, pixel_opt={'type': 'L1Loss', 'loss_weight': 1.0})),
    }


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


def run_benchmark(num_feat=64, num_block=32, exit_depth=8, scale=4, batch=16, gt_size=96, lr_size=(180, 320),
                  device=None, warmup=2, repeats=5, compile_=True):
    """Measure everything; returns the report dict (see :func:`markdown`)."""
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    settings = dict(num_feat=num_feat, num_block=num_block, exit=exit_depth, scale=scale, batch=batch,
                    gt_size=gt_size, lr_size=list(lr_size), warmup=warmup, repeats=repeats)
    report = {'environment': environment(device), 'settings': settings, 'training': [], 'inference': []}

    lq = gt_size // scale
    for name, opt in _model_opts(num_feat, num_block, exit_depth, scale).items():
        seconds = training_step_time(opt, batch, gt_size, scale, device, warmup, repeats)
        net = MultiExitSRResNet(num_feat=num_feat, num_block=num_block, upscale=scale,
                                exits=opt['network_g'].get('exits', []))
        macs = forward_macs(net, (lq, lq), exit='all') * batch
        report['training'].append(dict(model=name, step_s=seconds, samples_per_s=batch / seconds,
                                       forward_gmacs=macs / 1e9))

    net = MultiExitSRResNet(num_feat=num_feat, num_block=num_block, exits=[exit_depth], upscale=scale).eval()
    net_opt = dict(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_block=num_block, upscale=scale)
    with tempfile.TemporaryDirectory() as tmp:
        for depth in (exit_depth, num_block):
            onnx_path = osp.join(tmp, f'e{depth}.onnx')
            sub = build_exit(net_opt, net.state_dict(), depth)
            dims = {0: torch.export.Dim('batch'), 2: torch.export.Dim('height'), 3: torch.export.Dim('width')}
            torch.onnx.export(sub, (torch.rand(1, 3, *lr_size), ), onnx_path, input_names=['lr'], output_names=['sr'],
                              dynamo=True, dynamic_shapes=(dims, ), external_data=False, verbose=False)
            times = inference_variants(net, depth, lr_size, device, warmup, repeats, compile_, onnx_path)
            macs = exit_macs(net, depth, (lr_size[0] * scale, lr_size[1] * scale))
            report['inference'].append(dict(output=f'e{depth}', gmacs=macs / 1e9, ms=times,
                                            achieved_gflops=2 * macs / (times['eager'] / 1000) / 1e9))
    report['matmul_gflops'] = matmul_gflops(device)
    return report


def markdown(report):
    """The report as markdown, with the ratios the speed claims rest on."""
    env, s = report['environment'], report['settings']
    gpu = f", GPU {env['gpu']}" if 'gpu' in env else ''
    lines = ['# Speed benchmark', '', f"Machine: {env['cpu']} ({env['cpu_count']} cores, {env['torch_threads']} torch "
             f"threads){gpu}; device `{env['device']}`. Versions: torch {env['torch']}, BasicSR {env['basicsr']}, "
             f"ONNX Runtime {env['onnxruntime']}, srdistill {env['srdistill']}; {env['platform']}.", '',
             f"Settings: SRResNet-{s['num_block']} ({s['num_feat']} channels), exit after block {s['exit']}, "
             f"x{s['scale']}; training batch {s['batch']} of {s['gt_size']}x{s['gt_size']} HR patches (random data "
             f"already on the device: the model's own cost); inference on one {s['lr_size'][1]}x{s['lr_size'][0]} LR "
             f"image. Medians of {s['repeats']} runs after {s['warmup']} warm-up runs, all measured in one run.", '',
             '## Training throughput', '', '| model | step (s) | samples/s | forward GMACs per step |',
             '|---|---|---|---|']
    train = report['training']
    for row in train:
        lines.append(f"| {row['model']} | {row['step_s']:.3f} | {row['samples_per_s']:.1f} | "
                     f"{row['forward_gmacs']:.1f} |")
    sd, plain, basic = train
    lines += ['', f"- our plain path vs BasicSR's own: {plain['step_s'] / basic['step_s']:.3f}x the step time "
              '(1.0 = same speed; below 1 is faster);',
              f"- the exit's extra cost: {sd['step_s'] / plain['step_s']:.3f}x the step time for "
              f"{sd['forward_gmacs'] / plain['forward_gmacs']:.3f}x the multiply-adds.", '',
              '## Inference latency per exit (ms)', '']
    variants = [k for k in report['inference'][0]['ms'] if k != 'compile_s']
    lines += ['| output | GMACs | ' + ' | '.join(variants) + ' | achieved GFLOP/s (eager) |',
              '|---|---|' + '---|' * len(variants) + '---|']
    for row in report['inference']:
        lines.append(f"| {row['output']} | {row['gmacs']:.2f} | " + ' | '.join(f"{row['ms'][v]:.1f}" for v in variants)
                     + f" | {row['achieved_gflops']:.1f} |")
    exit_row, full = report['inference']
    speedup = full['ms']['eager'] / exit_row['ms']['eager']
    lines += ['', f"- exit {exit_row['output']} vs the full network (eager): {speedup:.2f}x faster for "
              f"{full['gmacs'] / exit_row['gmacs']:.2f}x fewer multiply-adds;"]
    if 'compile_s' in full['ms']:
        lines.append(f"- torch.compile took {full['ms']['compile_s']:.1f} s to compile the full network (excluded).")
    lines += ['', '## How close to the hardware', '',
              f"A 2048x2048 fp32 matmul reaches {report['matmul_gflops']:.1f} GFLOP/s on this device; the full "
              f"network (eager) reaches {full['achieved_gflops']:.1f} GFLOP/s, "
              f"{100 * full['achieved_gflops'] / report['matmul_gflops']:.0f}% of it.", '']
    return '\n'.join(lines)


def write_report(report, path_md):
    """Write ``path_md`` and the JSON next to it (``.json``). Returns both paths."""
    os.makedirs(osp.dirname(osp.abspath(path_md)), exist_ok=True)
    with open(path_md, 'w') as f:
        f.write(markdown(report))
    path_json = osp.splitext(path_md)[0] + '.json'
    with open(path_json, 'w') as f:
        json.dump(report, f, indent=1)
    return path_md, path_json
