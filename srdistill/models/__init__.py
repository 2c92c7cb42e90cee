"""Models. Every ``*_model.py`` file here is imported, so its classes register in BasicSR's ``MODEL_REGISTRY``."""
from srdistill.utils.registry import import_components

_modules = import_components(__name__, __file__, '_model.py')
