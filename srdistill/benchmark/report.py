"""The speed benchmark's report: the measurements of :func:`srdistill.benchmark.run.run_benchmark` as markdown
(tables with speed-ups, the hardware's achieved share) and JSON."""
import json
import os
from os import path as osp

from srdistill.benchmark.run import DATA_STARVED_FRACTION

# the goals for the per-runtime table: the fastest runtime this much faster than PyTorch eager for the exit,
# and the exit's speed-up over the final network in that runtime at least this share of their multiply-add ratio
FASTEST_VS_EAGER_GOAL = 2.0
MAC_RATIO_SHARE_GOAL = 0.9


def _fmt_speedup(value):
    return '' if value is None else f'{value:.2f}x'


def _setting(row):
    """A training row's fast setting in words, e.g. ``bf16 + channels_last``."""
    amp = [] if row.get('amp', 'fp32') == 'fp32' else [row['amp']]
    return ' + '.join(amp + (['channels_last'] if row.get('channels_last') else [])
                      + (['fused Adam'] if row.get('fused_adam') else [])) or 'fp32'


def _training_lines(report):
    train = report['training']
    kernels = 'cuda_kernels' in train[0]
    lines = ['## Training throughput', '',
             '| model | amp | channels_last | step (s) | samples/s | forward GMACs per step | ATen ops per step | '
             + ('CUDA kernels per step | ' if kernels else '') + 'speed-up vs fp32 self-distillation |',
             '|---|---|---|---|---|---|---|---|' + ('---|' if kernels else '')]
    for row in train:
        lines.append(f"| {row['model']} | {row.get('amp', 'fp32')} | {'yes' if row.get('channels_last') else 'no'} | "
                     f"{row['step_s']:.4g} | {row['samples_per_s']:.1f} | {row['forward_gmacs']:.3g} | "
                     f"{row.get('aten_ops', '')} | " + (f"{row.get('cuda_kernels', '')} | " if kernels else '')
                     + f"{_fmt_speedup(row.get('speedup_vs_sd_fp32'))} |")
    sd, plain, basic = train[:3]
    ops = ''
    if 'aten_ops' in plain:
        ops = (f", dispatching {plain['aten_ops']} against {basic['aten_ops']} ATen operators per step"
               + (f" and launching {plain['cuda_kernels']} against {basic['cuda_kernels']} CUDA kernels"
                  if kernels else ''))
    lines += ['', f"- our plain path vs BasicSR's own: {plain['step_s'] / basic['step_s']:.3f}x the step time "
              f'(1.0 = same speed; below 1 is faster){ops};',
              f"- the exit's extra cost: {sd['step_s'] / plain['step_s']:.3f}x the step time for "
              f"{sd['forward_gmacs'] / plain['forward_gmacs']:.3f}x the multiply-adds;"]
    fast = train[3:]
    if fast:
        best = max(fast, key=lambda row: row['speedup_vs_sd_fp32'])
        lines.append('- fast settings of the self-distillation step (options `train.amp`, `train.channels_last`, '
                     '`train.optim_g.fused`): '
                     + ', '.join(f"{_setting(row)} {row['speedup_vs_sd_fp32']:.2f}x" for row in fast)
                     + f" the fp32 speed (above 1 is faster); the fastest is {_setting(best)}.")
    if not any(row.get('amp', 'fp32') != 'fp32' for row in train):
        lines.append('- `train.amp` (bf16/fp16 autocast) applies on CUDA only, so no AMP row is measured here.')
    return lines + ['']


def _data_wait_lines(runs, fastest):
    """The data-loading section: a row per options file measured; ``fastest``: the fastest self-distillation row."""
    d = runs[0]
    net = d['network']
    lines = ['## Data loading in real training iterations', '',
             f"{d['model_type']} with {net.get('type')} ({net.get('num_block')} blocks, {net.get('num_feat')} "
             f"channels, exits {net.get('exits', [])}), train.amp {d['amp']}, train.channels_last "
             f"{str(d['channels_last']).lower()} (as the built model uses them), device `{d['device']}`; batch "
             f"{d['batch']} of {d['gt_size']}x{d['gt_size']} HR patches. Means of {d['iters']} iterations after "
             f"{d['warmup']} warm-up ones. The data wait is `prefetcher.next()` and `feed_data`, with the device "
             'synchronised on both sides: an upper bound of the time it sits idle. Before them, without the model: '
             "the CPU time of one sample in the main process (one core) and what the data loader delivers with its "
             'workers. After them the loop runs free as a real run does (synchronised only at the end), in turn with '
             'the same loop on one batch already on the device: the throughput lost between the two is what the data '
             'costs a real run.', '',
             '| options | dataset (from) | workers | prefetch | pin memory | CPU ms per sample | loader alone '
             '(samples/s) | mean data wait, synchronised (ms) | longest (ms) | data wait / wall time | training, '
             'free-running (samples/s) | same loop without data (samples/s) | throughput lost to data | '
             'loader restarts |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in runs:
        free = 'free_samples_per_s' in r  # reports written before the free-running loop have only the wait
        lines.append(
            f"| `{r['options']}` | {r['dataset_type']} `{r['dataset']}` ({r['samples']} pairs, {r['io_backend']}) | "
            f"{r['num_worker_per_gpu']} | {r['prefetch_mode']} | {'yes' if r.get('pin_memory') else 'no'} | "
            + (f"{r['sample_ms']:.2f} | {r['loader_samples_per_s']:.0f} | " if 'sample_ms' in r else '| | ')
            + f"{1000 * r['data_wait_s']:.2f} | {1000 * r['max_data_wait_s']:.2f} | {100 * r['data_fraction']:.1f}% | "
            + (f"{r['free_samples_per_s']:.1f} | {r['model_samples_per_s']:.1f} | {100 * r['data_cost']:.1f}% | "
               if free else '| | | ') + f"{r['epoch_restarts']} |")
    lines.append('')
    for r in runs:
        cost, what = ((r['data_cost'], 'of the free-running throughput lost to it')
                      if 'data_cost' in r else (r['data_fraction'], 'of the wall time waiting'))
        starved = cost >= DATA_STARVED_FRACTION
        if not starved:
            verdict = 'does not starve the device'
        elif r['device'].startswith('cuda'):
            verdict = ("starves the device: `pin_memory: true` (the loader's pinning thread then receives the batches, "
                       'not the training loop), `prefetch_mode: cuda` (copies on a side stream), more loader workers '
                       '(`--num-worker`, option `num_worker_per_gpu`) or `.npy` arrays (`PairedNpyDataset`) may help')
        else:
            verdict = ("slows training: on a CPU the loader's workers take cores from the model, so `.npy` arrays "
                       '(`PairedNpyDataset`, the least CPU per sample) or fewer workers may help')
        line = (f"- `{r['options']}`: data loading {verdict} ({100 * cost:.1f}% {what}; the line drawn here is "
                f"{100 * DATA_STARVED_FRACTION:.0f}%)")
        if 'sample_ms' in r and fastest:
            cores = fastest['samples_per_s'] * r['sample_ms'] / 1000
            line += (f"; feeding the fastest self-distillation step of this run ({fastest['model']}, "
                     f"{fastest['samples_per_s']:.0f} samples/s) takes {cores:.2f} CPU cores of loading at "
                     f"{r['sample_ms']:.2f} ms per sample")
        lines.append(line + '.')
    return lines + ['']


def _precision_lines(p):
    net, tol = p['network'], p['tolerance_db']
    measured = {row['variant'] for row in p['rows']}
    tol_text = '; '.join(f'{v} {t} dB' for v, t in tol.items() if v in measured)
    tf32 = ('' if p.get('cudnn_allow_tf32') is None else
            f"; cuDNN TF32 for the fp32 convolutions {'allowed' if p['cudnn_allow_tf32'] else 'off'} (PyTorch's "
            'default: allowed)')
    lines = ['## Precision of the fast settings on trained weights', '',
             f"Checkpoint `{p['checkpoint']}` (weights `{p['param_key']}`: {_name(net)}, "
             f"{net['num_feat']} channels, exits {net['exits']}, x{p['scale']}) on `{p['val_dir']}` ({p['images']} "
             f"images), device `{p['device']}`: mean Y-PSNR (SR rounded to 8 bits, MATLAB Y, {p['scale']}-pixel "
             f"border cropped){tf32}. Tolerance on the change of the mean PSNR from fp32: {tol_text}.", '',
             '| output | variant | PSNR (dB) | SSIM | change vs fp32 (dB) | largest change of one image (dB) | '
             'tolerance (dB) | result |', '|---|---|---|---|---|---|---|---|']
    for row in p['rows']:
        if row['passed'] is None:
            cells = ['', '', '', 'reference']
        else:
            cells = [f"{row['delta_db']:+.4f}", f"{row['max_image_delta_db']:.4f}", f"{row['tolerance_db']}",
                     'pass' if row['passed'] else '**FAIL**']
        lines.append(f"| {row['output']} | {row['variant']} | {row['psnr']:.4f} | {row['ssim']:.4f} | "
                     + ' | '.join(cells) + ' |')
    failed = [f"{row['output']} {row['variant']}" for row in p['rows'] if row['passed'] is False]
    lines += ['', '- every fast setting is within its tolerance.' if not failed else
              f"- **outside the tolerance**: {', '.join(failed)}."]
    if not any(v in measured for v in ('fp16', 'bf16')):
        lines.append('- fp16/bf16 autocast is checked on CUDA only.')
    return lines + ['']


def _name(net):
    """``SRResNet-32`` for a ``MultiExitSRResNet`` of 32 blocks (reports written before ``arch`` existed: SRResNet)."""
    return f"{net.get('arch', net.get('type', 'MultiExitSRResNet')).removeprefix('MultiExit')}-{net['num_block']}"


def markdown(report):
    """The report as markdown, with the ratios the speed claims rest on (a pure function of ``report``)."""
    env, s = report['environment'], report['settings']
    gpu = f", GPU {env['gpu']}" if 'gpu' in env else ''
    lines = ['# Speed benchmark', '', f"Machine: {env['cpu']} ({env['cpu_count']} cores, {env['torch_threads']} torch "
             f"threads){gpu}; device `{env['device']}`. Versions: torch {env['torch']}, BasicSR {env['basicsr']}, "
             f"ONNX Runtime {env['onnxruntime']}, srdistill {env['srdistill']}; {env['platform']}.", '',
             f"Settings: {_name(s)} ({s['num_feat']} channels), exit after block {s['exit']} "
             f"({s.get('exit_head', 'full')} head), "
             f"x{s['scale']}; training batch {s['batch']} of {s['gt_size']}x{s['gt_size']} HR patches (random data "
             f"already on the device: the model's own cost); inference on one {s['lr_size'][1]}x{s['lr_size'][0]} LR "
             f"image. Medians of {s['repeats']} runs after {s['warmup']} warm-up runs, all measured in one run; the "
             f"training steps interleaved (one step of each model in turn). Operator and kernel counts: one more "
             "step of each model under the PyTorch profiler.", '']
    if report['training']:
        lines += _training_lines(report)
    else:
        lines += ['Training not measured (`--skip-training`).', '']
    lines += ['## Inference latency per exit (ms)', '']
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
    if report.get('runtimes'):
        lines += _runtime_lines(report['runtimes'], s)
    lines += ['', '## How close to the hardware', ''] + _hardware_lines(report, full['achieved_gflops'])
    if report.get('data_wait'):
        runs = report['data_wait']
        runs = [runs] if isinstance(runs, dict) else runs  # reports written before several files were measured
        sd_rows = [row for row in report['training'] if row.get('speedup_vs_sd_fp32') is not None]
        lines += _data_wait_lines(runs, max(sd_rows, key=lambda row: row['samples_per_s']) if sd_rows else None)
    if report.get('precision'):
        lines += _precision_lines(report['precision'])
    return '\n'.join(lines)


def _ratio(a, b):
    return None if a is None or b is None else a / b


def _runtime_lines(rt, settings):
    """The per-runtime section: a row per runtime with the exit's and the final network's median and quartiles, each
    one's speed-up over PyTorch eager, the exit's speed-up over the final network against their MAC ratio; the goals.
    """
    ex, fin, latency = rt['exit'], rt['final'], rt['latency']
    mac_ratio = rt['gmacs'][fin] / rt['gmacs'][ex]
    median = {(out, r): latency[out][r].get('median_ms') for out in (ex, fin) for r in rt['runtimes']}
    eager = {out: median.get((out, 'eager')) for out in (ex, fin)}
    versions = ', '.join(f'{k} {v}' for k, v in rt.get('versions', {}).items())
    lines = ['', '## Latency per runtime (ms)', '',
             f"The exit {ex} and the final network {fin} as standalone networks, one {settings['lr_size'][1]}x"
             f"{settings['lr_size'][0]} LR image, on the CPU, each runtime with its default threads (last column)"
             f"{'; ' + versions if versions else ''}. Every (network, runtime) pair is timed interleaved: after "
             f"{settings['warmup']} warm-up runs of each, each of {settings['repeats']} rounds runs every pair "
             'once, in reverse order every other round, so a slow spell hits all pairs alike. Median and '
             'interquartile range (q1-q3) of the rounds; speed-ups are ratios of medians. Each conversion is checked '
             f"against PyTorch within the export tolerance. {fin} has {mac_ratio:.2f}x the multiply-adds of {ex} "
             f"({rt['gmacs'][fin]:.2f} vs {rt['gmacs'][ex]:.2f} GMACs).", '',
             f'| runtime | {ex} (ms) | {ex} q1-q3 | {ex} vs eager | {fin} (ms) | {fin} q1-q3 | {fin} vs eager | '
             f'{ex} vs {fin} speed | share of the MAC ratio | threads |', '|---|---|---|---|---|---|---|---|---|---|']
    for r in rt['runtimes']:
        cells = []
        for out in (ex, fin):
            entry = latency[out][r]
            if 'skipped' in entry:
                cells += [f"skipped: {entry['skipped']}", '', '']
            else:
                cells += [f"{entry['median_ms']:.1f}", f"{entry['q1_ms']:.1f}-{entry['q3_ms']:.1f}",
                          _fmt_speedup(_ratio(eager[out], entry['median_ms']))]
        speed = _ratio(median[(fin, r)], median[(ex, r)])
        threads = next((latency[out][r]['threads'] for out in (ex, fin) if 'threads' in latency[out][r]), '')
        cells += [_fmt_speedup(speed), '' if speed is None else f'{speed / mac_ratio:.2f}', threads]
        lines.append(f'| {r} | ' + ' | '.join(cells) + ' |')
    return lines + [''] + _goal_lines(rt['runtimes'], median, eager[ex], ex, fin, mac_ratio)


def _goal_lines(runtimes, median, eager, ex, fin, mac_ratio):
    """Whether the issue's two goals are met, in the fastest runtime for the exit."""
    timed = [r for r in runtimes if median[(ex, r)] is not None]
    if not timed:
        return ['- no runtime was timed: the goals are not measured.']
    fastest = min(timed, key=lambda r: median[(ex, r)])
    verdict = {True: '**met**', False: '**not met**'}
    if eager is None:
        lines = [f'- goal: the fastest runtime {FASTEST_VS_EAGER_GOAL:g}x PyTorch eager for {ex}: not measured (no '
                 'eager row).']
    else:
        speedup = eager / median[(ex, fastest)]
        lines = [f'- goal: the fastest runtime at least {FASTEST_VS_EAGER_GOAL:g}x PyTorch eager for {ex}: '
                 f'{verdict[speedup >= FASTEST_VS_EAGER_GOAL]} (fastest: {fastest}, {speedup:.2f}x).']
    speed = _ratio(median[(fin, fastest)], median[(ex, fastest)])
    if speed is None:
        lines.append(f'- goal: {ex} at least {MAC_RATIO_SHARE_GOAL:g}x its MAC ratio faster than {fin}: not measured '
                     f'({fin} not timed in {fastest}).')
    else:
        meeting = [r for r in timed if median[(fin, r)] is not None
                   and median[(fin, r)] / median[(ex, r)] >= MAC_RATIO_SHARE_GOAL * mac_ratio]
        lines.append(f'- goal: {ex} at least {MAC_RATIO_SHARE_GOAL:g}x its MAC ratio ({mac_ratio:.2f}x) faster than '
                     f'{fin} in the fastest runtime: {verdict[speed >= MAC_RATIO_SHARE_GOAL * mac_ratio]} ({fastest}: '
                     f'{speed:.2f}x, {speed / mac_ratio:.2f} of the ratio; runtimes that meet it: '
                     f"{', '.join(meeting) or 'none'}).")
    return lines


def _hardware_lines(report, achieved):
    """The network's achieved GFLOP/s against a dense matmul of the same device (and, on CUDA, the same precision)."""
    n = report.get('matmul_n', 2048)  # reports written before the size was recorded used 2048
    lines = [f"A {n}x{n} fp32 matmul reaches {report['matmul_gflops']:.1f} GFLOP/s on this device; the full network "
             f"(eager) reaches {achieved:.1f} GFLOP/s, {100 * achieved / report['matmul_gflops']:.0f}% of it."]
    if report.get('matmul_tf32_gflops'):
        lines.append(f"cuDNN runs the fp32 convolutions in TF32 (PyTorch's default), so the fair reference is the "
                     f"same matmul in TF32: {report['matmul_tf32_gflops']:.1f} GFLOP/s, of which the network reaches "
                     f"{100 * achieved / report['matmul_tf32_gflops']:.0f}%.")
    return lines + ['']


def write_report(report, path_md):
    """Write ``path_md`` and the JSON next to it (``.json``). Returns both paths."""
    os.makedirs(osp.dirname(osp.abspath(path_md)), exist_ok=True)
    with open(path_md, 'w') as f:
        f.write(markdown(report))
    path_json = osp.splitext(path_md)[0] + '.json'
    with open(path_json, 'w') as f:
        json.dump(report, f, indent=1)
    return path_md, path_json
