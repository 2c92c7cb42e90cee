"""Optional runtimes and converters (OpenVINO, ncnn, pnnx), imported only where a format needs them.

They are in the ``runtimes`` extra (``pip install -e .[runtimes]``; the ``test`` extra includes it); without one,
the format that needs it fails with one message naming the package to install, and every other format still works.
"""
import importlib

from srdistill.utils.errors import UserError

# module -> PyPI package that provides it
PACKAGES = {'openvino': 'openvino', 'ncnn': 'ncnn', 'pnnx': 'pnnx'}


def require(module, purpose):
    """Import optional ``module`` (a key of :data:`PACKAGES`) for ``purpose`` (e.g. ``'--format ncnn'``).

    Raises:
        UserError: The package is not installed; the message names the pip package.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f'{purpose} needs the {PACKAGES[module]} package, which is not installed: pip install '
                        f'{PACKAGES[module]} (or pip install -e .[runtimes] for every optional runtime).') from None
