"""Collect an ablation's results: mean and spread over seeds per run and budget; table (markdown/CSV/JSON) and plot.

The learning curves are :mod:`srdistill.ablation.curves`'s.
"""
import csv
import glob
import json
import os
import statistics
from collections import OrderedDict
from os import path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from srdistill.ablation.curves import write_curves  # noqa: E402
from srdistill.ablation.family import write_family  # noqa: E402
from srdistill.ablation.in_progress import in_progress, write_in_progress  # noqa: E402
from srdistill.ablation.plan import expand  # noqa: E402
from srdistill.ablation.stats import FUTILITY_MIN_SEEDS, SHIP_BAR_DB, comparison_table, difference_table  # noqa: E402


def load_results(out_dir):
    """Every ``results/<job>.json`` of an ablation folder."""
    results = []
    for path in sorted(glob.glob(osp.join(out_dir, 'results', '*.json'))):
        with open(path) as f:
            results.append(json.load(f))
    return results


def _stats(values):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {'mean': mean, 'std': std, 'n': len(values), 'values': values}


def aggregate(results, datasets, run_order=None):
    """Rows ``{budget, run, label, iterations, total_pmacs, <key>/<dataset>/psnr: stats, ...}`` per (budget, run).

    Keys: ``last`` (final checkpoint), ``best`` (checkpoint best on the selection set, evaluated on every set),
    ``final_last`` (the network's deepest output, last checkpoint).
    """
    groups = OrderedDict()
    order = {name: i for i, name in enumerate(run_order or [])}
    budget_rank = {'iterations': 0, 'compute': 1}
    for r in sorted(results, key=lambda r: (budget_rank.get(r['budget'], 2), order.get(r['run'], len(order)),
                                            r['seed'])):
        if r.get('report', True):
            groups.setdefault((r['budget'], r['run']), []).append(r)
    rows = []
    for (budget, run), group in groups.items():
        row = OrderedDict(budget=budget, run=run, label=group[0]['label'], seeds=[g['seed'] for g in group],
                          iterations=group[0]['iterations'], total_pmacs=group[0]['total_macs'] / 1e15,
                          best_iters=[g['best_iter'] for g in group])
        for name in datasets:
            for metric in ('psnr', 'ssim'):
                row[f'last/{name}/{metric}'] = _stats([g['last'][name][metric] for g in group])
                row[f'best/{name}/{metric}'] = _stats([g['best'][name][metric] for g in group])
                finals = [g['last_all_outputs'][name][list(g['last_all_outputs'][name])[-1]][metric] for g in group]
                row[f'final_last/{name}/{metric}'] = _stats(finals)
        row['final_output'] = list(group[0]['last_all_outputs'][datasets[0]])[-1]
        rows.append(row)
    return rows


def _pm(stats, digits=2):
    if stats['n'] > 1:
        return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
    return f"{stats['mean']:.{digits}f}"


def markdown(rows, datasets, student, selected_on, baseline='scratch'):
    """One table per budget: the student exit's PSNR/SSIM (last and best checkpoint), and its gap to ``baseline``."""
    lines = []
    titles = {'iterations': 'Equal iterations', 'compute': 'Equal training compute (multiply-adds)'}
    others = [d for d in datasets if d != selected_on]
    for budget in dict.fromkeys(r['budget'] for r in rows):
        group = [r for r in rows if r['budget'] == budget]
        base = next((r for r in group if r['run'] == baseline), None)
        lines += [f'### {titles.get(budget, budget)}', '']
        head = ['run', 'seeds', 'iterations', 'compute (PMAC)']
        head += [f'{d} last' for d in datasets] + [f'{d} SSIM last' for d in datasets]
        head += [f'{d} best' for d in others]
        if base:
            head += [f'Δ {d} last vs {baseline}' for d in datasets]
        head += ['final output, ' + datasets[0]]
        lines += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        for r in group:
            cells = [r['label'], str(len(r['seeds'])), str(r['iterations']), f"{r['total_pmacs']:.2f}"]
            cells += [_pm(r[f'last/{d}/psnr']) for d in datasets]
            cells += [_pm(r[f'last/{d}/ssim'], 4) for d in datasets]
            cells += [_pm(r[f'best/{d}/psnr']) for d in others]
            if base:
                cells += [f"{r[f'last/{d}/psnr']['mean'] - base[f'last/{d}/psnr']['mean']:+.2f}" for d in datasets]
            final = r[f'final_last/{datasets[0]}/psnr']
            cells += ['—' if r['final_output'] == f'e{student}' else f"{r['final_output']}: {_pm(final)}"]
            lines.append('| ' + ' | '.join(cells) + ' |')
        lines.append('')
    return '\n'.join(lines)


def write_csv(rows, path):
    keys = [k for k in rows[0] if k not in ('seeds', 'best_iters')]
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        header = []
        for k in keys:
            header += [f'{k}/mean', f'{k}/std', f'{k}/n'] if isinstance(rows[0][k], dict) else [k]
        writer.writerow(header)
        for r in rows:
            cells = []
            for k in keys:
                v = r[k]
                cells += [f"{v['mean']:.4f}", f"{v['std']:.4f}", v['n']] if isinstance(v, dict) else [v]
            writer.writerow(cells)


def _robust_limits(values, spread=0.6):
    """x-limits around the bulk of ``values``: a diverged run would otherwise squash every other point."""
    mid = statistics.median(values)
    low = max(min(values), mid - spread)
    return low - 0.05, max(values) + 0.05


def plot(rows, results, datasets, student, path):
    """One panel per set: the student's PSNR per run (mean and seed spread, per budget).

    Runs far below the others (a diverged one) are drawn at the panel's edge with their value written beside them.
    """
    budgets = list(dict.fromkeys(r['budget'] for r in rows))
    labels = list(dict.fromkeys(r['label'] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets) + 1.5, 0.32 * len(labels) + 1.8),
                             squeeze=False)
    axes = axes[0]
    for k, (ax, name) in enumerate(zip(axes, datasets)):
        lo, hi = _robust_limits([r[f'last/{name}/psnr']['mean'] for r in rows])
        for i, budget in enumerate(budgets):
            group = {r['label']: r for r in rows if r['budget'] == budget}
            for label in labels:
                if label not in group:
                    continue
                y = labels.index(label) + 0.18 * (i - (len(budgets) - 1) / 2)
                st = group[label][f'last/{name}/psnr']
                x = min(max(st['mean'], lo), hi)
                ax.errorbar(x, y, xerr=st['std'], fmt='o', capsize=3, color=f'C{i}',
                            label=f'equal {budget}' if label == labels[0] or not ax.get_legend_handles_labels()[0]
                            else None)
                if st['mean'] < lo:
                    ax.annotate(f"{st['mean']:.2f} \u2190", (x, y), xytext=(4, -3), textcoords='offset points',
                                fontsize=7, color=f'C{i}')
        ax.set_xlim(lo, hi)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels if k == 0 else [], fontsize=8)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_xlabel(f'{name} PSNR (dB, Y), exit {student}, last')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc='lower left')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_summary(plan, out_dir, results=None, jobs=None):
    """Write ``table.md``, ``table.csv``, ``summary.json`` and ``ablation.png`` into ``out_dir``. Returns the rows.

    ``jobs``: the plan's jobs (:func:`~srdistill.ablation.plan.expand`, which builds every network to count its
    multiply-adds: pass them when you have them), for the jobs still training; expanded here only when a job has
    carried scores (``progress/``)."""
    results = load_results(out_dir) if results is None else results
    ev = plan['evaluate']
    rows = aggregate(results, ev['datasets'], list(plan['runs']))
    if not rows:
        return rows
    protocol = (f"x{plan['base_opt']['scale']}; exit {plan['student']}; Y-PSNR/SSIM (MATLAB rgb2ycbcr, border = "
                f"scale); "
                f"mean ± sample std over each run's seeds ({sorted({r['seed'] for r in results})} in results/); "
                f"'last' = final checkpoint, 'best' = the checkpoint "
                f"best on {ev['select_on']} (validation set, so its own 'best' is optimistic and not shown), "
                f"evaluated on the other sets; compute = training multiply-adds (3 x forward per step), sources "
                f"(inherited weights, external teacher) included.")
    text = [f"# Ablation `{plan['name']}`", '', f"Plan: `{plan['path']}` (base `{plan['base']}`).", '',
            f'Protocol: {protocol}', '', markdown(rows, ev['datasets'], plan['student'], ev['select_on'])]
    reference = plan.get('reference', 'scratch')
    per_image = all('last_per_image' in r for r in results)
    paired = per_image and any(r['run'] == reference for r in results)
    lines, records = difference_table(results, ev['datasets'], reference) if paired else ([], [])
    if records:  # another run to compare with the reference
        text += [f'### Paired per-image differences against `{reference}` (last checkpoint, dB)', '',
                 'Mean over the seeds both runs have and all images; 95% t intervals over images (of the '
                 'seed-averaged differences) and over seeds (of the per-seed set means); ** both exclude zero; '
                 f'† the interval over seeds ({FUTILITY_MIN_SEEDS} seeds or more) ends below +{SHIP_BAR_DB} dB, '
                 'the shipping bar (srdistill/ablation/stats.py, docs/protocol.md).', ''] + lines + ['']
        with open(osp.join(out_dir, 'differences.json'), 'w') as f:
            json.dump(records, f, indent=1)
    lines, records = (comparison_table(results, ev['datasets'], plan.get('comparisons', []))
                      if per_image else ([], []))
    if records:
        text += ['### Other paired comparisons (last checkpoint, dB)', '',
                 "The plan's `comparisons`, each run against the run it names, in the same form; the values in "
                 '`comparisons.json`.', ''] + lines + ['']
        with open(osp.join(out_dir, 'comparisons.json'), 'w') as f:
            json.dump(records, f, indent=1)
    if jobs is None:
        progress = osp.join(out_dir, 'progress')
        jobs = expand(plan) if osp.isdir(progress) and os.listdir(progress) else []
    unfinished = in_progress(out_dir, jobs, results, plan['student'], reference)
    gaps = write_curves(results, out_dir, plan['student'], ev['select_on'], reference, unfinished)
    if gaps:
        text += [f"### Learning curves: paired gap to `{reference}` on {ev['select_on']} at each checkpoint (dB)", '',
                 f"Equal iterations; exit {plan['student']}'s validation PSNR minus the same seed's `{reference}`, "
                 'mean over seeds [95% t interval over seeds]; the curves against iterations and training '
                 'multiply-adds are in `curves.png`, their values in `curves.json` (srdistill/ablation/curves.py).', '',
                 gaps, '']
    family, control = write_family(results, plan, out_dir)
    if family:
        text += [f"### Question 3: each exit of `{plan['family']['run']}` against the same network trained alone "
                 '(last checkpoint, dB)', '',
                 "PSNR of the one run's exit / of the network alone (mean over the paired seeds), and their paired "
                 'per-image difference with 95% t intervals over images and over seeds; ** both exclude zero; the '
                 'plot is `family.png`, the values `family.json` (srdistill/ablation/family.py).', '', family, '']
    if control:
        text += [f"### Question 3's control: each exit of `{plan['family']['run']}` against the same exit of "
                 f"`{plan['family']['control']}` (last checkpoint, dB)", '',
                 'What the distillation adds to one run with shared exits: the same statistics, the values in '
                 '`family_control.json`.', '', control, '']
    table = write_in_progress(out_dir, unfinished, plan['student'], ev['select_on'], reference)
    if table:
        text += [f"### Jobs still training: exit {plan['student']} on {ev['select_on']} "
                 "at each carried checkpoint (dB)",
                 '', f"Not in the tables above: PSNR, and in brackets the gap to the same seed's `{reference}` where "
                 'it has that checkpoint; one seed each, so no interval. From `progress/<job>.json` (carried by '
                 '`--carry`), drawn dashed in `curves.png`, the values in `in_progress.json` '
                 '(srdistill/ablation/in_progress.py).', '',
                 table, '']
    with open(osp.join(out_dir, 'table.md'), 'w') as f:
        f.write('\n'.join(text))
    write_csv(rows, osp.join(out_dir, 'table.csv'))
    with open(osp.join(out_dir, 'summary.json'), 'w') as f:
        json.dump({'protocol': protocol, 'rows': rows}, f, indent=1)
    plot(rows, results, ev['datasets'], plan['student'], osp.join(out_dir, 'ablation.png'))
    os.makedirs(out_dir, exist_ok=True)
    return rows
