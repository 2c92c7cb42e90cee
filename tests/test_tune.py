"""tools/tune.py: an Optuna study over switches, floats and categorical choices, trained for real (tiny network, real
image crops), scored on a validation split only, stored on disk and resumed."""
import csv
import json
import os
import shutil

import optuna
import pytest
import yaml
from conftest import make_paired_folder, write_opt

from srdistill.ablation.plan import run_options
from srdistill.ablation.runner import AblationRunner, TrainingStopped
from srdistill.tuning.pruner import should_stop
from srdistill.tuning.study import (
    load_tune_plan,
    open_study,
    run_fragment,
    runner_plan,
    trial_job,
    trial_name,
    trial_options,
)
from srdistill.tuning.tune_cli import main
from srdistill.utils.errors import UserError


@pytest.fixture
def tune_file(tiny_opt, tmp_path):
    tiny_opt['network_g'].update(num_feat=8, num_block=4, exits=[2])
    base = write_opt(tmp_path / 'base.yml', tiny_opt)
    root = tmp_path / 'datasets'
    make_paired_folder(str(root / 'tiny_val'), n=2, size=48, seed=9)
    os.makedirs(root / 'tiny_val' / 'LR_bicubic')
    os.rename(root / 'tiny_val' / 'LR', root / 'tiny_val' / 'LR_bicubic' / 'X4')
    plan = {
        'name': 'tiny_tune', 'base': base, 'iterations': 4, 'val_freq': 2, 'student': 2, 'select_on': 'tiny_val',
        'dataroot': str(root), 'seed': 0, 'sampler': {'type': 'RandomSampler', 'seed': 0},
        'switches': {'contrast': {'train': {'contrast_opt': {'type': 'ContrastiveDistillLoss'}}}},
        'space': {
            'train.pixel_opt.distill_weight': {'type': 'float', 'low': 0.0, 'high': 0.5},
            'network_g.exits': {'type': 'categorical', 'choices': [[2], [1, 2]]},
            'train.contrast_opt.loss_weight': {'type': 'float', 'low': 0.01, 'high': 1.0, 'log': True,
                                               'when': 'contrast'},
        },
    }
    path = tmp_path / 'tune.yml'
    path.write_text(yaml.safe_dump(plan))
    return str(path)


def test_study_runs_resumes_and_writes_its_summary(tune_file, tmp_path):
    out = str(tmp_path / 'study')
    assert main(['-opt', tune_file, '--trials', '2', '--out', out]) == 0
    study = optuna.load_study(study_name='tiny_tune', storage=f'sqlite:///{out}/study.db')
    done = [t for t in study.trials if t.state.name == 'COMPLETE']
    assert len(done) == 2
    for t in done:  # each objective is the student's best PSNR on the validation split, from its result file
        with open(os.path.join(out, 'results', f'{t.user_attrs["job"]}.json')) as f:
            result = json.load(f)
        assert result['selected_on'] == 'tiny_val' and list(result['last']) == ['tiny_val']
        assert t.value == pytest.approx(max(p for _, p in result['curve']))
        assert 10 < t.value < 40  # a 4-iteration tiny network on real photos: near bicubic, not garbage
    rows = list(csv.DictReader(open(os.path.join(out, 'trials.csv'))))
    assert [r['state'] for r in rows] == ['COMPLETE', 'COMPLETE']
    with open(os.path.join(out, 'trials.png'), 'rb') as f:  # the curves and results at a glance
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    best = json.load(open(os.path.join(out, 'best.json')))
    assert best['psnr'] == pytest.approx(max(t.value for t in done))
    # best_run.yml: the best trial as an ablation run, which trains with exactly the trial's options
    plan = load_tune_plan(tune_file)
    tuned = yaml.safe_load(open(os.path.join(out, 'best_run.yml')))['tuned']
    trial = next(t for t in done if t.number == best['number'])
    assert tuned['label'] == f'tuned: trial {best["number"]} of tiny_tune'
    assert tuned['train']['pixel_opt']['distill_weight'] == trial.params['train.pixel_opt.distill_weight']
    assert tuned['network_g']['exits'] == [[2], [1, 2]][trial.params['network_g.exits']]
    ablation = dict(plan, runs={'tuned': tuned})
    assert run_options(ablation, 'tuned') == trial_options(plan, trial.user_attrs['values'])
    # a rerun asking for 3 keeps the 2 and adds one
    assert main(['-opt', tune_file, '--trials', '3', '--out', out]) == 0
    study = optuna.load_study(study_name='tiny_tune', storage=f'sqlite:///{out}/study.db')
    assert len([t for t in study.trials if t.state.name == 'COMPLETE']) == 3


def test_an_interrupted_trial_is_queued_again_with_its_parameters(tune_file, tmp_path):
    out = str(tmp_path / 'study')
    plan = load_tune_plan(tune_file)
    study = open_study(plan, out)
    trial = study.ask()  # left RUNNING, as by a killed tuner
    trial.suggest_categorical('switch.contrast', [False, True])
    trial.suggest_float('train.pixel_opt.distill_weight', 0.0, 0.5)
    trial.suggest_categorical('network_g.exits', [0, 1])
    params = dict(trial.params)
    study = open_study(plan, out)
    states = [t.state.name for t in study.trials]
    assert states == ['FAIL', 'WAITING']
    assert study.trials[1].params == {} and study.trials[1].user_attrs['resumes'] == 0
    assert main(['-opt', tune_file, '--trials', '1', '--out', out]) == 0
    study = optuna.load_study(study_name='tiny_tune', storage=f'sqlite:///{out}/study.db')
    resumed = study.trials[1]  # the queued values are used (a real trial has drawn all of its values at its start)
    assert resumed.state.name == 'COMPLETE' and {k: resumed.params[k] for k in params} == params


def test_trial_options_merge_switches_and_dotted_parameters(tune_file):
    plan = load_tune_plan(tune_file)
    values = {'switch.contrast': True, 'train.pixel_opt.distill_weight': 0.3, 'network_g.exits': [1, 2],
              'train.contrast_opt.loss_weight': 0.05}
    opt = trial_options(plan, values)
    assert opt['train']['contrast_opt'] == {'type': 'ContrastiveDistillLoss', 'loss_weight': 0.05}
    assert run_fragment(plan, values) == {'train': {'contrast_opt': {'type': 'ContrastiveDistillLoss',
                                                                     'loss_weight': 0.05},
                                                    'pixel_opt': {'distill_weight': 0.3}},
                                          'network_g': {'exits': [1, 2]}}
    assert opt['train']['pixel_opt']['distill_weight'] == 0.3 and opt['network_g']['exits'] == [1, 2]
    assert 'contrast_opt' not in trial_options(plan, {'switch.contrast': False})['train']
    assert trial_name(values) == trial_name(dict(reversed(list(values.items()))))


def test_test_sets_and_bad_spaces_are_refused(tune_file, tmp_path):
    plan = yaml.safe_load(open(tune_file))
    for change, message in (({'select_on': 'Set5'}, 'is a test set'),
                            ({'space': {'x.y': {'type': 'float', 'low': 1, 'high': 0}}}, 'low'),
                            ({'space': {'x.y': {'type': 'float', 'low': 0, 'high': 1, 'when': 'nope'}}}, 'switches'),
                            ({'space': {}, 'switches': {}}, 'nothing to tune')):
        bad = tmp_path / 'bad.yml'
        bad.write_text(yaml.safe_dump(dict(plan, **change)))
        with pytest.raises(UserError, match=message):
            load_tune_plan(str(bad))


def test_enqueued_reference_trials_run_first_with_their_values(tune_file, tmp_path):
    plan = yaml.safe_load(open(tune_file))
    plan['enqueue'] = [{'train.pixel_opt.distill_weight': 0.1, 'network_g.exits': [1, 2]}]
    path = tmp_path / 'enqueue.yml'
    path.write_text(yaml.safe_dump(plan))
    out = str(tmp_path / 'study')
    assert main(['-opt', str(path), '--trials', '1', '--out', out]) == 0
    study = optuna.load_study(study_name='tiny_tune', storage=f'sqlite:///{out}/study.db')
    first = study.trials[0]
    assert first.state.name == 'COMPLETE' and first.user_attrs['enqueued'] is True
    assert first.params == {'switch.contrast': False, 'train.pixel_opt.distill_weight': 0.1, 'network_g.exits': 1}
    assert first.user_attrs['values']['network_g.exits'] == [1, 2]
    # reopening the study (a rerun) does not queue the reference again
    open_study(load_tune_plan(str(path)), out)
    assert [t.state.name for t in optuna.load_study(study_name='tiny_tune',
                                                   storage=f'sqlite:///{out}/study.db').trials] == ['COMPLETE']


@pytest.mark.parametrize('entry, message', [
    ({'train.nope': 1.0}, r"enqueue\[0\]: 'train.nope' is neither a parameter"),
    ({'network_g.exits': [3]}, r'enqueue\[0\]: network_g.exits = \[3\] is not one of its choices'),
    ({'train.pixel_opt.distill_weight': 0.9}, r'enqueue\[0\]: train.pixel_opt.distill_weight = 0.9 is outside'),
    ({'train.contrast_opt.loss_weight': 0.1}, r'drawn only when switch.contrast is on'),
    ({'train.pixel_opt.distill_weight': 'high'}, r"distill_weight = 'high' is not a number"),
])
def test_bad_enqueued_trials_are_named(tune_file, tmp_path, entry, message):
    plan = yaml.safe_load(open(tune_file))
    plan['enqueue'] = [entry]
    path = tmp_path / 'bad.yml'
    path.write_text(yaml.safe_dump(plan))
    with pytest.raises(UserError, match=message):
        load_tune_plan(str(path))


def test_the_baseline_trains_once_and_every_trial_is_read_against_it(tune_file, tmp_path):
    plan = yaml.safe_load(open(tune_file))
    plan['baseline'] = {'label': 'the 2-block network alone', 'network_g': {'num_block': 2, 'exits': []},
                        'train': {'pixel_opt': {'distill_weight': 0}}}
    path = tmp_path / 'baseline.yml'
    path.write_text(yaml.safe_dump(plan))
    out = str(tmp_path / 'study')
    assert main(['-opt', str(path), '--trials', '1', '--out', out]) == 0
    with open(os.path.join(out, 'results', 'baseline.json')) as f:
        baseline = json.load(f)
    assert baseline['label'] == 'the 2-block network alone' and baseline['iterations'] == 4
    with open(os.path.join(out, 'options', 'baseline.yml')) as f:
        opt = yaml.safe_load(f)
    assert opt['network_g']['num_block'] == 2 and opt['network_g']['exits'] == []  # its own options, not a trial's
    base = max(p for _, p in baseline['curve'])
    assert 10 < base < 40
    best = json.load(open(os.path.join(out, 'best.json')))
    assert best['baseline_psnr'] == pytest.approx(base)
    assert best['gap_to_baseline'] == pytest.approx(best['psnr'] - base)
    row = next(csv.DictReader(open(os.path.join(out, 'trials.csv'))))
    assert float(row['gap_to_baseline']) == pytest.approx(float(row['psnr']) - base, abs=2e-4)
    # a rerun does not train it again
    mtime = os.path.getmtime(os.path.join(out, 'results', 'baseline.json'))
    assert main(['-opt', str(path), '--trials', '2', '--out', out]) == 0
    assert os.path.getmtime(os.path.join(out, 'results', 'baseline.json')) == mtime


def test_a_baseline_that_is_not_a_mapping_is_named(tune_file, tmp_path):
    plan = yaml.safe_load(open(tune_file))
    plan['baseline'] = 'scratch'
    path = tmp_path / 'bad.yml'
    path.write_text(yaml.safe_dump(plan))
    with pytest.raises(UserError, match=r'bad.yml: option `baseline` must be an options fragment'):
        load_tune_plan(str(path))


def test_a_resumed_study_does_not_draw_its_first_trials_again(tune_file, tmp_path):
    out = str(tmp_path / 'study')
    plan = load_tune_plan(tune_file)
    study = open_study(plan, out)
    first = study.ask()  # a seeded sampler's first draw, finished
    first.suggest_float('train.pixel_opt.distill_weight', 0.0, 0.5)
    study.tell(first, 20.0)
    study = open_study(plan, out)  # a rerun: the same seed in the file, one trial in the study
    again = study.ask()
    assert again.suggest_float('train.pixel_opt.distill_weight', 0.0, 0.5) != first.params[
        'train.pixel_opt.distill_weight']


def test_the_pruning_rule_against_the_stored_curves():
    curves = {'a': {500: 26.4, 1000: 26.7, 1500: 26.9}, 'b': {500: 26.2, 1000: 26.5}, 'c': {1000: 26.6}}
    # at 1000: median of 26.7, 26.5, 26.6 is 26.6
    assert should_stop(26.59, 1000, curves) and not should_stop(26.6, 1000, curves)
    assert not should_stop(20.0, 500, curves, n_warmup_steps=1000)  # not before the warm-up
    assert not should_stop(20.0, 500, curves)  # only 2 finished curves reach 500 (n_startup_trials 3)
    assert should_stop(26.29, 500, curves, n_startup_trials=2)  # median of 26.4 and 26.2: 26.3
    assert not should_stop(26.31, 500, curves, n_startup_trials=2)
    assert should_stop(26.69, 1000, curves, percentile=100) and not should_stop(26.51, 1000, curves, percentile=0)
    assert should_stop(26.64, 1000, curves, percentile=75)  # 26.6 + 0.5 * (26.7 - 26.6) = 26.65


def test_bad_pruners_are_named_before_anything_trains(tune_file, tmp_path):
    plan = yaml.safe_load(open(tune_file))
    for pruner, message in (({'type': 'Nope'}, "pruner type 'Nope' is neither"),
                            ({'n_warmup_steps': 3}, 'needs a `type`'),
                            ({'type': 'StoredCurvesPruner', 'percentile': 150}, r'percentile must be in \[0, 100\]'),
                            ({'type': 'MedianPruner', 'warmup': 3}, 'option `pruner`')):
        bad = tmp_path / 'bad.yml'
        bad.write_text(yaml.safe_dump(dict(plan, pruner=pruner)))
        with pytest.raises(UserError, match=message):
            load_tune_plan(str(bad))


def test_a_pruned_trial_stops_its_training_and_the_study_goes_on(tune_file, tmp_path, monkeypatch):
    plan = yaml.safe_load(open(tune_file))
    plan.update(iterations=100, val_freq=5, pruner={'type': 'StoredCurvesPruner', 'n_startup_trials': 1})
    path = tmp_path / 'pruned.yml'
    path.write_text(yaml.safe_dump(plan))
    monkeypatch.setattr(AblationRunner, 'poll_s', 0.2)
    # trial 1 is pruned at its first checkpoint, whatever its value (the rule itself: the test above)
    monkeypatch.setattr(optuna.trial.Trial, 'should_prune', lambda self: self.number == 1)
    out = str(tmp_path / 'study')
    assert main(['-opt', str(path), '--trials', '2', '--out', out]) == 0
    study = optuna.load_study(study_name='tiny_tune', storage=f'sqlite:///{out}/study.db')
    first, pruned = study.trials
    assert first.state.name == 'COMPLETE' and pruned.state.name == 'PRUNED'
    # every checkpoint of a complete trial is reported, with the values of its result's curve
    assert first.intermediate_values == {it: pytest.approx(p) for it, p in first.user_attrs['curve']}
    assert sorted(first.intermediate_values) == list(range(5, 101, 5))
    job = pruned.user_attrs['job']
    assert pruned.user_attrs['pruned_at'][0] == 5 and pruned.intermediate_values == {5: pruned.user_attrs[
        'pruned_at'][1]}
    assert not os.path.exists(os.path.join(out, 'results', f'{job}.json'))
    # (that the training process itself stops, long before its end: the runner test below; here the few tiny
    # iterations left after checkpoint 5 may end while that checkpoint is scored)
    with open(os.path.join(out, 'logs', f'{job}.log')) as f:
        assert 'training stopped at iteration 5' in f.read()
    with open(os.path.join(out, 'progress', f'{job}.json')) as f:  # its checkpoint's scores are kept
        assert '5' in json.load(f)['checkpoints']
    rows = list(csv.DictReader(open(os.path.join(out, 'trials.csv'))))
    assert rows[1]['state'] == 'PRUNED' and rows[1]['pruned_at'] == '5' and rows[1]['psnr'] == ''
    assert float(rows[1]['pruned_psnr']) == pytest.approx(pruned.user_attrs['pruned_at'][1], abs=1e-4)
    # a rerun counts the pruned trial as finished
    assert main(['-opt', str(path), '--trials', '2', '--out', out]) == 0
    assert len(optuna.load_study(study_name='tiny_tune', storage=f'sqlite:///{out}/study.db').trials) == 2


def test_an_unfinished_trial_is_carried_to_a_fresh_checkout(tune_file, tmp_path, capsys):
    """--carry packs the state of a trial left RUNNING; a checkout without experiments/ resumes that trial from it."""
    out = str(tmp_path / 'study')
    assert main(['-opt', tune_file, '--trials', '1', '--out', out]) == 0
    capsys.readouterr()
    study = optuna.load_study(study_name='tiny_tune', storage=f'sqlite:///{out}/study.db')
    values, job = study.trials[0].user_attrs['values'], study.trials[0].user_attrs['job']
    # make its training an interrupted one: result, last weights and last state gone, the state of iteration 2 left
    exp = os.path.join(out, 'experiments', job)
    os.remove(os.path.join(out, 'results', f'{job}.json'))
    for name in ('models/net_g_latest.pth', 'models/net_g_4.pth', 'training_states/4.state'):
        if os.path.exists(os.path.join(exp, name)):
            os.remove(os.path.join(exp, name))
    # a tuner killed in the middle of a trial with the same parameters (so the same training folder)
    study.enqueue_trial(study.trials[0].params)
    running = study.ask(fixed_distributions=study.trials[0].distributions)
    running.set_user_attr('values', values)
    assert main(['-opt', tune_file, '--out', out, '--carry']) == 0
    printed = capsys.readouterr().out
    assert sorted(os.listdir(os.path.join(out, 'resume', job))) == ['2.state', 'net_g_2.pth']
    assert 'git add ' in printed and 'study.db' in printed and f'progress/{job}.json' in printed
    assert [t.state.name for t in study.trials] == ['COMPLETE', 'RUNNING']  # --carry only reads the study

    shutil.rmtree(os.path.join(out, 'experiments'))  # a fresh checkout: only what git carried is left
    assert main(['-opt', tune_file, '--trials', '2', '--out', out]) == 0
    assert 'resuming from the state carried at iteration 2' in capsys.readouterr().out
    study = optuna.load_study(study_name='tiny_tune', storage=f'sqlite:///{out}/study.db')
    assert [t.state.name for t in study.trials] == ['COMPLETE', 'FAIL', 'COMPLETE']
    assert study.trials[2].user_attrs['job'] == job and study.trials[2].user_attrs['resumes'] == 1
    assert not os.path.exists(os.path.join(out, 'resume', job))  # used, then cleared
    assert main(['-opt', tune_file, '--out', out, '--carry']) == 0
    assert 'nothing to carry' in capsys.readouterr().out


def test_carry_without_a_study_is_named(tune_file, tmp_path):
    with pytest.raises(UserError, match='no study.db here'):
        main(['-opt', tune_file, '--out', str(tmp_path / 'nowhere'), '--carry'])


def test_the_runner_stops_a_training_when_its_caller_asks(tune_file, tmp_path, monkeypatch):
    """run_job(job, on_checkpoint): each periodic checkpoint is passed while training runs; True stops the process."""
    plan = dict(load_tune_plan(tune_file), iterations=5000, val_freq=5)  # minutes of tiny training if not stopped
    monkeypatch.setattr(AblationRunner, 'poll_s', 0.2)
    out = str(tmp_path / 'runs')
    runner = AblationRunner(runner_plan(plan), [], out)
    job = trial_job(plan, {'train.pixel_opt.distill_weight': 0.1, 'network_g.exits': [2]})
    seen = []
    with pytest.raises(TrainingStopped) as stop:
        runner.run_job(job, lambda it, path: seen.append((it, os.path.isfile(path))) or it >= 10)
    assert stop.value.iteration == 10 and seen == [(5, True), (10, True)]
    # finished states only: a save that the stop cut short leaves a hidden partial file (srdistill/utils/partial_files)
    states = [s for s in os.listdir(os.path.join(out, 'experiments', job['name'], 'training_states'))
              if not s.startswith('.')]
    assert max(int(s.split('.')[0]) for s in states) < 5000  # the process was stopped, not run to its end
    assert not os.path.exists(runner.result_path(job))
    with open(os.path.join(out, 'logs', f'{job["name"]}.log')) as f:
        assert 'training stopped at iteration 10' in f.read()


def test_trials_plot_records_golden_and_png(tmp_path):
    """trial_records keeps finished and pruned trials (a pruned one's curve from its reports), names the switches on;
    plot_trials writes a real PNG, with and without a baseline."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    from srdistill.tuning.plot import plot_trials, trial_records
    switch = {'switch.upcycle': CategoricalDistribution([False, True]),
              'switch.contrast': CategoricalDistribution([False, True])}
    trials = [create_trial(state=TrialState.COMPLETE, value=26.9, params={'switch.upcycle': False,
                                                                          'switch.contrast': False},
                           distributions=switch, user_attrs={'curve': [[500, 26.5], [1000, 26.9]]}),
              create_trial(state=TrialState.PRUNED, params={'switch.upcycle': True, 'switch.contrast': True},
                           distributions=switch, intermediate_values={500: 25.0}),
              create_trial(state=TrialState.RUNNING, params={}, distributions={})]
    for i, t in enumerate(trials):
        t.number = i
    records = trial_records(trials, ['upcycle', 'contrast'])
    assert records == [dict(number=0, state='COMPLETE', value=26.9, curve=[[500, 26.5], [1000, 26.9]],
                            methods='no extra method'),
                       dict(number=1, state='PRUNED', value=None, curve=[[500, 25.0]], methods='upcycle+contrast')]
    for baseline in ([[500, 26.4], [1000, 26.85]], None):
        path = plot_trials(records, str(tmp_path / 'trials.png'), baseline, 'tiny')
        with open(path, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
        import matplotlib.image
        assert matplotlib.image.imread(path).shape[:2] == (462, 1210)  # 11 x 4.2 inches at 110 dpi
