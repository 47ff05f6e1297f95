"""training_data: build-time code that turns public measurements into the featurized training table.

Never imported by ``featurize`` or ``predictor`` at run time. Entry points:

* :mod:`training_data.schema` -- the canonical run schema (``RUN_COLUMNS``, ``validate_runs``; a user's runs are read by ``predictor.retrain``).
* :mod:`training_data.sources` -- one converter per public source (``load(shared_dir) -> DataFrame``).
* :mod:`training_data.zoo` -- our PyTorch / transformers definitions of every architecture in the data
  (``get_zoo_model``, ``export_onnx``).
* :mod:`training_data.build_table` -- ``python -m training_data.build_table`` writes ``table/training_table.parquet``.
"""
