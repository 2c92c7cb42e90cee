"""Losses. Every ``*_loss.py`` file here is imported, so its classes register in BasicSR's ``LOSS_REGISTRY``."""
from srdistill.utils.registry import import_components

_modules = import_components(__name__, __file__, '_loss.py')
