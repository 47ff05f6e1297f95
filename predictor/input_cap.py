"""Input-bound runs: a data pipeline that delivers at most N samples/s caps training throughput.

Model (pure): the GPU does the same work per epoch as when compute-bound (same busy energy), but an epoch
cannot end before the loader has delivered its training and validation samples. While it waits the board
draws its idle power, so average power falls toward idle as the cap tightens:

    t_epoch = max(t_gpu, (samples_per_epoch + val_samples) / input_samples_per_s)
    E_epoch = E_gpu + idle_w x (t_epoch - t_gpu)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from featurize.errors import InvalidInputError


@dataclass(frozen=True)
class CappedEpoch:
    """One epoch under an input cap (``note`` is the warning text; ``ratio`` = capped / uncapped energy)."""

    time_per_epoch_s: float
    energy_per_epoch_j: float
    ratio: float
    note: str


def check_input_rate(input_samples_per_s: object) -> float | None:
    if input_samples_per_s is None:
        return None
    if isinstance(input_samples_per_s, bool) or not isinstance(input_samples_per_s, (int, float)) or not (
        math.isfinite(float(input_samples_per_s)) and float(input_samples_per_s) > 0
    ):
        raise InvalidInputError(
            f"input_samples_per_s={input_samples_per_s!r} must be a finite number > 0 (samples your data loader "
            f"delivers per second), or None when the loader keeps up."
        )
    return float(input_samples_per_s)


def cap_epoch(
    *, time_per_epoch_s: float, energy_per_epoch_j: float, idle_w: float, samples_per_epoch: int, val_samples: int,
    input_samples_per_s: float,
) -> CappedEpoch:
    """Epoch time and energy when the loader delivers ``input_samples_per_s`` (see the module docstring)."""
    t_input = (samples_per_epoch + val_samples) / input_samples_per_s
    if t_input <= time_per_epoch_s:
        return CappedEpoch(time_per_epoch_s, energy_per_epoch_j, 1.0,
                           f"input_samples_per_s={input_samples_per_s:g}: the loader keeps up (needs "
                           f"{t_input:.3g} s of the {time_per_epoch_s:.3g} s the GPU takes per epoch); no cap.")
    energy = energy_per_epoch_j + idle_w * (t_input - time_per_epoch_s)
    busy = time_per_epoch_s / t_input
    p_gpu, p_capped = energy_per_epoch_j / time_per_epoch_s, energy / t_input
    note = (f"input-bound: the loader's {input_samples_per_s:g} samples/s stretch an epoch from "
            f"{time_per_epoch_s:.3g} s to {t_input:.3g} s; the GPU is busy {busy:.0%} of the time and idles at "
            f"{idle_w:.0f} W otherwise, so average power falls from {p_gpu:.0f} W toward idle ({p_capped:.0f} W) "
            f"and energy rises x{energy / energy_per_epoch_j:.2f}.")
    return CappedEpoch(t_input, energy, energy / energy_per_epoch_j, note)
