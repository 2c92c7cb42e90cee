"""Jobs still training: their validation curve so far, read from the carried ``progress/<job>.json``.

A CPU job of protocol v2 can span several sittings (:mod:`srdistill.ablation.carry`). Until it finishes it has no
``results/<job>.json``, so the tables and curves of :mod:`srdistill.ablation.summary` leave it out. Its progress file
already holds the selection-split scores of every checkpoint carried so far; this module reports them, marked as
unfinished and kept apart from the finished runs' statistics:

- the student's PSNR on the selection split at each carried checkpoint;
- the gap to the same seed's reference run (same budget) at each checkpoint both have, the reference's curve taken
  from its result or, if it is unfinished too, from its own progress file. One seed gives a difference, not an
  interval: these rows say where a long run is heading, and are no answer.

:func:`write_in_progress` writes ``in_progress.json`` and returns the markdown table; the learning-curve plot
(:func:`srdistill.ablation.curves.plot_curves`) draws them dashed.
"""
import json
import os
from os import path as osp

from srdistill.ablation import carry


def in_progress(out_dir, jobs, results, student, reference='scratch'):
    """Every job of ``jobs`` with a progress file and no result, in plan order.

    Args:
        out_dir (str): The ablation folder.
        jobs (list[dict]): :func:`srdistill.ablation.plan.expand`'s jobs.
        results (list[dict]): The finished jobs' results.
        student (int): The plan's exit under study.
        reference (str): The run each job is compared with, seed by seed.

    Returns:
        list[dict]: ``{job, run, label, seed, budget, planned, output, curve, gap}``; ``gap`` is
        ``[[iteration, dB], ...]`` at the checkpoints both have (empty when the reference has none yet), None for
        the reference run itself.
    """
    done = {r['name']: r for r in results}
    rows = []
    for job in jobs:
        if job['name'] in done:
            continue
        progress = carry.read_progress(out_dir, job)
        if not progress:
            continue
        output, curve = carry.student_curve(progress, student)
        gap = None
        if job['run'] != reference:
            ref_curve = _reference_curve(out_dir, jobs, done, job, student, reference)
            gap = [[it, psnr - ref_curve[it]] for it, psnr in curve if it in ref_curve]
        rows.append({'job': job['name'], 'run': job['run'], 'label': job['label'], 'seed': job['seed'],
                     'budget': job['budget'], 'planned': job['iterations'], 'output': output, 'curve': curve,
                     'gap': gap})
    return rows


def _reference_curve(out_dir, jobs, done, job, student, reference):
    """``{iteration: PSNR}`` of the reference run's job of the same seed and budget, finished or carried."""
    name = next((j['name'] for j in jobs if j['run'] == reference and j['seed'] == job['seed']
                 and j['budget'] == job['budget']), None)
    if name is None:
        return {}
    if name in done:
        return {int(it): psnr for it, psnr in done[name].get('curve') or []}
    progress = carry.read_progress(out_dir, {'name': name})
    return dict(carry.student_curve(progress, student)[1]) if progress else {}


def markdown(rows):
    """One line per job: iterations so far of planned, then PSNR (gap) at each carried checkpoint."""
    its = sorted({it for r in rows for it, _ in r['curve']})
    lines = ['| job | carried / planned iterations | ' + ' | '.join(str(i) for i in its) + ' |',
             '|' + '---|' * (len(its) + 2)]
    for r in rows:
        psnr, gap = dict(r['curve']), dict(r['gap'] or [])
        cells = [(f'{psnr[i]:.3f}' + (f' ({gap[i]:+.3f})' if i in gap else '')) if i in psnr else '—' for i in its]
        lines.append(f"| `{r['job']}` | {r['curve'][-1][0]} / {r['planned']} | " + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def write_in_progress(out_dir, rows, student, selected_on, reference='scratch'):
    """Write ``in_progress.json`` of :func:`in_progress`'s ``rows`` (removed when there are none) and return the
    markdown table ('' if none)."""
    path = osp.join(out_dir, 'in_progress.json')
    if not rows:
        if osp.isfile(path):
            os.remove(path)
        return ''
    with open(path, 'w') as f:
        json.dump({'selected_on': selected_on, 'student': student, 'reference': reference, 'jobs': rows}, f,
                  indent=1)
    return markdown(rows)
