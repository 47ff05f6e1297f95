"""Measured energy: one device layer (NVML or a replayed trace), one sampler, one integrator, and the live
per-epoch meter built on them. Shared by the public meter (:mod:`predictor.energy.meter`) and the build-time
collection harness (``training_data.collect``).

- :mod:`predictor.energy.integrate`: the trapezoid energy integral of a power trace (the one formula).
- :mod:`predictor.energy.devices`: :class:`~predictor.energy.devices.EnergyDevice` and its NVML / replay
  implementations, :func:`~predictor.energy.devices.open_device`, :class:`~predictor.energy.devices.PowerSampler`.
- :mod:`predictor.energy.window`: :class:`~predictor.energy.window.EnergyMeter` -- the energy of a window
  (counter difference, else the integral of the sampled power).
- :mod:`predictor.energy.meter`: :class:`~predictor.energy.meter.EpochMeter`, refining a forecast after each epoch.
"""
