"""Datasets. Every ``*_dataset.py`` file here is imported, so its classes register in BasicSR's ``DATASET_REGISTRY``."""
from srdistill.utils.registry import import_components

_modules = import_components(__name__, __file__, '_dataset.py')
