"""The shipped model (or a retrained one): the artifact and its checksums (:mod:`~predictor.model.artifact`), the
physics prior it owns (:mod:`~predictor.model.spec`), loading and verifying it (:mod:`~predictor.model.loaded`,
:mod:`~predictor.model.trees`), and predicting with it (:mod:`~predictor.model.inference`, with its rows, intervals
and extrapolation warnings); :mod:`~predictor.model.publish` writes a model directory atomically."""
