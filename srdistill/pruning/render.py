"""The pruning report as markdown and as a figure: PSNR against multiply-adds and against latency (fp32 and INT8)."""
import json
import os
from os import path as osp


def _ms(entry):
    return '—' if not entry or 'median_ms' not in entry else (
        f'{entry["median_ms"]:.0f} ({entry["q1_ms"]:.0f}-{entry["q3_ms"]:.0f})')


def _diff(d):
    if d is None or d['ci_images'] is None:
        return '—'
    low, high = d['ci_images']
    return f'{d["mean"]:+.3f} [{low:+.3f}, {high:+.3f}]'


def markdown(report):
    """Markdown tables of :func:`~srdistill.pruning.report.build_report`'s dict."""
    sets, rows = report['datasets'], report['rows']
    h, w = report['macs_output_size']
    lines = [f'Plan: `{report["plan"]}`, results in `{report["out"]}`. Checkpoints chosen on {report["select_on"]}; '
             f'GMACs for a {w}x{h} output; latency for one {report["lr_size"][1]}x{report["lr_size"][0]} LR image, '
             f'median (interquartile range) over {report["repeats"]} interleaved rounds.', '',
             '### Quality and cost', '',
             '| network | params (K) | GMACs | ' + ' | '.join(f'{s} PSNR' for s in sets) + ' | '
             + ' | '.join(f'{s} INT8' for s in sets) + ' |',
             '|---|---|---|' + '---|' * (2 * len(sets))]
    for r in rows:
        int8 = r.get('int8') or {}
        lines.append(f'| {r["label"]} | {r["params"] / 1e3:.1f} | {r["macs"] / 1e9:.2f} | '
                     + ' | '.join(f'{r["psnr"][s]:.3f}' for s in sets) + ' | '
                     + ' | '.join(f'{int8["psnr"][s]:.3f}' if int8 else '—' for s in sets) + ' |')
    lines += ['', f'### Paired per-image difference against `{report["reference"]}` (dB, 95% t interval over images)',
              '', '| network | ' + ' | '.join(sets) + ' |', '|---|' + '---|' * len(sets)]
    for r in rows:
        lines.append(f'| {r["label"]} | ' + ' | '.join(_diff(r['diff_vs_reference'][s]) for s in sets) + ' |')
    lines += ['', '### INT8 against the same network in fp32 (dB, 95% t interval over images)', '',
              '| network | ' + ' | '.join(sets) + ' |', '|---|' + '---|' * len(sets)]
    for r in rows:
        if r.get('int8'):
            lines.append(f'| {r["label"]} | ' + ' | '.join(_diff(r['int8']['diff_vs_fp32'][s]) for s in sets) + ' |')
    runtimes = report['runtimes']
    lines += ['', '### Latency per runtime (ms)', '', '| network | ' + ' | '.join(runtimes) + ' |',
              '|---|' + '---|' * len(runtimes)]
    for r in rows:
        lines.append(f'| {r["label"]} | ' + ' | '.join(_ms(r['latency'].get(rt)) for rt in runtimes) + ' |')
    skipped = {rt: e['skipped'] for r in rows for rt, e in r['latency'].items() if 'skipped' in e}
    for rt, why in skipped.items():
        lines.append(f'\n{rt} skipped: {why}')
    threads = {rt: e['threads'] for r in rows for rt, e in r['latency'].items() if 'threads' in e}
    lines += [''] + [f'- {rt}: {t}' for rt, t in threads.items()]
    return '\n'.join(lines) + '\n'


def _series(rows):
    """Lines of the figure: the unpruned source outputs as single points, the pruned runs by mode through the
    reference (0% pruned)."""
    groups = {}
    for r in rows:
        key = 'source (not fine-tuned)' if r['prune'] is None else (
            f'pruned, {r["mode"]}, fine-tuned' if r['prune'] else 'unpruned, fine-tuned')
        groups.setdefault(key, []).append(r)
    start = groups.get('unpruned, fine-tuned', [])
    for key in list(groups):
        if key.startswith('pruned'):
            groups[key] = sorted(start + groups[key], key=lambda r: r['macs'])
    if any(k.startswith('pruned') for k in groups):  # drawn as the first point of every pruned line
        groups.pop('unpruned, fine-tuned', None)
    return groups


def plot(report, dataset, path, runtime='onnxruntime', int8_runtime='onnxruntime-int8'):
    """PNG with two panels: PSNR on ``dataset`` against GMACs and against latency in ``runtime``; fp32 solid, INT8
    (its PSNR, latency in ``int8_runtime``) hollow; latency drawn with its interquartile range."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    colours = ('tab:gray', 'tab:blue', 'tab:orange', 'tab:green', 'tab:red')
    for (key, rows), colour in zip(_series(report['rows']).items(), colours):
        macs = [r['macs'] / 1e9 for r in rows]
        psnr = [r['psnr'][dataset] for r in rows]
        int8 = [r['int8']['psnr'][dataset] if r.get('int8') else None for r in rows]
        style = dict(color=colour, marker='o', linestyle='-' if key.startswith('pruned') else 'none')
        axes[0].plot(macs, psnr, label=key + ', fp32', **style)
        int8_line = ':' if key.startswith('pruned') else 'none'
        axes[0].plot(macs, int8, label=key + ', INT8', markerfacecolor='none', **dict(style, linestyle=int8_line))
        for ax_rows, rt, values, hollow in ((rows, runtime, psnr, False), (rows, int8_runtime, int8, True)):
            lat = [r['latency'].get(rt) or {} for r in ax_rows]
            pts = [(e['median_ms'], e['median_ms'] - e['q1_ms'], e['q3_ms'] - e['median_ms'], v)
                   for e, v in zip(lat, values) if 'median_ms' in e and v is not None]
            if pts:
                x, lo, hi, y = zip(*pts)
                axes[1].errorbar(x, y, xerr=[lo, hi], color=colour, marker='o', capsize=3,
                                 linestyle=int8_line if hollow else style['linestyle'],
                                 markerfacecolor='none' if hollow else colour)
        for r, x, y in zip(rows, macs, psnr):
            axes[0].annotate(r['run'] if r['prune'] is not None else r['output'], (x, y), fontsize=7,
                             textcoords='offset points', xytext=(3, 3))
    axes[0].set_xlabel(f'GMACs ({report["macs_output_size"][1]}x{report["macs_output_size"][0]} output)')
    axes[1].set_xlabel(f'latency (ms): fp32 in {runtime} (solid), INT8 in {int8_runtime} (hollow)')
    for ax in axes:
        ax.set_ylabel(f'PSNR on {dataset} (dB, Y)')
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle('Pruned exits: quality against cost')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report, out_dir, plot_sets):
    """Write ``report.json`` (raw, per image), ``report.md`` and ``tradeoff_<set>.png`` into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'report.json'), 'w') as f:
        json.dump(report, f, indent=1)
    with open(osp.join(out_dir, 'report.md'), 'w') as f:
        f.write(markdown(report))
    return [osp.join(out_dir, 'report.json'), osp.join(out_dir, 'report.md')] + [
        plot(report, s, osp.join(out_dir, f'tradeoff_{s}.png')) for s in plot_sets]
