"""Evaluation of multi-exit checkpoints (per-exit PSNR/SSIM and bicubic)."""
