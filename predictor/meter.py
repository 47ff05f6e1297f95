"""``from predictor.meter import EpochMeter``, the import path README names; the meter lives in
:mod:`predictor.energy.meter`."""

from predictor.energy.meter import EpochMeter

__all__ = ["EpochMeter"]
