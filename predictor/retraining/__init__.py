"""Retraining on a user's own measurements (public entry point: ``predictor.retrain``): read and check them
(:mod:`~predictor.retraining.measurements`), turn them into training rows (:mod:`~predictor.retraining.rows`),
calibrate or refit (:mod:`~predictor.retraining.calibrate`), and publish a new model directory
(:mod:`~predictor.retraining.publish`); the shipped model is never touched."""
