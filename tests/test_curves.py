"""Learning curves of an ablation (srdistill/ablation/curves.py): seed means, compute axis, paired gaps."""
import json
import os.path as osp

import matplotlib.pyplot as plt
import pytest

from srdistill.ablation.curves import gap_table, learning_curves, reaches, write_curves


def _result(run, seed, curve, step_macs=10**12, source_macs=0, budget='iterations'):
    its = curve[-1][0]
    return {'run': run, 'label': run.upper(), 'seed': seed, 'budget': budget, 'report': True, 'curve': curve,
            'step_macs': step_macs, 'own_macs': its * step_macs, 'total_macs': source_macs + its * step_macs}


RESULTS = [
    _result('scratch', 0, [[100, 20.0], [200, 21.0]]),
    _result('scratch', 1, [[100, 20.2], [200, 21.4]]),
    _result('sd', 0, [[100, 20.5], [200, 21.1]], step_macs=3 * 10**12),
    _result('sd', 1, [[100, 20.3], [200, 21.3]], step_macs=3 * 10**12),
    _result('inherit', 0, [[100, 19.0], [200, 20.0]], source_macs=5 * 10**14),  # one seed only
    _result('sd', 0, [[50, 1.0]], budget='compute'),  # another budget: left out
]


def test_seed_means_compute_axis_and_paired_gaps():
    curves = learning_curves(RESULTS)
    assert list(curves) == ['scratch', 'sd', 'inherit']
    sd = curves['sd']
    assert sd['iterations'] == [100, 200] and sd['seeds'] == [0, 1]
    assert sd['mean'] == pytest.approx([20.4, 21.2]) and sd['min'] == [20.3, 21.1] and sd['max'] == [20.5, 21.3]
    assert sd['pmacs'] == pytest.approx([0.3, 0.6])  # 3e12 multiply-adds per iteration
    assert curves['inherit']['pmacs'] == pytest.approx([0.6, 0.7])  # the source's 0.5 PMAC first
    assert curves['scratch']['gap'] is None
    gap = sd['gap']
    # seed 0: +0.5, +0.1; seed 1: +0.1, -0.1
    assert gap['per_seed'][0] == pytest.approx([0.5, 0.1]) and gap['per_seed'][1] == pytest.approx([0.1, -0.1])
    assert gap['mean'] == pytest.approx([0.3, 0.0])
    # t interval over 2 seeds: mean ± t(0.975, 1) * sd / sqrt(2) = 0.3 ± 12.706 * 0.2
    assert gap['ci'][0] == pytest.approx((0.3 - 12.7062 * 0.2, 0.3 + 12.7062 * 0.2), abs=1e-3)
    one = curves['inherit']['gap']
    assert one['seeds'] == [0] and one['ci'] == [None, None] and one['mean'] == pytest.approx([-1.0, -1.0])
    # scratch's mean curve (20.1, 21.2) is above inherit's final 20.0 at its first checkpoint
    assert curves['inherit']['reference_reaches'] == pytest.approx({'iteration': 100, 'pmacs': 0.1, 'share': 0.1 / 0.7})


def test_equal_compute_read_off_the_curve():
    curve = {'iterations': [100, 200], 'pmacs': [0.1, 0.2], 'mean': [20.0, 21.0]}
    assert reaches(curve, 20.25, pmacs=0.5) == pytest.approx({'iteration': 125, 'pmacs': 0.125, 'share': 0.25})
    assert reaches(curve, 20.25) == pytest.approx({'iteration': 125, 'pmacs': 0.125})
    assert reaches(curve, 21.01) is None


def test_gap_table_and_files(tmp_path):
    curves = learning_curves(RESULTS)
    table = gap_table(curves)
    assert table.splitlines()[0] == '| run | seeds | 100 | 200 | scratch reaches its last PSNR at |'
    assert '| SD | 2 | +0.300 [-2.241, +2.841] | +0.000 [-1.271, +1.271] |' in table
    assert '| INHERIT | 1 | -1.000 | -1.000 | iteration 100, 0.100 PMAC (14% of its compute) |' in table
    assert write_curves(RESULTS, str(tmp_path), 8, 'val') == table
    saved = json.load(open(tmp_path / 'curves.json'))
    assert saved['reference'] == 'scratch' and saved['runs']['sd']['gap']['mean'] == pytest.approx([0.3, 0.0])
    assert osp.getsize(tmp_path / 'curves.png') > 10000


def test_the_compute_budget_runs_that_trained_on_their_own_are_kept_for_the_compute_panel(tmp_path):
    longer = [_result('scratch', s, [[100, 20.0 + s], [200, 21.0 + s], [300, 21.5 + s]], budget='compute')
              for s in (0, 1)]
    copied = dict(_result('sd', 0, [[100, 20.5], [200, 21.1]], step_macs=3 * 10**12, budget='compute'),
                  same_as='sd__s0__iterations')  # the same training as its equal-iterations job: not drawn twice
    write_curves(RESULTS[:4] + longer + [copied], str(tmp_path), 8, 'val')
    saved = json.load(open(tmp_path / 'curves.json'))
    assert list(saved['compute_runs']) == ['scratch']
    scratch = saved['compute_runs']['scratch']
    assert scratch['iterations'] == [100, 200, 300] and scratch['seeds'] == [0, 1]
    assert scratch['mean'] == pytest.approx([20.5, 21.5, 22.0]) and scratch['pmacs'] == pytest.approx([0.1, 0.2, 0.3])
    assert 'gap' not in scratch and list(saved['runs']) == ['scratch', 'sd']  # the gaps stay at equal iterations


def test_no_reference_no_gaps(tmp_path):
    curves = learning_curves([r for r in RESULTS if r['run'] != 'scratch'])
    assert all(c['gap'] is None for c in curves.values()) and gap_table(curves) == ''
    assert write_curves([], str(tmp_path), 8, 'val') == '' and not osp.exists(tmp_path / 'curves.png')


def test_jobs_still_training_are_drawn_dashed_and_kept_out_of_the_statistics(tmp_path, monkeypatch):
    unfinished = [{'job': 'sd__s2__iterations', 'run': 'sd', 'label': 'SD', 'seed': 2, 'budget': 'iterations',
                   'planned': 400, 'output': 'e8', 'curve': [[100, 20.6], [200, 21.5]], 'gap': [[100, 0.1]]}]
    drawn = {}
    savefig = plt.Figure.savefig

    def keep(fig, *args, **kwargs):  # the lines of the figure as it is saved
        drawn.update((line.get_label(), line.get_linestyle()) for ax in fig.axes for line in ax.get_lines())
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, 'savefig', keep)
    assert write_curves(RESULTS, str(tmp_path), 8, 'val', unfinished=unfinished) == gap_table(learning_curves(RESULTS))
    assert json.load(open(tmp_path / 'curves.json'))['runs']['sd']['seeds'] == [0, 1]  # seed 2 is in no mean
    assert drawn['SD, seed 2: still training (200 of 400 it.)'] == '--'
    assert drawn['SD, seed 2 (still training)'] == '--'  # its gap, in the gap panel
    assert osp.getsize(tmp_path / 'curves.png') > 10000
