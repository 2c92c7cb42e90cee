"""Architectures. Every ``*_arch.py`` file here is imported, so its classes register in BasicSR's ``ARCH_REGISTRY``."""
from srdistill.utils.registry import import_components

_modules = import_components(__name__, __file__, '_arch.py')
