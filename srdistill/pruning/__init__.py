"""Structured pruning of exported exits (docs/pruning.md)."""
