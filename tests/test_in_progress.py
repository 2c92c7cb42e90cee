"""Jobs still training (srdistill/ablation/in_progress.py): the curve so far from carried progress files."""
import json

import pytest

from srdistill.ablation import carry
from srdistill.ablation.in_progress import in_progress, write_in_progress


def _job(run, seed, budget='iterations', iterations=5000):
    return {'name': f'{run}__s{seed}__{budget}', 'run': run, 'label': run.upper(), 'seed': seed, 'budget': budget,
            'iterations': iterations}


JOBS = [_job('scratch', 0), _job('sd', 0), _job('scratch', 1), _job('sd', 1), _job('plain', 2)]


def _carry(out, job, scores):
    """A progress file as ``--carry`` writes it: ``scores`` is ``{iteration: {output: psnr}}``."""
    progress = {it: {'means': {o: {'psnr': p, 'ssim': 0.8} for o, p in outputs.items()}, 'per_image': []}
                for it, outputs in scores.items()}
    carry.write_progress(str(out), job, progress, 'val')


def test_unfinished_jobs_their_curve_and_gap_to_the_same_seeds_reference(tmp_path):
    finished = [{'name': 'scratch__s0__iterations', 'run': 'scratch', 'seed': 0, 'budget': 'iterations',
                 'curve': [[500, 26.0], [1000, 26.5], [1500, 26.7]]}]
    _carry(tmp_path, JOBS[1], {500: {'e8': 26.4, 'e32': 26.9}, 1000: {'e8': 26.6, 'e32': 27.0}})
    _carry(tmp_path, JOBS[2], {500: {'e8': 25.9}})  # the reference of seed 1, unfinished too
    _carry(tmp_path, JOBS[3], {500: {'e8': 26.2, 'e32': 26.5}, 1000: {'e8': 26.3, 'e32': 26.6}})
    _carry(tmp_path, JOBS[4], {500: {'e16': 24.0}})  # a network without exit 8: its final output
    _carry(tmp_path, JOBS[0], {500: {'e8': 1.0}})  # left over: the job has a result, which wins
    rows = in_progress(str(tmp_path), JOBS, finished, student=8)
    assert [r['job'] for r in rows] == ['sd__s0__iterations', 'scratch__s1__iterations', 'sd__s1__iterations',
                                        'plain__s2__iterations']
    sd0, scratch1, sd1, plain = rows
    assert sd0['output'] == 'e8' and sd0['curve'] == [[500, 26.4], [1000, 26.6]] and sd0['planned'] == 5000
    assert [it for it, _ in sd0['gap']] == [500, 1000]
    assert [g for _, g in sd0['gap']] == pytest.approx([0.4, 0.1])  # against the finished scratch's curve
    assert scratch1['gap'] is None  # the reference itself
    assert sd1['gap'] == [[500, pytest.approx(0.3)]]  # only the checkpoint the unfinished reference has
    assert plain['output'] == 'e16' and plain['gap'] == []  # its seed has no reference job: no gap


def test_the_table_and_the_file_and_a_stale_file_is_removed(tmp_path):
    _carry(tmp_path, JOBS[1], {500: {'e8': 26.4}, 1000: {'e8': 26.6}})
    finished = [{'name': 'scratch__s0__iterations', 'run': 'scratch', 'seed': 0, 'budget': 'iterations',
                 'curve': [[500, 26.0]]}]
    table = write_in_progress(str(tmp_path), in_progress(str(tmp_path), JOBS, finished, 8), 8, 'val')
    assert table.splitlines()[0] == '| job | carried / planned iterations | 500 | 1000 |'
    assert table.splitlines()[2] == '| `sd__s0__iterations` | 1000 / 5000 | 26.400 (+0.400) | 26.600 |'
    saved = json.load(open(tmp_path / 'in_progress.json'))
    assert saved['selected_on'] == 'val' and saved['jobs'][0]['curve'] == [[500, 26.4], [1000, 26.6]]
    # the job finished: its result holds the curve, and the report of it as unfinished goes
    done = finished + [{'name': 'sd__s0__iterations', 'run': 'sd', 'seed': 0, 'budget': 'iterations'}]
    assert write_in_progress(str(tmp_path), in_progress(str(tmp_path), JOBS, done, 8), 8, 'val') == ''
    assert not (tmp_path / 'in_progress.json').exists()
