"""Training entry point: BasicSR's ``train_pipeline`` with srdistill's components and up-front option checks."""
import sys

from srdistill import compat
from srdistill.utils.errors import UserError, report_errors
from srdistill.utils.options import check_train_options


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
        try:
            opt, args = parse_options(root_path, is_train=is_train)
        except KeyError as err:
            raise UserError(f'{_opt_arg()}: required option {err} is missing.') from None
        check_train_options(opt, args.opt)
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


def main(root_path):
    """``tools/train.py``: train, printing a :class:`UserError` as one line (no traceback) and exiting with 2."""
    status = report_errors(train_pipeline, root_path)
    if status:
        sys.exit(status)
