"""STEP refinement of a forecast from measured epochs (public entry point: ``predictor.refine``).

- :mod:`~predictor.refinement.segment`: warm-up, phase changes and outliers of the measured epochs.
- :mod:`~predictor.refinement.phases`: declared phases with priors of their own (partial pooling).
- :mod:`~predictor.refinement.level`: the newest phase's level after the prior.
- :mod:`~predictor.refinement.params`: the learned constants (fitted by ``training_data/fit_refine.py``).
- :mod:`~predictor.refinement.project`: :func:`~predictor.refinement.project.refine`, the projection itself.
- :mod:`~predictor.refinement.trace`: the same from a power trace.
"""
