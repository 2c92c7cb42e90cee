"""srdistill: lightweight image super-resolution by self-distillation, as a BasicSR extension.

Importing the package applies the BasicSR compatibility fixes (:mod:`srdistill.compat`) and registers its
architectures, losses, models and datasets in BasicSR's registries.
"""
from srdistill import compat

compat.apply()

from srdistill import archs, data, losses, metrics, models  # noqa: E402,F401  (registers components; needs compat first)
from srdistill.version import __version__  # noqa: E402,F401
