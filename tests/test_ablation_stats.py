"""Paired per-image differences between ablation runs and their confidence intervals: hand-computed cases."""
import pytest

from srdistill.ablation.stats import (
    below_bar,
    comparison_table,
    difference_table,
    excludes_zero,
    paired_difference,
    t_interval,
)


def _result(run, seed, psnrs, budget='iterations'):
    return {'run': run, 'label': run, 'seed': seed, 'budget': budget, 'output': 'e8', 'report': True,
            'last_per_image': {'Set5': {name: {'e8': {'psnr': p}, 'e32': {'psnr': 0.0}} for name, p in psnrs.items()}}}


def test_t_interval_of_a_hand_computed_sample():
    low, high = t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, sem 1/sqrt(3), t(0.975, 2) = 4.302653
    assert (low, high) == pytest.approx((2 - 4.302653 / 3**0.5, 2 + 4.302653 / 3**0.5), rel=1e-6)
    assert t_interval([1.0]) is None


def test_paired_difference_golden_values():
    a = [_result('sd', 0, {'x': 30.2, 'y': 28.1}), _result('sd', 1, {'x': 30.4, 'y': 28.3}),
         _result('sd', 2, {'x': 30.0, 'y': 28.0})]  # seed 2 has no partner
    b = [_result('scratch', 0, {'x': 30.0, 'y': 28.0}), _result('scratch', 1, {'x': 30.1, 'y': 28.0})]
    diff = paired_difference(a, b, 'Set5')
    assert diff['seeds'] == [0, 1] and diff['images'] == 2
    # per seed: (0.2 + 0.1) / 2 = 0.15 and (0.3 + 0.3) / 2 = 0.3; per image over seeds: x 0.25, y 0.2
    assert diff['per_seed'] == pytest.approx([0.15, 0.3])
    assert diff['mean'] == pytest.approx(0.225)
    assert diff['ci_seeds'] == pytest.approx(list(t_interval([0.15, 0.3])))
    assert diff['ci_images'] == pytest.approx(list(t_interval([0.25, 0.2])))
    assert excludes_zero(diff) is False  # both intervals hold zero with two seeds and two images


def test_a_consistent_gain_excludes_zero_and_a_mixed_one_does_not():
    base = [_result('scratch', s, {'x': 30.0, 'y': 28.0, 'z': 27.0}) for s in range(3)]
    gain = [_result('m', s, {'x': 30.1 + 0.01 * s, 'y': 28.12, 'z': 27.11}) for s in range(3)]
    mixed = [_result('m', s, {'x': 30.3, 'y': 27.8, 'z': 27.0 + (0.1 if s else -0.1)}) for s in range(3)]
    assert excludes_zero(paired_difference(gain, base, 'Set5'))
    assert not excludes_zero(paired_difference(mixed, base, 'Set5'))


def test_difference_table_lists_each_run_against_the_reference():
    results = [_result('scratch', s, {'x': 30.0, 'y': 28.0}) for s in range(2)]
    results += [_result('sd', s, {'x': 30.2, 'y': 28.2}) for s in range(2)]
    lines, records = difference_table(results, ['Set5'])
    assert len(lines) == 3 and lines[2].startswith('| iterations | sd | 2 | +0.200')
    assert records[0]['mean'] == pytest.approx(0.2) and records[0]['reference'] == 'scratch'


def test_below_bar_needs_three_seeds_and_an_upper_bound_under_the_shipping_bar():
    base = [_result('scratch', s, {'x': 30.0, 'y': 28.0}) for s in range(3)]
    # per-seed set means -0.01, 0.0, +0.01: mean 0, interval over seeds 0 ± 4.302653 * 0.01 / sqrt(3) = ±0.0248
    flat = [_result('m', s, {'x': 30.0 + 0.01 * (s - 1), 'y': 28.0 + 0.01 * (s - 1)}) for s in range(3)]
    diff = paired_difference(flat, base, 'Set5')
    assert diff['ci_seeds'][1] == pytest.approx(4.302653 * 0.01 / 3**0.5, rel=1e-5)
    assert below_bar(diff) is True
    assert below_bar(paired_difference(flat[:2], base, 'Set5')) is False  # two seeds: too few to stop on
    # per-seed means +0.05, +0.15, +0.25: upper end 0.15 + 4.302653 * 0.1 / sqrt(3) = 0.398, above the bar
    wide = [_result('m', s, {'x': 30.05 + 0.1 * s, 'y': 28.05 + 0.1 * s}) for s in range(3)]
    assert below_bar(paired_difference(wide, base, 'Set5')) is False
    lines, records = difference_table(base + flat, ['Set5'])
    assert records[0]['below_bar'] is True and lines[-1].endswith(' † |')


def test_comparison_table_pairs_the_named_runs_seed_by_seed():
    results = [_result('scratch', s, {'x': 30.0, 'y': 28.0}) for s in range(2)]
    results += [_result('deep', s, {'x': 30.1 + 0.1 * s, 'y': 28.1}) for s in range(2)]
    results += [_result('deeper', s, {'x': 30.3, 'y': 28.0}) for s in range(3)]  # seed 2 has no partner
    lines, records = comparison_table(results, ['Set5'], [('deeper', 'deep'), ('deep', 'missing')])
    # deeper - deep: seed 0 (0.2 - 0.1) / 2 = +0.05, seed 1 (0.1 - 0.1) / 2 = 0.0; mean +0.025
    assert len(lines) == 3 and lines[2].startswith('| iterations | deeper − deep | 2 | +0.025')
    assert len(records) == 1 and records[0]['reference'] == 'deep' and records[0]['seeds'] == [0, 1]
    assert records[0]['per_seed'] == pytest.approx([0.05, 0.0])
    assert comparison_table(results, ['Set5'], []) == (lines[:2], [])
