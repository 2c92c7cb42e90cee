"""Inference on users' images with exported exits or checkpoints."""
