"""Utilities shared by the package: component registration, exact MATLAB resizing, user-facing errors."""
