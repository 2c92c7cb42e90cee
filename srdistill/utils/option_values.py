"""Option values that BasicSR takes without a look and fails on later: numbers that YAML read as text, counts that
are not counts, a training patch that the scale does not divide.

Each of these is a traceback from BasicSR once the experiment folder exists (``total_iter: abc`` in
``int()``, ``lr: 2e-4`` in Adam's ``0.0 <= lr``, ``batch_size_per_gpu: 0`` in the data loader) or, for ``gt_size: 30``
at x4, at the first iteration; here each is one message before anything is written.
"""
import numbers
import re

from srdistill.utils.errors import UserError
from srdistill.utils.option_keys import OPTIMIZERS, SCHEDULERS, parameters

# What YAML 1.1 (PyYAML, BasicSR's loader) reads as a string and YAML 1.2 as a number: e-notation without a dot
E_NOTATION = re.compile(r'[-+]?(\d+|\d*\.\d*)[eE][-+]?\d+')
TEXT_KEYS = {'name', 'suffix'}  # free text: an experiment may well be called 1e4

INTEGER = 'an integer'  # an int (a data loader or a crop computes with it)
COUNT = 'a whole number'  # an int, or a float with an integral value (BasicSR int()s it: `total_iter: !!float 1e6`)
NUMBER = 'a number'
POSITIVE = 'a number > 0'  # the smallest value is excluded

# key path ('*' is any dataset phase) -> (kind, smallest value, also allowed)
RULES = {
    'manual_seed': (INTEGER, 0, None),  # numpy's seed must be >= 0
    'num_gpu': (INTEGER, 0, 'auto'),
    'train.total_iter': (COUNT, 1, None),
    'train.warmup_iter': (COUNT, -1, None),
    'train.optim_g.lr': (NUMBER, 0, None),
    'logger.print_freq': (NUMBER, 1, None),
    'logger.save_checkpoint_freq': (NUMBER, 1, None),
    'val.val_freq': (NUMBER, 1, None),
    'datasets.train.batch_size_per_gpu': (INTEGER, 1, None),
    'datasets.*.num_worker_per_gpu': (INTEGER, 0, None),
    'datasets.*.dataset_enlarge_ratio': (POSITIVE, 0, None),  # 0: no sample, a ZeroDivisionError in train.py
    'datasets.train.gt_size': (INTEGER, 1, None),
}


def _walk(value, path=''):
    """``(key path, key, value)`` of every value in nested dicts and lists."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        sub = f'{path}[{key}]' if isinstance(key, int) else f'{path}.{key}' if path else str(key)
        yield sub, key, item
        yield from _walk(item, sub)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_yaml_numbers(opt, opt_path, forced=()):
    """Refuse e-notation that YAML read as a string (``lr: 2e-4``): the value reaches BasicSR as text.

    ``forced``: ``(key path, entry)`` of ``--force_yml`` entries, whose values BasicSR reads the same way.
    """
    forced = dict(forced)
    for path, key, value in _walk(opt):
        if not (isinstance(value, str) and key not in TEXT_KEYS and E_NOTATION.fullmatch(value.strip())):
            continue
        if path in forced:
            raise UserError(f'{opt_path} (with --force_yml {forced[path]}): `{path}` is the text {value!r}, not a '
                            f'number; write {forced[path].split("=")[0]}=!!float{value.strip()} (BasicSR\'s '
                            'convention).')
        raise UserError(f'{opt_path}: option `{path}` is the text {value!r}, not a number: YAML 1.1, which BasicSR '
                        'reads options with, takes e-notation as a number only with a dot and a signed exponent '
                        f'(2.0e-4, 1.0e+5). Write `{key}: !!float {value.strip()}` (BasicSR\'s convention).')


def _check_rule(value, path, kind, minimum, also, opt_path):
    if also is not None and value == also:
        return
    whole = kind is INTEGER and isinstance(value, int) or kind is COUNT and _is_number(value) and value == int(value)
    numeric = kind in (NUMBER, POSITIVE)
    if not _is_number(value) or (not numeric and not whole) or value < minimum or (kind is POSITIVE and value == 0):
        extra = f' or {also}' if also is not None else ''
        bound = '' if kind is POSITIVE else f' >= {minimum}'
        raise UserError(f'{opt_path}: option `{path}` must be {kind}{bound}{extra}, got {value!r}.')


def check_values(opt, opt_path, scale, forced=()):
    """Refuse the values BasicSR would fail on later (see the module docstring). Call after the key checks.

    Args:
        opt (dict): The options (every required key present).
        opt_path (str): The options file, named in messages.
        scale (int): The checked ``scale``.
        forced (Iterable[tuple[str, str]]): ``(key path, entry)`` of ``--force_yml`` entries.

    Raises:
        UserError: The first bad value, naming its key.
    """
    check_yaml_numbers(opt, opt_path, forced)
    datasets = opt.get('datasets') or {}
    for rule, (kind, minimum, also) in RULES.items():
        section, _, rest = rule.partition('.')
        if section == 'datasets':
            phase, _, key = rest.partition('.')
            found = [(f'datasets.{p}.{key}', d.get(key)) for p, d in datasets.items() if phase in ('*', p)]
        else:
            value = opt
            for part in rule.split('.'):
                value = value.get(part) if isinstance(value, dict) else None
            found = [(rule, value)]
        for path, value in found:
            if value is not None:
                _check_rule(value, path, kind, minimum, also, opt_path)
    ema = (opt.get('train') or {}).get('ema_decay')
    if ema is not None and not (_is_number(ema) and 0 <= ema < 1):
        raise UserError(f'{opt_path}: option `train.ema_decay` must be a number in [0, 1) (0: no EMA), got {ema!r}.')
    gt_size = (datasets.get('train') or {}).get('gt_size')
    if gt_size is not None and gt_size % scale:
        near = sorted({max(scale, gt_size // scale * scale), (gt_size // scale + 1) * scale})
        raise UserError(f'{opt_path}: option `datasets.train.gt_size` ({gt_size}) must be a multiple of `scale` '
                        f'({scale}): the LR patch is gt_size / {scale} pixels. Use {" or ".join(map(str, near))}.')
    _check_component_numbers(opt, opt_path)


def _check_component_numbers(opt, opt_path):
    """The optimiser's and scheduler's numeric arguments (those with a number as default) must be numbers."""
    train = opt.get('train') or {}
    for key, table, supplied in (('optim_g', OPTIMIZERS, ('params', )), ('scheduler', SCHEDULERS, ('optimizer', ))):
        component = train.get(key) or {}
        for p in parameters(table[component['type']], supplied) if component.get('type') in table else ():
            value = component.get(p.name)
            if value is not None and _is_number(p.default) and not isinstance(p.default, bool) \
                    and not _is_number(value):
                raise UserError(f'{opt_path}: option `train.{key}.{p.name}` must be a number (default '
                                f'{p.default}), got {value!r}.')
