"""Question 3 of protocol v2 (docs/protocol.md): what one self-distillation run gives, exit by exit.

One run trains a deep network with several exits: a family of networks. Each exit is compared with the same network
trained alone, at equal *total* compute for the family (the plan gives each network alone a share of the one run's
multiply-adds). A plan names the comparison with::

    family:
      run: family                 # the run with exits
      alone: {4: alone4, 8: alone8, 16: alone16, 32: alone32}   # exit -> the run of that network alone
      control: family_pixel       # optional: the same run with exits, without distillation

Exit ``k`` of the family run is paired image by image and seed by seed with the output of run ``alone[k]``
(:func:`srdistill.ablation.stats.paired_difference`, both intervals). The optional ``control`` separates what the
distillation gives from what sharing one trunk and one budget gives: exit ``k`` of the family run is paired with exit
``k`` of the control. :func:`write_family` writes ``family.json`` (and ``family_control.json``), ``family.png`` (PSNR
against depth: the one run, the networks alone, the control) and returns the markdown tables.
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
    names = [spec['run'], *spec['alone'].values(), *([spec['control']] if 'control' in spec else [])]
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


def _by_run(results, spec):
    """The budget compared (``compute`` when the family run has it, else its only one) and its results by run."""
    budgets = dict.fromkeys(r['budget'] for r in results if r['run'] == spec['run'])
    budget = 'compute' if 'compute' in budgets else next(iter(budgets), None)  # question 3 is about equal compute
    by_run = {}
    for r in results:
        if r['budget'] == budget:
            by_run.setdefault(r['run'], []).append(r)
    return budget, by_run


def _mean_psnr(results, seeds, name, output, key):
    return statistics.fmean(r[f'{key}_all_outputs'][name][output]['psnr'] for r in results if r['seed'] in seeds)


def _paired_sets(results_a, results_b, datasets, key):
    """(set, paired difference, paired seeds) for each set on which the two runs share a seed."""
    for name in datasets:
        diff = paired_difference(results_a, results_b, name, key)
        if diff is not None:
            yield name, diff, set(diff['seeds'])


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
    budget, by_run = _by_run(results, spec)
    family = by_run.get(spec['run'], [])
    records = []
    for depth, alone_run in sorted(spec['alone'].items()):
        alone = by_run.get(alone_run, [])
        output = f'e{depth}'
        if not family or not alone or output not in family[0][f'{key}_all_outputs'][datasets[0]]:
            continue
        fam = _as_output(family, output)
        own = _own_output(alone)
        for name, diff, seeds in _paired_sets(fam, alone, datasets, key):
            records.append(dict(
                exit=depth, dataset=name, budget=budget, alone_run=alone_run, alone_label=alone[0]['label'],
                alone_iterations=alone[0]['iterations'], alone_pmacs=alone[0]['total_macs'] / 1e15,
                family_pmacs=family[0]['total_macs'] / 1e15, family_psnr=_mean_psnr(family, seeds, name, output, key),
                alone_psnr=_mean_psnr(alone, seeds, name, own, key), **diff))
    return records


def control_comparison(results, spec, datasets, key='last'):
    """Exit by exit: the one run against the control run (the same exits, no distillation), on every set.

    Returns:
        list[dict]: One record per (exit, set) that both runs have: ``exit``, ``dataset``, ``budget``,
        ``control_run``, ``control_label``, ``family_psnr`` and ``control_psnr`` (means over the paired seeds) and
        the :func:`paired_difference` fields; [] without a ``control`` in ``spec`` or without its results.
    """
    if 'control' not in spec:
        return []
    budget, by_run = _by_run(results, spec)
    family, control = by_run.get(spec['run'], []), by_run.get(spec['control'], [])
    records = []
    if not family or not control:
        return records
    for depth in sorted(spec['alone']):
        output = f'e{depth}'
        if any(output not in r[f'{key}_all_outputs'][datasets[0]] for r in (family[0], control[0])):
            continue
        fam, ctrl = _as_output(family, output), _as_output(control, output)
        for name, diff, seeds in _paired_sets(fam, ctrl, datasets, key):
            records.append(dict(
                exit=depth, dataset=name, budget=budget, control_run=spec['control'], control_label=control[0]['label'],
                family_psnr=_mean_psnr(family, seeds, name, output, key),
                control_psnr=_mean_psnr(control, seeds, name, output, key), **diff))
    return records


def _fmt_ci(ci):
    return 'n/a' if ci is None else f'[{ci[0]:+.3f}, {ci[1]:+.3f}]'


def _cell(r, left, right):
    if r is None:
        return '—'
    mark = ' **' if excludes_zero(r) else ''
    return (f"{r[left]:.2f} / {r[right]:.2f}, {r['mean']:+.3f} {_fmt_ci(r['ci_images'])}; "
            f"{_fmt_ci(r['ci_seeds'])}{mark}")


def family_table(records, datasets):
    """Markdown: per exit, the one run's PSNR, the network alone's, and the paired difference on each set."""
    head = ['exit', 'alone: iterations (PMAC)', 'seeds']
    head += [f'{d}: one run / alone, Δ (95% CI images; seeds)' for d in datasets]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for depth in sorted({r['exit'] for r in records}):
        rows = {r['dataset']: r for r in records if r['exit'] == depth}
        first = next(iter(rows.values()))
        cells = [f'e{depth}', f"{first['alone_iterations']} ({first['alone_pmacs']:.3f})", str(len(first['seeds']))]
        cells += [_cell(rows.get(name), 'family_psnr', 'alone_psnr') for name in datasets]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def control_table(records, datasets):
    """Markdown: per exit, the one run's PSNR, the control's, and the paired difference on each set."""
    head = ['exit', 'seeds'] + [f'{d}: one run / control, Δ (95% CI images; seeds)' for d in datasets]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for depth in sorted({r['exit'] for r in records}):
        rows = {r['dataset']: r for r in records if r['exit'] == depth}
        cells = [f'e{depth}', str(len(next(iter(rows.values()))['seeds']))]
        cells += [_cell(rows.get(name), 'family_psnr', 'control_psnr') for name in datasets]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot_family(records, datasets, path, control=()):
    """Two rows of panels, one column per set. Top: PSNR against depth, the one run's exits against each network
    trained alone (and the control's exits, when ``control`` records are given). Bottom: the paired difference, one
    run minus alone, with its 95% interval over seeds (when there are two seeds or more) and each seed's difference
    as a dot, so that a gain that holds in every seed can be told from one seed's luck."""
    import matplotlib  # here, not at import: load_plan imports this module for check_family
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, len(datasets), figsize=(3.6 * len(datasets), 5.8), squeeze=False, sharex=True,
                             gridspec_kw={'height_ratios': [3, 2]})
    for top, bottom, name in zip(axes[0], axes[1], datasets):
        rows = sorted((r for r in records if r['dataset'] == name), key=lambda r: r['exit'])
        depths = [r['exit'] for r in rows]
        top.plot(depths, [r['family_psnr'] for r in rows], 'o-', label='one run (exits)')
        top.plot(depths, [r['alone_psnr'] for r in rows], 's--', label='each alone (its share of compute)')
        ctrl = sorted((r for r in control if r['dataset'] == name), key=lambda r: r['exit'])
        if ctrl:
            top.plot([r['exit'] for r in ctrl], [r['control_psnr'] for r in ctrl], '^:',
                     label=f"{ctrl[0]['control_label']}")
        top.set_title(name, fontsize=9)
        bottom.axhline(0, color='0.5', lw=0.8)
        for r in rows:
            if r['ci_seeds']:
                low, high = r['ci_seeds']
                bottom.errorbar([r['exit']], [r['mean']], yerr=[[r['mean'] - low], [high - r['mean']]], fmt='o',
                                color='C0', capsize=3)
            else:
                bottom.plot([r['exit']], [r['mean']], 'o', color='C0')
            bottom.plot([r['exit'] * 1.12] * len(r['per_seed']), r['per_seed'], '.', color='0.35', ms=4)  # beside
        bottom.set_xlabel('residual blocks')
        for ax in (top, bottom):
            ax.set_xscale('log', base=2)
            ax.set_xticks(depths, [str(d) for d in depths])
            ax.grid(alpha=0.3)
    seeds = sorted({s for r in records for s in r['seeds']})
    axes[0][0].set_ylabel('PSNR (dB, Y), last checkpoint')
    axes[1][0].set_ylabel('one run - alone (dB)')
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f'seeds {", ".join(map(str, seeds))}; bottom: paired difference, mean with its 95% interval over '
                 'seeds, and each seed (grey dots, to its right)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_family(results, plan, out_dir):
    """Write ``family.json``, ``family.png`` (and ``family_control.json``) for a plan with a ``family`` option.

    Returns:
        tuple[str, str]: The markdown tables against the networks alone and against the control ('' for a table
        without results; ('', '') for a plan without ``family``).
    """
    spec = plan.get('family')
    if not spec:
        return '', ''
    datasets = plan['evaluate']['datasets']
    records = family_comparison(results, spec, datasets)
    control = control_comparison(results, spec, datasets)
    if not records:
        return '', ''
    with open(osp.join(out_dir, 'family.json'), 'w') as f:
        json.dump(records, f, indent=1)
    if control:
        with open(osp.join(out_dir, 'family_control.json'), 'w') as f:
            json.dump(control, f, indent=1)
    plot_family(records, datasets, osp.join(out_dir, 'family.png'), control)
    return family_table(records, datasets), control_table(control, datasets) if control else ''
