"""``trials.png``: what a search has seen, at a glance (written with ``trials.csv`` by ``tools/tune.py``).

Left: every trial's validation curve (the student's PSNR on the objective's split at each checkpoint), the baseline's
(the student trained alone on the same budget and seed) in black, pruned trials dotted and ending in a cross where
the pruner stopped them, colour by the extra methods switched on. Right: each trial's result against the trial number,
as a gap to the baseline: a finished trial's best PSNR (a dot), a pruned trial's last PSNR (a cross, at the iteration
it was stopped, so below its would-be end), and the best so far as a step line.
"""
from os import path as osp


def trial_records(trials, switches):
    """One dict per finished or pruned trial of an Optuna study.

    Args:
        trials (list[optuna.trial.FrozenTrial]): The study's trials (running and failed ones are left out).
        switches (list[str]): The plan's switch names (``switch.<name>`` parameters).

    Returns:
        list[dict]: ``number``, ``state`` ('COMPLETE' or 'PRUNED'), ``value`` (best PSNR of a complete trial, else
        None), ``curve`` ([[iteration, PSNR], ...]), ``methods`` (the switches on, '+'-joined, or 'no extra method').
    """
    records = []
    for t in trials:
        if t.state.name not in ('COMPLETE', 'PRUNED'):
            continue
        curve = t.user_attrs.get('curve') or sorted([it, v] for it, v in t.intermediate_values.items())
        on = [name for name in switches if t.params.get(f'switch.{name}')]
        records.append(dict(number=t.number, state=t.state.name, value=t.value if t.state.name == 'COMPLETE' else None,
                            curve=[list(p) for p in curve], methods='+'.join(on) or 'no extra method'))
    return records


def plot_trials(records, path, baseline_curve=None, title=''):
    """Write the two panels (module docstring) to ``path``. Gaps need ``baseline_curve``; without it the right panel
    shows PSNR. Returns ``path``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    base = max(p for _, p in baseline_curve) if baseline_curve else None
    kinds = sorted({r['methods'] for r in records}, key=lambda m: (m != 'no extra method', m))
    colour = {m: f'C{i % 10}' for i, m in enumerate(kinds)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    if baseline_curve:
        left.plot(*zip(*baseline_curve), 'k-', lw=2.2, label='baseline (alone)', zorder=5)
        right.axhline(0, color='k', lw=1.2)
    shown = set()
    for r in records:
        if not r['curve']:
            continue
        label = r['methods'] if r['methods'] not in shown else None
        shown.add(r['methods'])
        its, psnr = zip(*r['curve'])
        pruned = r['state'] == 'PRUNED'
        left.plot(its, psnr, ':' if pruned else '-', color=colour[r['methods']], lw=1, alpha=0.85, label=label)
        if pruned:
            left.plot([its[-1]], [psnr[-1]], 'x', color=colour[r['methods']])
        y = (r['value'] if not pruned else psnr[-1]) - (base or 0)
        right.plot([r['number']], [y], 'x' if pruned else 'o', color=colour[r['methods']], ms=7)
        if pruned:
            right.annotate(f'pruned at {its[-1]}', (r['number'], y), fontsize=6, xytext=(4, -2),
                           textcoords='offset points')
    complete = sorted((r['number'], r['value']) for r in records if r['value'] is not None)
    if complete:
        numbers, best = [], []
        for n, v in complete:
            numbers.append(n)
            best.append(max(v, best[-1]) if best else v)
        right.step(numbers, [b - (base or 0) for b in best], where='post', color='0.4', lw=1, label='best so far')
        top = max(complete, key=lambda nv: nv[1])
        right.annotate(f'best: trial {top[0]}', (top[0], top[1] - (base or 0)), fontsize=7, xytext=(-4, 6),
                       textcoords='offset points', ha='right')
    left.set_xlabel('iteration')
    left.set_ylabel('student PSNR on the validation split (dB)')
    if base is not None:  # the early checkpoints sit far below: keep the end of the curves readable
        ends = [p for r in records if r['curve'] for p in
                ([p for _, p in r['curve'][-2:]] if r['state'] == 'COMPLETE' else [r['curve'][-1][1]])] + [base]
        left.set_ylim(min(ends) - 0.15, max(ends) + 0.05)
    left.legend(fontsize=7, loc='lower right')
    from matplotlib.lines import Line2D
    handles, _ = right.get_legend_handles_labels()
    handles += [Line2D([], [], ls='', marker='o', color='0.4', label='finished: best PSNR'),
                Line2D([], [], ls='', marker='x', color='0.4', label='pruned: PSNR where stopped')]
    right.set_xlabel('trial')
    right.set_ylabel('gap to the baseline (dB)' if base is not None else 'PSNR (dB)')
    right.legend(handles=handles, fontsize=7, loc='best')
    low, high = right.get_ylim()
    right.set_ylim(low, high + 0.08 * (high - low))  # room for the best trial's label
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(title or osp.basename(osp.dirname(osp.abspath(path))), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
