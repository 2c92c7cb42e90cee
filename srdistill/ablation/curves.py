"""Learning curves of an ablation: the student's validation PSNR against iterations and against training compute.

Question 1 of protocol v2 (docs/protocol.md) asks whether the exit's gap to the network trained alone closes, stays
or grows with training. Every result holds its validation curve (``curve``: ``[iteration, PSNR]`` at every
validation, on the selection split, never a test set). This module puts the seeds of each run together:

- the mean and the range (min, max) over seeds at each checkpoint;
- the training multiply-adds spent by each checkpoint: the sources' (inherited weights, an external teacher) plus
  ``iteration x step_macs``, so runs of different cost can be read at equal compute;
- the paired gap to a reference run at each checkpoint, seed by seed (the same seed's curves), with a 95% t interval
  over seeds (:func:`srdistill.ablation.stats.t_interval`);
- equal compute read off the curves (:func:`reaches`): the iteration and the multiply-adds at which the reference's
  mean curve first reaches the run's final PSNR, and that compute as a share of the run's.

:func:`write_curves` writes ``curves.json``, ``curves.png`` and returns the markdown table of the gaps. The jobs of the
``compute`` budget that train differently from their equal-iterations job (a cheaper run given more iterations) are
drawn in the compute panel too, dotted: question 1 at equal compute, as a curve.
"""
import json
import statistics
from collections import OrderedDict
from os import path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from srdistill.ablation.stats import t_interval  # noqa: E402


def learning_curves(results, reference='scratch', budget='iterations'):
    """The curves of every reported run of ``budget``, in the order the results come.

    Args:
        results (list[dict]): Result files (one per job) as the ablation runner writes them.
        reference (str): The run every other is paired with, seed by seed.
        budget (str): Which budget's jobs to use.

    Returns:
        OrderedDict: ``{run: {label, seeds, iterations, pmacs, mean, min, max, gap}}``. ``iterations`` are the
        checkpoints every seed of the run has; ``pmacs`` the training multiply-adds (1e15) spent by each; ``gap`` is
        None for the reference (or when it is missing), else ``{seeds, iterations, mean, ci, per_seed}`` over the
        checkpoints and seeds both runs have (``ci`` entries None with one seed); ``reference_reaches`` then holds
        :func:`reaches` of the reference for the run's final mean PSNR.
    """
    groups = OrderedDict()
    for r in results:
        if r['budget'] == budget and r.get('report', True) and r.get('curve'):
            groups.setdefault(r['run'], []).append(r)
    curves = OrderedDict()
    for run, group in groups.items():
        group = sorted(group, key=lambda r: r['seed'])
        by_seed = {r['seed']: dict(r['curve']) for r in group}
        its = sorted(set.intersection(*(set(c) for c in by_seed.values())))
        first = group[0]
        source = first['total_macs'] - first.get('own_macs', first['total_macs'])
        values = [[by_seed[s][i] for s in by_seed] for i in its]
        curves[run] = {
            'label': first['label'], 'seeds': list(by_seed), 'iterations': its,
            'pmacs': [(source + i * first['step_macs']) / 1e15 for i in its],
            'mean': [statistics.fmean(v) for v in values], 'min': [min(v) for v in values],
            'max': [max(v) for v in values], 'curves': by_seed, 'gap': None, 'reference_reaches': None}
    ref = curves.get(reference)
    for run, c in curves.items():
        if ref is None or run == reference:
            continue
        seeds = [s for s in c['seeds'] if s in ref['curves']]
        its = [i for i in c['iterations'] if i in set(ref['iterations'])]
        if not seeds or not its:
            continue
        per_seed = {s: [c['curves'][s][i] - ref['curves'][s][i] for i in its] for s in seeds}
        columns = [[per_seed[s][k] for s in seeds] for k in range(len(its))]
        c['gap'] = {'seeds': seeds, 'iterations': its, 'mean': [statistics.fmean(v) for v in columns],
                    'ci': [t_interval(v) for v in columns], 'per_seed': per_seed}
        c['reference_reaches'] = reaches(ref, c['mean'][-1], c['pmacs'][-1])
    return curves


def reaches(curve, target, pmacs=None):
    """Where ``curve``'s seed mean first reaches ``target`` (linear between checkpoints), or None if it never does.

    Returns ``{iteration, pmacs}`` and, given the other run's final ``pmacs``, ``share``: the compute the curve needs
    for the other run's final PSNR, as a fraction of what the other run spent (below 1: the curve's run is cheaper).
    """
    points = list(zip(curve['iterations'], curve['pmacs'], curve['mean']))
    for k, (it, macs, value) in enumerate(points):
        if value >= target:
            if k == 0:
                found = {'iteration': it, 'pmacs': macs}
            else:
                it0, macs0, value0 = points[k - 1]
                f = (target - value0) / (value - value0)
                found = {'iteration': it0 + f * (it - it0), 'pmacs': macs0 + f * (macs - macs0)}
            if pmacs:
                found['share'] = found['pmacs'] / pmacs
            return found
    return None


def gap_table(curves, reference='scratch', every=1):
    """Markdown: per run, its paired gap to ``reference`` at each ``every``-th checkpoint (mean [95% CI over seeds])."""
    runs = [(run, c) for run, c in curves.items() if c['gap']]
    if not runs:
        return ''
    its = runs[0][1]['gap']['iterations'][every - 1::every]
    lines = ['| run | seeds | ' + ' | '.join(str(i) for i in its) + f' | {reference} reaches its last PSNR at |',
             '|' + '---|' * (len(its) + 3)]
    for run, c in runs:
        g = c['gap']
        cells = []
        for i in its:
            if i not in g['iterations']:
                cells.append('—')
                continue
            k = g['iterations'].index(i)
            ci = g['ci'][k]
            cells.append(f"{g['mean'][k]:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ''))
        r = c.get('reference_reaches')
        cells.append(f"iteration {r['iteration']:.0f}, {r['pmacs']:.3f} PMAC ({r['share']:.0%} of its compute)" if r
                     else 'never')
        lines.append(f"| {c['label']} | {len(g['seeds'])} | " + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot_curves(curves, student, selected_on, path, reference='scratch', compute_curves=None, unfinished=None):
    """Three panels: PSNR against iterations and against training compute (mean line, seed range shaded), and the
    paired gap to ``reference`` against iterations (mean, 95% interval over seeds shaded, each seed thin).
    ``compute_curves`` (the compute budget's, :func:`learning_curves`) are drawn dotted in the compute panel, in the
    colour of the same run; ``unfinished`` (the equal-iterations jobs still training,
    :func:`srdistill.ablation.in_progress.in_progress`) dashed with open markers in the iteration and gap panels."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    unfinished = [r for r in unfinished or [] if r['budget'] == 'iterations']
    finals = [c['mean'][-1] for c in (*curves.values(), *(compute_curves or {}).values())]
    finals += [r['curve'][-1][1] for r in unfinished]
    colors = {run: f'C{k % 10}' for k, run in enumerate(curves)}
    for r in unfinished:
        colors.setdefault(r['run'], f'C{len(colors) % 10}')
    for r in unfinished:
        style = dict(color=colors[r['run']], linestyle='--', marker='o', markerfacecolor='none', markersize=4)
        its, psnr = zip(*r['curve'])
        axes[0].plot(its, psnr, label=f"{r['label']}, seed {r['seed']}: still training ({its[-1]} of {r['planned']} "
                     'it.)', **style)
        if r['gap']:
            axes[2].plot(*zip(*r['gap']), label=f"{r['label']}, seed {r['seed']} (still training)", **style)
    for k, (run, c) in enumerate((compute_curves or {}).items()):
        color = colors.get(run, f'C{(len(curves) + k) % 10}')
        axes[1].plot(c['pmacs'], c['mean'], marker='.', color=color, linestyle=':', linewidth=2,
                     label=f"{c['label']} at equal compute: {c['iterations'][-1]} it. ({_seeds(c)})")
        axes[1].fill_between(c['pmacs'], c['min'], c['max'], color=color, alpha=0.1, linewidth=0)
    for k, (run, c) in enumerate(curves.items()):
        color, style = f'C{k % 10}', '-' if k < 10 else '--'
        for ax, x in zip(axes[:2], (c['iterations'], c['pmacs'])):
            ax.plot(x, c['mean'], marker='.', color=color, linestyle=style,
                    label=f"{c['label']} ({_seeds(c)})")
            ax.fill_between(x, c['min'], c['max'], color=color, alpha=0.15, linewidth=0)
        g = c['gap']
        if g:
            axes[2].plot(g['iterations'], g['mean'], marker='.', color=color, linestyle=style, label=c['label'])
            for values in g['per_seed'].values():
                axes[2].plot(g['iterations'], values, color=color, linewidth=0.6, alpha=0.5)
            if all(g['ci']):
                axes[2].fill_between(g['iterations'], [ci[0] for ci in g['ci']], [ci[1] for ci in g['ci']],
                                     color=color, alpha=0.12, linewidth=0)
    if finals:  # the late part of training is what matters; the first checkpoints would squash it
        for ax in axes[:2]:
            ax.set_ylim(min(finals) - 0.45, max(finals) + 0.1)
    axes[0].set_xlabel('iteration')
    axes[1].set_xlabel('training multiply-adds (PMAC, 3 x forward per step, sources included)')
    for ax in axes[:2]:
        ax.set_ylabel(f'exit {student} PSNR on {selected_on} (dB, Y)')
    axes[2].axhline(0, color='k', linewidth=0.8)
    axes[2].set_xlabel('iteration')
    axes[2].set_ylabel(f'paired gap to {reference} on {selected_on} (dB)')
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_curves(results, out_dir, student, selected_on, reference='scratch', unfinished=None):
    """Write ``curves.json`` and ``curves.png`` of the equal-iterations jobs (and, in ``compute_runs`` and the
    compute panel, the compute budget's jobs that trained on their own; in the plot only, ``unfinished``: the jobs
    still training); return the gap table (markdown)."""
    curves = learning_curves(results, reference)
    if not curves:
        return ''
    own = [r for r in results if r['budget'] == 'compute' and not r.get('same_as')]
    compute = OrderedDict((run, c) for run, c in learning_curves(own, None, 'compute').items()
                          if run not in curves or c['iterations'] != curves[run]['iterations'])
    for c in compute.values():
        c.pop('gap'), c.pop('reference_reaches')  # paired gaps are read at equal iterations only

    def plain(runs):
        return {run: {k: v for k, v in c.items() if k != 'curves'} for run, c in runs.items()}

    with open(osp.join(out_dir, 'curves.json'), 'w') as f:
        json.dump({'selected_on': selected_on, 'student': student, 'reference': reference, 'runs': plain(curves),
                   'compute_runs': plain(compute)}, f, indent=1)
    plot_curves(curves, student, selected_on, osp.join(out_dir, 'curves.png'), reference, compute, unfinished)
    return gap_table(curves, reference)


def _seeds(curve):
    """'1 seed', '5 seeds': how many seeds a drawn curve averages."""
    n = len(curve['seeds'])
    return f'{n} seed' if n == 1 else f'{n} seeds'
