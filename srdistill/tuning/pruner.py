"""Stop a tuning trial early when its validation curve trails the finished trials' (``pruner:`` of a tuning file).

A trial reports the student's PSNR on the validation split at each checkpoint (``trial.report``); the pruner compares
it with the curves the finished trials stored (their ``curve`` user attribute, which every trial of
``tools/tune.py`` has, also those finished before pruning was turned on: Optuna's own ``MedianPruner`` reads only
reported intermediate values, so a study begun without pruning would not prune until new trials finished). Any Optuna
pruner may be named instead (``type: MedianPruner``, ...): :func:`make_pruner`.
"""
import math

import optuna
from optuna.trial import TrialState

from srdistill.utils.errors import UserError


def _percentile(values, q):
    """The ``q``-th percentile of ``values`` with linear interpolation (numpy's default)."""
    values = sorted(values)
    pos = (len(values) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def finished_curves(study):
    """``{job: {iteration: psnr}}`` of the study's complete trials (a job run twice, e.g. a redrawn trial, once)."""
    curves = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, )):
        if t.user_attrs.get('curve'):
            curves[t.user_attrs.get('job', t.number)] = {int(it): psnr for it, psnr in t.user_attrs['curve']}
    return curves


def should_stop(value, step, curves, percentile=50.0, n_startup_trials=3, n_warmup_steps=0):
    """True when ``value`` at ``step`` is below the ``percentile`` of the finished curves' values at that step.

    Never before ``n_warmup_steps``, nor with fewer than ``n_startup_trials`` finished curves that reach ``step``.
    """
    if step < n_warmup_steps:
        return False
    others = [c[step] for c in curves.values() if step in c]
    if len(others) < max(1, n_startup_trials):
        return False
    return value < _percentile(others, percentile)


class StoredCurvesPruner(optuna.pruners.BasePruner):
    """Prune a maximised trial whose last reported value is below the ``percentile`` of the finished trials' stored
    curves at that step (:func:`should_stop`)."""

    def __init__(self, percentile=50.0, n_startup_trials=3, n_warmup_steps=0):
        if not 0 <= percentile <= 100:
            raise ValueError(f'percentile must be in [0, 100], got {percentile}')
        self.percentile, self.n_startup_trials, self.n_warmup_steps = percentile, n_startup_trials, n_warmup_steps

    def prune(self, study, trial):
        step = trial.last_step
        if step is None:
            return False
        return should_stop(trial.intermediate_values[step], step, finished_curves(study), self.percentile,
                           self.n_startup_trials, self.n_warmup_steps)


def make_pruner(spec, where):
    """The pruner of a tuning file's ``pruner`` mapping (``type`` plus its arguments), or Optuna's NopPruner."""
    if not spec:
        return optuna.pruners.NopPruner()
    if not isinstance(spec, dict) or 'type' not in spec:
        raise UserError(f'{where}: option `pruner` needs a `type` (StoredCurvesPruner, or an Optuna pruner such as '
                        'MedianPruner), e.g. {type: StoredCurvesPruner, n_startup_trials: 3, n_warmup_steps: 1000}.')
    spec = dict(spec)
    kind = spec.pop('type')
    cls = StoredCurvesPruner if kind == 'StoredCurvesPruner' else getattr(optuna.pruners, kind, None)
    if cls is None:
        raise UserError(f'{where}: pruner type {kind!r} is neither StoredCurvesPruner nor an Optuna pruner.')
    try:
        return cls(**spec)
    except (TypeError, ValueError) as err:
        raise UserError(f'{where}: option `pruner`: {err}') from None
