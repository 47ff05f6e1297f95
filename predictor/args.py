"""One validation of the numeric run arguments, shared by every entry point (``predict``, ``predict_many``, the
CLI's ``predict`` and ``score``, which call them).

Public entry points: :func:`check_run_args` (batch size, samples, epochs, validation samples, precision) and
:func:`check_power_limit` (against the GPU's settable range, :func:`featurize.physics.power_limit_range_w`).
A value that is not a number, not finite, or out of range raises :class:`InvalidInputError` naming the
argument and the allowed range; nothing NaN or infinite reaches the model.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from featurize.errors import InvalidInputError
from featurize.types import PRECISIONS, GPUSpec

MAX_BATCH_SIZE = 2**24
"""Largest batch accepted (16.8 M samples per step: far above any single-node training batch)."""
MAX_SAMPLES = 10**13
"""Largest samples_per_epoch / val_samples accepted (10^13: a trillion-token corpus in sequences of one token)."""
MAX_EPOCHS = 1e6
MAX_GPUS_PER_NODE = 16
"""Most GPUs priced on one node (HGX-2 / DGX-2 and 16-card PCIe servers); more span nodes (not priced)."""
MAX_TOKENS = 1e16
"""Largest token budget accepted (10^16: far above any published pre-training run)."""


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def check_number(name: str, value: Any, *, lo: float, hi: float, integer: bool, lo_open: bool = False) -> float:
    """``value`` as a float when it is a real, finite number in [lo, hi] (``(lo, hi]`` with ``lo_open``) and, with
    ``integer``, a whole number; else :class:`InvalidInputError` naming ``name`` and the range."""
    kind = "a whole number" if integer else "a finite number"
    rng = f"{'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}]"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    x = float(value) if ok else math.nan
    if ok and math.isfinite(x) and (x > lo if lo_open else x >= lo) and x <= hi and (not integer or x.is_integer()):
        return x
    raise InvalidInputError(f"{name}={value!r} is out of range: it must be {kind} in {rng}.")


def check_run_args(*, batch_size: Any, samples_per_epoch: Any, epochs: Any, val_samples: Any,
                   precision: Any, n_gpus: Any = 1, parallelism: Any = "ddp", tokens: Any = None) -> None:
    """Validate the run arguments of ``predict`` / ``predict_many`` (``None`` allowed for ``batch_size``,
    ``samples_per_epoch`` and ``tokens``: the documented defaults)."""
    check_parallel_args(n_gpus, parallelism)
    if tokens is not None:
        check_number("tokens", tokens, lo=1, hi=MAX_TOKENS, integer=False)
        if samples_per_epoch is not None:
            raise InvalidInputError(
                f"tokens={tokens!r} and samples_per_epoch={samples_per_epoch!r} both give the epoch's size: pass one "
                "(tokens= is divided by the graph's sequence length into samples).")
    if batch_size is not None:
        check_number("batch_size", batch_size, lo=1, hi=MAX_BATCH_SIZE, integer=True)
    if samples_per_epoch is not None:
        check_number("samples_per_epoch", samples_per_epoch, lo=1, hi=MAX_SAMPLES, integer=True)
    check_number("epochs", epochs, lo=0, hi=MAX_EPOCHS, integer=False, lo_open=True)
    check_number("val_samples", val_samples, lo=0, hi=MAX_SAMPLES, integer=True)
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}.")


def check_parallel_args(n_gpus: Any, parallelism: Any) -> tuple[int, str]:
    """``(n_gpus, parallelism)`` when ``n_gpus`` is a whole number of GPUs on one node and ``parallelism`` a
    supported data-parallel mode (:data:`featurize.parallel.PARALLELISMS`)."""
    from featurize.parallel import check_parallelism

    try:
        n = check_number("n_gpus", n_gpus, lo=1, hi=MAX_GPUS_PER_NODE, integer=True)
    except InvalidInputError as err:
        raise InvalidInputError(f"{err} joulecast prices data parallelism on one node (up to "
                                f"{MAX_GPUS_PER_NODE} GPUs); multi-node training is not priced.") from None
    return int(n), check_parallelism(parallelism)


def check_power_limit(power_limit_w: Any, gpu: GPUSpec) -> float | None:
    """``power_limit_w`` as a float (None = the board's default limit) when it lies in the GPU's settable range."""
    if power_limit_w is None:
        return None
    from featurize.physics import power_limit_range_w

    lo, hi = power_limit_range_w(gpu)
    try:
        return check_number("power_limit_w", power_limit_w, lo=lo, hi=hi, integer=False)
    except InvalidInputError as err:
        raise InvalidInputError(
            f"{err} That is the range a power limit can be set to on {gpu.name} (TDP {gpu.tdp_w:g} W; "
            + ("nvidia-smi's Min/Max Power Limit" if gpu.power_limit_min_w and gpu.power_limit_max_w else
               "a rule from the TDP where nvidia-smi's limits are unknown; `nvidia-smi -q` lists the card's own")
            + "); pass None for the default limit."
        ) from None
