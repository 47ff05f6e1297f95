"""Scoring many graphs (``predictor.predict_many``): inputs (:mod:`~predictor.batch.inputs`), one isolated
featurization per graph (:mod:`~predictor.batch.worker`, :mod:`~predictor.batch.isolation`), optionally on a Dask
cluster (:mod:`~predictor.batch.cluster`), and the scoring itself (:mod:`~predictor.batch.many`)."""
