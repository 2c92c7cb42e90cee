"""Question 3 of protocol v2 (docs/protocol.md): what one self-distillation run gives, exit by exit.

One run trains a deep network with several exits: a family of networks. Each exit is compared with the same network
trained alone, at equal *total* compute for the family (the plan gives each network alone a share of the one run's
multiply-adds). A plan names the comparison with::

    family:
      run: family                 # the run with exits
      alone: {4: alone4, 8: alone8, 16: alone16, 32: alone32}   # exit -> the run of that network alone

Exit ``k`` of the family run is paired image by image and seed by seed with the output of run ``alone[k]``
(:func:`srdistill.ablation.stats.paired_difference`, both intervals). :func:`write_family` writes ``family.json``,
``family.png`` (PSNR against depth, the one run against the networks alone) and returns the markdown table.
"""
import json
import statistics
from os import path as osp

from srdistill.ablation.stats import excludes_zero, paired_difference
from srdistill.utils.errors import UserError


def check_family(plan, path):
    """Raise a UserError when the plan's ``family`` option names runs or exits that do not exist."""
    spec = plan.get('family')
    if spec is None:
        return
    if not isinstance(spec, dict) or not isinstance(spec.get('alone'), dict) or 'run' not in spec:
        raise UserError(f'{path}: option `family` must be {{run: <run with exits>, alone: {{<exit>: <run>}}}}.')
    names = [spec['run'], *spec['alone'].values()]
    unknown = [n for n in names if n not in plan['runs']]
    if unknown:
        raise UserError(f'{path}: option `family` names {unknown}, which are not runs (runs: {list(plan["runs"])}).')
    bad = [k for k in spec['alone'] if not isinstance(k, int) or k < 1]
    if bad:
        raise UserError(f'{path}: option `family.alone`: the keys are exit depths (positive integers), got {bad}.')


def _as_output(results, output):
    """The results with their student output set to ``output`` (so the paired statistics read that exit)."""
    return [dict(r, output=output) for r in results]


def _own_output(results):
    return results[0]['output']


def family_comparison(results, spec, datasets, key='last'):
    """Exit by exit: the one run's exit against the network alone on every set.

    Args:
        results (list[dict]): Result files of the plan (every run, seed and budget).
        spec (dict): The plan's ``family`` option.
        datasets (list[str]): Sets to compare on.
        key (str): ``'last'`` or ``'best'`` checkpoint.

    Returns:
        list[dict]: One record per (exit, set): ``exit``, ``dataset``, ``alone_run``, ``family_psnr`` and
        ``alone_psnr`` (means over the paired seeds), and the :func:`paired_difference` fields (``mean``,
        ``ci_images``, ``ci_seeds``, ``per_seed``, ``seeds``, ``images``), and the ``budget`` compared (``compute``
        when the family run has it, else its only one); exits whose runs are missing are left out.
    """
    budgets = dict.fromkeys(r['budget'] for r in results if r['run'] == spec['run'])
    budget = 'compute' if 'compute' in budgets else next(iter(budgets), None)  # question 3 is about equal compute
    by_run = {}
    for r in results:
        if r['budget'] == budget:
            by_run.setdefault(r['run'], []).append(r)
    family = by_run.get(spec['run'], [])
    records = []
    for depth, alone_run in sorted(spec['alone'].items()):
        alone = by_run.get(alone_run, [])
        output = f'e{depth}'
        if not family or not alone or output not in family[0][f'{key}_all_outputs'][datasets[0]]:
            continue
        fam = _as_output(family, output)
        own = _own_output(alone)
        for name in datasets:
            diff = paired_difference(fam, alone, name, key)
            if diff is None:
                continue
            seeds = set(diff['seeds'])
            fam_mean = statistics.fmean(r[f'{key}_all_outputs'][name][output]['psnr'] for r in family
                                        if r['seed'] in seeds)
            alone_mean = statistics.fmean(r[f'{key}_all_outputs'][name][own]['psnr'] for r in alone
                                          if r['seed'] in seeds)
            records.append(dict(
                exit=depth, dataset=name, budget=budget, alone_run=alone_run, alone_label=alone[0]['label'],
                alone_iterations=alone[0]['iterations'], alone_pmacs=alone[0]['total_macs'] / 1e15,
                family_pmacs=family[0]['total_macs'] / 1e15, family_psnr=fam_mean, alone_psnr=alone_mean, **diff))
    return records


def _fmt_ci(ci):
    return 'n/a' if ci is None else f'[{ci[0]:+.3f}, {ci[1]:+.3f}]'


def family_table(records, datasets):
    """Markdown: per exit, the one run's PSNR, the network alone's, and the paired difference on each set."""
    head = ['exit', 'alone: iterations (PMAC)', 'seeds']
    head += [f'{d}: one run / alone, Δ (95% CI images; seeds)' for d in datasets]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for depth in sorted({r['exit'] for r in records}):
        rows = {r['dataset']: r for r in records if r['exit'] == depth}
        first = next(iter(rows.values()))
        cells = [f'e{depth}', f"{first['alone_iterations']} ({first['alone_pmacs']:.3f})", str(len(first['seeds']))]
        for name in datasets:
            r = rows.get(name)
            if r is None:
                cells.append('—')
                continue
            mark = ' **' if excludes_zero(r) else ''
            cells.append(f"{r['family_psnr']:.2f} / {r['alone_psnr']:.2f}, {r['mean']:+.3f} "
                         f"{_fmt_ci(r['ci_images'])}; {_fmt_ci(r['ci_seeds'])}{mark}")
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot_family(records, datasets, path):
    """One panel per set: PSNR against depth, the one run's exits against each network trained alone."""
    import matplotlib  # here, not at import: load_plan imports this module for check_family
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.6 * len(datasets), 3.2), squeeze=False)
    for ax, name in zip(axes[0], datasets):
        rows = sorted((r for r in records if r['dataset'] == name), key=lambda r: r['exit'])
        depths = [r['exit'] for r in rows]
        ax.plot(depths, [r['family_psnr'] for r in rows], 'o-', label='one run (exits)')
        ax.plot(depths, [r['alone_psnr'] for r in rows], 's--', label='each alone (its share of compute)')
        ax.set_xscale('log', base=2)
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.set_xlabel('residual blocks')
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel('PSNR (dB, Y), last checkpoint')
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_family(results, plan, out_dir):
    """Write ``family.json`` and ``family.png`` for a plan with a ``family`` option. Returns the markdown, or ''."""
    spec = plan.get('family')
    if not spec:
        return ''
    datasets = plan['evaluate']['datasets']
    records = family_comparison(results, spec, datasets)
    if not records:
        return ''
    with open(osp.join(out_dir, 'family.json'), 'w') as f:
        json.dump(records, f, indent=1)
    plot_family(records, datasets, osp.join(out_dir, 'family.png'))
    return family_table(records, datasets)
