"""Carry an unfinished ablation job to the next sitting through git (protocol v2's CPU budget, docs/protocol.md).

A CPU job can take longer than a sitting, and a sitting may start on a fresh checkout: the ignored ``experiments/``
folder (training states, checkpoints) is gone then. Two small things are enough to go on:

- ``progress/<job>.json``: the validation-split scores of every checkpoint evaluated so far (every output's means and
  the per-image values), so the learning curve and the choice of the best checkpoint do not need the old files;
- ``resume/<job>/``: the latest training state with its weights, and the weights of the best checkpoint so far on the
  validation split (the one the result may report as 'best').

``tools/ablate.py ... --carry`` scores the new checkpoints of every unfinished job, writes both, and names them to
commit; the next run of the plan's command copies ``resume/<job>/`` back into ``experiments/<job>/`` when that has no
training state, and BasicSR's ``--auto_resume`` goes on from there. A finished job deletes both (its result holds
the curve). A job that starts again from iteration 0 drops its progress file: its checkpoints are new.
"""
import glob
import json
import os
import re
import shutil
from os import path as osp


def progress_path(out, job):
    return osp.join(out, 'progress', f'{job["name"]}.json')


def resume_dir(out, job):
    return osp.join(out, 'resume', job['name'])


def read_progress(out, job):
    """``{iteration: {'means': {output: metrics}, 'per_image': [[image, {output: metrics}]]}}`` (empty if none)."""
    path = progress_path(out, job)
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        return {int(it): v for it, v in json.load(f)['checkpoints'].items()}


def student_curve(progress, student):
    """``(output, [[iteration, PSNR], ...])`` of the plan's exit ``student`` in carried scores, or of the network's
    final output when it has no such exit (a plain network trained alone)."""
    means = progress[max(progress)]['means']
    output = f'e{student}' if f'e{student}' in means else list(means)[-1]
    return output, [[it, progress[it]['means'][output]['psnr']] for it in sorted(progress)]


def write_progress(out, job, progress, selected_on):
    path = progress_path(out, job)
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.part'
    with open(tmp, 'w') as f:
        json.dump({'job': job['name'], 'selected_on': selected_on,
                   'checkpoints': {str(it): progress[it] for it in sorted(progress)}}, f, indent=1)
    os.replace(tmp, path)


def latest_state(experiment_dir):
    """``(iteration, path)`` of the newest ``training_states/<iter>.state``, or None."""
    states = []
    for path in glob.glob(osp.join(experiment_dir, 'training_states', '*.state')):
        m = re.fullmatch(r'(\d+)\.state', osp.basename(path))
        if m:
            states.append((int(m.group(1)), path))
    return max(states) if states else None


def pack(out, job, experiment_dir, best_iter):
    """Replace ``resume/<job>/`` with the latest state, its weights and the best checkpoint's. Returns its files."""
    state = latest_state(experiment_dir)
    if state is None:
        return []
    iteration, state_path = state
    target = resume_dir(out, job)
    tmp = target + '.part'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    files = [state_path]
    for it in dict.fromkeys((iteration, best_iter)):
        if it is not None:
            files.append(osp.join(experiment_dir, 'models', f'net_g_{it}.pth'))
    for path in files:
        if not osp.isfile(path):
            raise RuntimeError(f'{job["name"]}: {path} is missing; cannot carry this job (rerun to train on).')
        shutil.copy2(path, tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return sorted(glob.glob(osp.join(target, '*')))


def unpack(out, job, experiment_dir):
    """Copy ``resume/<job>/`` into ``experiment_dir`` when that has no training state. Returns the iteration or None."""
    source = resume_dir(out, job)
    if latest_state(experiment_dir) is not None or not osp.isdir(source):
        return None
    for sub in ('training_states', 'models'):
        os.makedirs(osp.join(experiment_dir, sub), exist_ok=True)
    for path in glob.glob(osp.join(source, '*')):
        sub = 'training_states' if path.endswith('.state') else 'models'
        shutil.copy2(path, osp.join(experiment_dir, sub, osp.basename(path)))
    return latest_state(experiment_dir)[0]


def clear(out, job):
    """Delete a finished job's progress file and carried state."""
    shutil.rmtree(resume_dir(out, job), ignore_errors=True)
    if osp.isfile(progress_path(out, job)):
        os.remove(progress_path(out, job))
