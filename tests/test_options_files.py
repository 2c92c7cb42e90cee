"""Every shipped training options file passes the up-front checks up to its data (network, losses, switches)."""
import sys
from os import path as osp

import pytest
from conftest import REPO

from srdistill.train import main

# file -> (missing training folder, what the message says to do)
TRAINING_FILES = {
    'sd_x4.yml': ('datasets/DIV2K/HR_sub', 'DIV2K is not prepared'),
    'sd_x4_r50.yml': ('datasets/DIV2K/HR_sub', 'DIV2K is not prepared'),
    'sd_x4_r100.yml': ('datasets/DIV2K/HR_sub', 'DIV2K is not prepared'),
    'baseline_srresnet8_x4.yml': ('datasets/DIV2K/HR_sub', 'DIV2K is not prepared'),
    'sd_x4_291.yml': ('datasets/291/HR_npy', '--npy'),
    'baseline_srresnet8_x4_291.yml': ('datasets/291/HR_npy', '--npy'),
    'sd_x4_291_png.yml': ('datasets/291/HR', 'tools/prepare_data.py folder'),
    'edsr_baseline_sd_x4.yml': ('datasets/DIV2K/HR_sub', 'DIV2K is not prepared'),
    'edsr_sd_x4.yml': ('datasets/DIV2K/HR_sub', 'DIV2K is not prepared'),
}



def _shipped(kind):
    """Shipped options files of one kind: ``plan`` (ablation: base + runs), ``tune`` (base + space), ``train``."""
    import glob

    import yaml
    found = []
    for path in sorted(glob.glob(osp.join(REPO, 'options', '*.yml'))):
        with open(path) as f:
            opt = yaml.safe_load(f)
        is_kind = {'plan': 'runs' in opt, 'tune': 'space' in opt, 'train': 'model_type' in opt}[kind]
        found += [osp.basename(path)] if is_kind else []
    return found


ABLATION_PLANS = _shipped('plan')
TUNING_PLANS = _shipped('tune')


def test_every_training_options_file_is_listed():
    # the demo prepares its data; test options are not training files
    assert set(_shipped('train')) - {'demo_x4.yml', 'test_sd_x4.yml'} == set(TRAINING_FILES)
    assert {'ablation_291.yml', 'protocol_v2_cpu.yml'} <= set(ABLATION_PLANS) and 'tune_291.yml' in TUNING_PLANS


@pytest.mark.parametrize('name', sorted(TRAINING_FILES))
def test_checks_pass_up_to_the_missing_data(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no datasets/ here
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', osp.join(REPO, 'options', name)])
    with pytest.raises(SystemExit) as exc:
        main(str(tmp_path))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    folder, hint = TRAINING_FILES[name]
    assert f'datasets.train.dataroot_gt: folder {folder} does not exist.' in err and hint in err, err
    assert not (tmp_path / 'experiments').exists()


def test_the_demo_options_pass_the_key_and_value_checks():
    import yaml

    from srdistill.utils.option_keys import check_option_keys
    from srdistill.utils.option_values import check_values
    with open(osp.join(REPO, 'options', 'demo_x4.yml')) as f:
        opt = yaml.safe_load(f)
    check_option_keys(opt, 'demo_x4.yml')
    check_values(opt, 'demo_x4.yml', opt['scale'])


@pytest.mark.parametrize('name', ABLATION_PLANS)
def test_every_ablation_run_passes_the_key_and_value_checks(name, monkeypatch):
    """Each run's complete options (base + overrides + the run's keys + what the runner sets) as the runner writes
    them for tools/train.py."""
    from srdistill.ablation.plan import load_plan, run_options, training_options
    from srdistill.utils.option_keys import check_option_keys
    from srdistill.utils.option_values import check_values
    monkeypatch.chdir(REPO)  # a plan names its base file relative to the repository
    plan = load_plan(osp.join('options', name))
    sources = {run: {'inherit': 'inherit.pth', 'latest': 'latest.pth', 'network_g': run_options(plan, run)['network_g']}
               for run in plan['runs']}
    for run, run_opt in plan['runs'].items():
        source = {k: run_opt.get(k) for k in ('init_from', 'teacher_from')}
        source['init_from'] = (source['init_from'] or {}).get('run')
        job = dict(name=run, seed=0, iterations=100, opt=run_options(plan, run), **source)
        opt = training_options(plan, job, sources)
        check_option_keys(opt, f'{name}: {run}')
        check_values(opt, f'{name}: {run}', opt['scale'])


@pytest.mark.parametrize('name', TUNING_PLANS)
def test_a_tuning_trial_with_every_switch_passes_the_key_and_value_checks(name, monkeypatch):
    from srdistill.tuning.study import load_tune_plan, trial_options
    from srdistill.utils.option_keys import check_option_keys
    from srdistill.utils.option_values import check_values
    monkeypatch.chdir(REPO)
    plan = load_tune_plan(osp.join('options', name))
    values = {f'switch.{s}': True for s in plan['switches']}
    for key, param in plan['space'].items():
        values[key] = param['choices'][-1] if 'choices' in param else param['high']
    opt = trial_options(plan, values)
    check_option_keys(opt, name)
    check_values(opt, name, opt['scale'])
