"""The scale of an exported model, from one run on a plain grey image (which also catches broken weights)."""
import numpy as np

from srdistill.utils.errors import UserError


def probe_scale(run, path):
    """``run``'s upscaling factor: its output size on an 8x8 grey image.

    Args:
        run (callable): float32 (1, 3, 8, 8) in [0, 1] -> the model's raw (unclipped) SR output.
        path (str): The model file, for the message.

    Raises:
        UserError: The output is not finite (inf/nan): the weights are broken.
    """
    probe = run(np.full((1, 3, 8, 8), 0.5, np.float32))
    if not np.isfinite(probe).all():
        raise UserError(f'{path} gives non-finite output (inf/nan) for a plain grey image: its weights are broken '
                        '(a run that diverged?); export it again from a finite checkpoint.')
    return probe.shape[2] // 8
