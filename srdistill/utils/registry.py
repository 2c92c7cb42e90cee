"""Auto-import of components, so that adding one is one new file plus one YAML ``type:`` key."""
import importlib
import os
from os import path as osp


def import_components(package, init_file, suffix):
    """Import every module ``<name><suffix>.py`` next to ``init_file``; their decorators register their classes.

    Args:
        package (str): Dotted name of the package, e.g. ``'srdistill.archs'``.
        init_file (str): The package's ``__init__.py`` (pass ``__file__``).
        suffix (str): File-name ending that marks a component, e.g. ``'_arch.py'``.

    Returns:
        list[module]: The imported modules, in file-name order.
    """
    folder = osp.dirname(osp.abspath(init_file))
    names = sorted(n[:-3] for n in os.listdir(folder) if n.endswith(suffix))
    return [importlib.import_module(f'{package}.{name}') for name in names]
