"""The values of ``train.amp`` (mixed precision), in one place for the model, the option checks and the benchmark."""
import torch

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
FP32_NAMES = ('none', 'fp32')  # besides ~ (the default) and false
CHOICES = f'{", ".join(AMP_DTYPES)} or ~ (fp32)'  # for messages
NAMES = (*AMP_DTYPES, 'fp32')  # a command line's choices (``--data-amp``): the autocast dtypes or plain fp32


def amp_dtype(amp):
    """``train.amp`` -> the autocast dtype; None for fp32 (``~``, ``false``, ``none``, ``fp32``).

    Raises:
        ValueError: Any other value (``0`` included, though it equals ``False``).
    """
    if amp is None or amp is False or (isinstance(amp, str) and amp in FP32_NAMES):
        return None
    if isinstance(amp, str) and amp in AMP_DTYPES:
        return AMP_DTYPES[amp]
    raise ValueError(f'train.amp must be {CHOICES}, got {amp!r}.')
