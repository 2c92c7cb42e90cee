"""Question 3's comparison (srdistill/ablation/family.py): each exit of one run against the network alone."""
import json
import os.path as osp

import pytest

from srdistill.ablation.family import (
    check_family,
    control_comparison,
    control_table,
    family_comparison,
    family_table,
    write_family,
)
from srdistill.ablation.stats import t_interval
from srdistill.utils.errors import UserError

SPEC = {'run': 'family', 'alone': {4: 'alone4', 8: 'alone8'}}


def _result(run, seed, per_image, output, iterations=100, macs=10**15):
    """``per_image``: {image: {output: psnr}}; the set means are the images' means."""
    outputs = next(iter(per_image.values()))
    means = {o: {'psnr': sum(v[o] for v in per_image.values()) / len(per_image)} for o in outputs}
    return {'run': run, 'label': run.upper(), 'seed': seed, 'budget': 'compute', 'output': output, 'report': True,
            'iterations': iterations, 'total_macs': macs, 'last_all_outputs': {'val': means},
            'last_per_image': {'val': {n: {o: {'psnr': p} for o, p in v.items()} for n, v in per_image.items()}}}


RESULTS = [
    _result('family', 0, {'a': {'e4': 29.0, 'e8': 30.0, 'e32': 31.0}, 'b': {'e4': 27.0, 'e8': 28.0, 'e32': 29.0}},
            'e8', macs=4 * 10**15),
    _result('family', 1, {'a': {'e4': 29.2, 'e8': 30.2, 'e32': 31.0}, 'b': {'e4': 27.0, 'e8': 28.4, 'e32': 29.0}},
            'e8', macs=4 * 10**15),
    _result('alone4', 0, {'a': {'e4': 28.9}, 'b': {'e4': 26.9}}, 'e4', iterations=300),
    _result('alone4', 1, {'a': {'e4': 29.0}, 'b': {'e4': 27.0}}, 'e4', iterations=300),
    _result('alone8', 0, {'a': {'e8': 30.1}, 'b': {'e8': 28.1}}, 'e8', iterations=200),
    _result('alone8', 1, {'a': {'e8': 30.0}, 'b': {'e8': 28.0}}, 'e8', iterations=200),
]


def test_each_exit_is_paired_with_its_network_alone():
    records = family_comparison(RESULTS, SPEC, ['val'])
    assert [(r['exit'], r['alone_run']) for r in records] == [(4, 'alone4'), (8, 'alone8')]
    e4, e8 = records
    # exit 4: seed 0 +0.1 on both images, seed 1 +0.2 and 0.0 -> per seed 0.1, 0.1; per image 0.15, 0.05
    assert e4['per_seed'] == pytest.approx([0.1, 0.1]) and e4['mean'] == pytest.approx(0.1)
    assert e4['ci_images'] == pytest.approx(list(t_interval([0.15, 0.05])))
    assert e4['family_psnr'] == pytest.approx(28.05) and e4['alone_psnr'] == pytest.approx(27.95)
    # exit 8: seed 0 -0.1 and -0.1, seed 1 +0.2 and +0.4 -> per seed -0.1, +0.3
    assert e8['per_seed'] == pytest.approx([-0.1, 0.3]) and e8['mean'] == pytest.approx(0.1)
    assert e8['ci_seeds'] == pytest.approx(list(t_interval([-0.1, 0.3])))
    assert e8['alone_iterations'] == 200 and e8['alone_pmacs'] == 1.0 and e8['family_pmacs'] == 4.0


def test_only_the_equal_compute_budget_is_compared():
    other = [dict(r, budget='iterations', last_per_image={'val': {n: {o: {'psnr': 0.0} for o in v}
                                                                 for n, v in r['last_per_image']['val'].items()}})
             for r in RESULTS]
    records = family_comparison(RESULTS + other, SPEC, ['val'])
    assert [r['mean'] for r in records] == pytest.approx([0.1, 0.1]) and {r['budget'] for r in records} == {'compute'}


def test_an_exit_without_its_runs_is_left_out():
    spec = {'run': 'family', 'alone': {4: 'alone4', 16: 'alone16'}}  # no alone16 result, no e16 output
    assert [r['exit'] for r in family_comparison(RESULTS, spec, ['val'])] == [4]
    assert family_comparison([r for r in RESULTS if r['run'] != 'family'], SPEC, ['val']) == []


def test_table_and_files(tmp_path):
    records = family_comparison(RESULTS, SPEC, ['val'])
    table = family_table(records, ['val']).splitlines()
    assert table[0] == '| exit | alone: iterations (PMAC) | seeds | val: one run / alone, Δ (95% CI images; seeds) |'
    assert table[2].startswith('| e4 | 300 (1.000) | 2 | 28.05 / 27.95, +0.100 [')
    plan = {'family': SPEC, 'evaluate': {'datasets': ['val']}}
    assert write_family(RESULTS, plan, str(tmp_path)) == ('\n'.join(table), '')  # no control in the plan
    saved = json.load(open(osp.join(tmp_path, 'family.json')))
    assert [r['exit'] for r in saved] == [4, 8] and osp.getsize(osp.join(tmp_path, 'family.png')) > 0
    assert not osp.exists(osp.join(tmp_path, 'family_control.json'))
    assert write_family(RESULTS, {'evaluate': {'datasets': ['val']}}, str(tmp_path)) == ('', '')


# the same exits without distillation: exit 4 0.2 dB below the family run's in both seeds, exit 8 as high
CONTROL = [
    _result('family_pixel', 0, {'a': {'e4': 28.8, 'e8': 30.0, 'e32': 31.0}, 'b': {'e4': 26.8, 'e8': 28.0, 'e32': 29.0}},
            'e8', macs=4 * 10**15),
    _result('family_pixel', 1, {'a': {'e4': 29.0, 'e8': 30.2, 'e32': 31.0}, 'b': {'e4': 26.8, 'e8': 28.4, 'e32': 29.0}},
            'e8', macs=4 * 10**15),
]


def test_the_control_separates_what_distillation_adds():
    spec = dict(SPEC, control='family_pixel')
    records = control_comparison(RESULTS + CONTROL, spec, ['val'])
    assert [(r['exit'], r['control_run']) for r in records] == [(4, 'family_pixel'), (8, 'family_pixel')]
    e4, e8 = records
    assert e4['per_seed'] == pytest.approx([0.2, 0.2]) and e4['mean'] == pytest.approx(0.2)
    assert e4['family_psnr'] == pytest.approx(28.05) and e4['control_psnr'] == pytest.approx(27.85)
    assert e8['per_seed'] == pytest.approx([0.0, 0.0]) and e8['ci_seeds'] == pytest.approx([0.0, 0.0])
    assert control_comparison(RESULTS + CONTROL, SPEC, ['val']) == []  # no control named
    assert control_comparison(RESULTS, spec, ['val']) == []  # no control results yet
    table = control_table(records, ['val']).splitlines()
    assert table[0] == '| exit | seeds | val: one run / control, Δ (95% CI images; seeds) |'
    assert table[2].startswith('| e4 | 2 | 28.05 / 27.85, +0.200 [')


def test_the_control_is_written_beside_the_family(tmp_path):
    plan = {'family': dict(SPEC, control='family_pixel'), 'evaluate': {'datasets': ['val']}}
    family, control = write_family(RESULTS + CONTROL, plan, str(tmp_path))
    assert family.startswith('| exit | alone') and control.startswith('| exit | seeds | val: one run / control')
    saved = json.load(open(osp.join(tmp_path, 'family_control.json')))
    assert [r['exit'] for r in saved] == [4, 8] and saved[0]['mean'] == pytest.approx(0.2)


@pytest.mark.parametrize('spec, message', [
    ({'run': 'family', 'alone': {4: 'nope'}}, r"option `family` names \['nope'\]"),
    ({'run': 'family'}, 'option `family` must be'),
    ({'run': 'family', 'alone': {'four': 'alone4'}}, "exit depths .* got \\['four'\\]"),
    ({'run': 'family', 'alone': {4: 'alone4'}, 'control': 'nope'}, r"option `family` names \['nope'\]"),
])
def test_a_bad_family_option_is_named(spec, message):
    plan = {'family': spec, 'runs': {'family': {}, 'alone4': {}}}
    with pytest.raises(UserError, match=message):
        check_family(plan, 'plan.yml')


def test_the_plot_is_drawn_with_one_seed(tmp_path):
    one_seed = [r for r in RESULTS if r['seed'] == 0]
    records = family_comparison(one_seed, SPEC, ['val'])
    assert records and all(r['ci_seeds'] is None and len(r['per_seed']) == 1 for r in records)
    write_family(one_seed, {'family': SPEC, 'evaluate': {'datasets': ['val']}}, str(tmp_path))
    assert osp.getsize(osp.join(tmp_path, 'family.png')) > 0
