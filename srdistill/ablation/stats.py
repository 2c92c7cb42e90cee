"""Paired differences between two runs of an ablation, with 95% confidence intervals (protocol v2, docs/protocol.md).

A run is trained with several seeds; each result holds the student's PSNR of every test image at the last (and the
best) checkpoint. The difference of run A against run B on a set is taken image by image, for the seeds both have:

- ``mean``: the mean over seeds and images of ``PSNR_A(seed, image) - PSNR_B(seed, image)``; it equals the
  difference of the set means;
- ``ci_images``: a t interval over images of the seed-averaged differences (how much the gain depends on the image);
- ``ci_seeds``: a t interval over seeds of the per-seed set-mean differences (how much it depends on the training
  run; with 5 seeds, t has 4 degrees of freedom).

A gain is called real only when *both* intervals exclude zero. A run whose interval over seeds, from at least
``FUTILITY_MIN_SEEDS`` seeds, ends below ``SHIP_BAR_DB`` on a set cannot meet the shipping rule there
(:func:`below_bar`; docs/protocol.md, "Seeds and statistics").
"""
import statistics

from scipy import stats as scipy_stats

SHIP_BAR_DB = 0.1  # the gain over scratch a recipe needs on every test set to ship (docs/protocol.md)
FUTILITY_MIN_SEEDS = 3  # fewer seeds leave the interval over seeds too wide to stop a candidate on


def t_interval(values, level=0.95):
    """``(low, high)`` of the t confidence interval of the mean of ``values``; ``None`` for fewer than 2 values."""
    if len(values) < 2:
        return None
    mean, sem = statistics.fmean(values), statistics.stdev(values) / len(values)**0.5
    half = scipy_stats.t.ppf(0.5 + level / 2, len(values) - 1) * sem
    return mean - half, mean + half


def per_image_psnr(result, dataset, key='last'):
    """``{image: PSNR}`` of the result's student output on ``dataset`` at its ``key`` checkpoint (last or best)."""
    images = result[f'{key}_per_image'][dataset]
    return {name: outputs[result['output']]['psnr'] for name, outputs in images.items()}


def paired_difference(results_a, results_b, dataset, key='last'):
    """Run A against run B on ``dataset`` (see the module docstring).

    Args:
        results_a (list[dict]): Result files of run A (one per seed), as the ablation runner writes them.
        results_b (list[dict]): Those of run B.
        dataset (str): A set both were evaluated on.
        key (str): ``'last'`` or ``'best'`` checkpoint.

    Returns:
        dict | None: ``seeds`` (paired), ``images``, ``mean``, ``ci_images``, ``ci_seeds`` (each ``[low, high]`` or
        None), ``per_seed`` (the set-mean difference of each seed); None when no seed is shared.
    """
    by_seed_b = {r['seed']: r for r in results_b}
    pairs = [(r, by_seed_b[r['seed']]) for r in sorted(results_a, key=lambda r: r['seed']) if r['seed'] in by_seed_b]
    if not pairs:
        return None
    diffs = {}  # image -> [difference per seed]
    per_seed = []
    for a, b in pairs:
        pa, pb = per_image_psnr(a, dataset, key), per_image_psnr(b, dataset, key)
        if set(pa) != set(pb):
            raise ValueError(f'{dataset}: the two runs were evaluated on different images.')
        d = {name: pa[name] - pb[name] for name in pa}
        per_seed.append(statistics.fmean(d.values()))
        for name, value in d.items():
            diffs.setdefault(name, []).append(value)
    image_means = [statistics.fmean(v) for v in diffs.values()]
    ci_images, ci_seeds = t_interval(image_means), t_interval(per_seed)
    return {'seeds': [a['seed'] for a, _ in pairs], 'images': len(diffs), 'mean': statistics.fmean(image_means),
            'ci_images': list(ci_images) if ci_images else None, 'ci_seeds': list(ci_seeds) if ci_seeds else None,
            'per_seed': per_seed}


def excludes_zero(diff):
    """True when both intervals of a :func:`paired_difference` exist and lie on the same side of zero."""
    intervals = [diff['ci_images'], diff['ci_seeds']]
    if any(ci is None for ci in intervals):
        return False
    return all(lo > 0 for lo, _ in intervals) or all(hi < 0 for _, hi in intervals)


def below_bar(diff, bar=SHIP_BAR_DB, min_seeds=FUTILITY_MIN_SEEDS):
    """True when at least ``min_seeds`` paired seeds put the upper end of the interval over seeds below ``bar``.

    Such a run's gain on that set is below the shipping bar with 95% confidence, so more seeds would not make it ship.
    """
    ci = diff.get('ci_seeds')
    return bool(ci is not None and len(diff['seeds']) >= min_seeds and ci[1] < bar)


def difference_table(results, datasets, reference='scratch', key='last'):
    """Markdown rows of every run against ``reference`` per budget and set. Returns (lines, records)."""
    runs = list(dict.fromkeys(r['run'] for r in results if r.get('report', True)))
    return _pair_rows(results, datasets, [(run, reference) for run in runs if run != reference], key, 'run')


def comparison_table(results, datasets, pairs, key='last'):
    """Markdown rows of each ``(run, reference)`` of ``pairs`` (a plan's ``comparisons``), per budget and set, in the
    same form as :func:`difference_table` (e.g. question 2: exit 8 of a deeper central model against the 32-block
    one's). Returns (lines, records); a pair without results in a budget is left out."""
    return _pair_rows(results, datasets, [tuple(p) for p in pairs], key, 'comparison')


def _pair_rows(results, datasets, pairs, key, first_column):
    groups = {}
    for r in results:
        if r.get('report', True):
            groups.setdefault((r['budget'], r['run']), []).append(r)
    budgets = list(dict.fromkeys(budget for budget, _ in groups))
    lines = [f'| budget | {first_column} | seeds | ' + ' | '.join(f'Δ {d} (95% CI images; seeds)' for d in datasets)
             + ' |', '|' + '---|' * (3 + len(datasets))]
    records = []
    for budget in budgets:
        for run, reference in pairs:
            group, base = groups.get((budget, run)), groups.get((budget, reference))
            if not group or not base:
                continue
            cells, seeds = [], 0
            for name in datasets:
                diff = paired_difference(group, base, name, key)
                record = dict(budget=budget, run=run, reference=reference, dataset=name, key=key, **(diff or {}))
                if diff:
                    record['below_bar'] = below_bar(diff)
                records.append(record)
                cells.append('—' if diff is None else _cell(diff))
                seeds = max(seeds, len(diff['seeds']) if diff else 0)
            label = group[0]['label'] if first_column == 'run' else f'{run} − {reference}'
            lines.append(f'| {budget} | {label} | {seeds} | ' + ' | '.join(cells) + ' |')
    return lines, records


def _cell(diff):
    def fmt(ci):
        return 'n/a' if ci is None else f'[{ci[0]:+.3f}, {ci[1]:+.3f}]'

    mark = (' **' if excludes_zero(diff) else '') + (' †' if below_bar(diff) else '')
    return f"{diff['mean']:+.3f} {fmt(diff['ci_images'])}; {fmt(diff['ci_seeds'])}{mark}"
