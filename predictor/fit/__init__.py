"""Fitting the model: the building blocks shared by the fit (predictor.training), the time model and retrain."""
