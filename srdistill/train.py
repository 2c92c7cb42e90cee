"""Training entry point: BasicSR's ``train_pipeline`` with srdistill's components and up-front option checks."""
import argparse
import sys

from srdistill import compat
from srdistill.models.train_options import check_train_options
from srdistill.utils.errors import UserError, report_errors


def train_pipeline(root_path):
    """Run BasicSR's training pipeline (same arguments: ``-opt``, ``--launcher``, ``--auto_resume``, ``--debug``,
    ``--force_yml``), checking the options and data before anything is written under ``root_path``.

    Args:
        root_path (str): Project root; experiments go to ``<root_path>/experiments/<name>``.

    Raises:
        UserError: A bad option or dataset, with a message naming it.
    """
    compat.apply()
    import basicsr.train as basicsr_train

    sys.argv = compat.normalize_argv(sys.argv)
    parse_options = basicsr_train.parse_options

    def parse_and_check(root_path, is_train=True):
        forced = _force_yml(sys.argv)
        try:
            opt, args = parse_options(root_path, is_train=is_train)
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            _explain_parse_error(err, forced)
            raise
        check_train_options(opt, args.opt, forced)
        return opt, args

    basicsr_train.parse_options = parse_and_check
    try:
        basicsr_train.train_pipeline(root_path)
    finally:
        basicsr_train.parse_options = parse_options
    _destroy_process_group()


def _destroy_process_group():
    """End a distributed run's process group once training has returned (BasicSR leaves it to interpreter exit).

    By then the model, whose DDP wrapper holds the group, is gone with ``train_pipeline``'s frame. Left to the
    interpreter's exit, the group is torn down in whatever order remains: the 2-process test's probe, which ended that
    way, had a Gloo rank abort after finishing ("terminate called without an active exception") in about 1 run in
    10, and none in 30 once it released the model and destroyed the group itself.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _opt_arg():
    argv = sys.argv
    return argv[argv.index('-opt') + 1] if '-opt' in argv and argv.index('-opt') + 1 < len(argv) else 'options'


def _force_yml(argv):
    """``[(key path, entry)]`` of the ``--force_yml`` entries (``('train.ema_decay', 'train:ema_decay=0.9')``), so that
    a message about a key set on the command line names the entry. A malformed entry is left out here:
    :func:`srdistill.compat.check_force_yml` refuses it as BasicSR's parser is called."""
    parser = argparse.ArgumentParser(add_help=False)  # the same option as basicsr.utils.options.parse_options
    parser.add_argument('--force_yml', nargs='+', default=None)
    entries = parser.parse_known_args(argv[1:])[0].force_yml or []
    return [('.'.join(k.strip() for k in e.partition('=')[0].split(':')), e) for e in entries if '=' in e]


def _explain_parse_error(err, forced):
    """Raise a :class:`UserError` for what made BasicSR's ``parse_options`` fail, when the file or ``--force_yml``
    explains it; else return.

    ``parse_options`` reads some options itself before any check can run: ``opt['num_gpu']`` (a ``KeyError`` for a
    misspelled one), ``opt['path'].items()`` (an ``AttributeError`` when it is not a mapping), the seed
    (``ValueError`` for ``manual_seed: -1``), ``--force_yml``'s sections. The file is then checked as written.
    """
    import yaml

    opt_path = _opt_arg()
    try:
        with open(opt_path) as f:
            raw = yaml.safe_load(f)  # parse_options has read it already: no new error here but a refused tag
    except (OSError, yaml.YAMLError):
        return
    if isinstance(err, KeyError):
        for path, entry in forced:
            parts = path.split('.')
            section = raw
            for i, part in enumerate(parts[:-1]):
                section = section.get(part) if isinstance(section, dict) else None
                if not isinstance(section, dict):
                    raise UserError(f'{opt_path} (with --force_yml {entry}): the options have no section '
                                    f'`{".".join(parts[:i + 1])}`; --force_yml sets a key of an existing section.')
    if isinstance(raw, dict):
        check_train_options(raw, opt_path)
    if isinstance(err, KeyError):
        raise UserError(f'{opt_path}: required option {err} is missing.') from None


def main(root_path):
    """``tools/train.py``: train, printing a :class:`UserError` as one line (no traceback) and exiting with 2."""
    status = report_errors(train_pipeline, root_path)
    if status:
        sys.exit(status)
