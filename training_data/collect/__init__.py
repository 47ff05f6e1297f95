"""training_data.collect: measure real training runs on a GPU (issue 8).

Entry point: ``python -m training_data.collect --sweep training_data/collect/sweeps/h100.yaml --out training_data/runs
--budget-s 500`` (see ``training_data/runs/README.md``). Modules: :mod:`~training_data.collect.sweep` (YAML spec ->
ordered run configs), :mod:`~training_data.collect.models` (self-contained PyTorch builders),
the energy devices, sampler and window meter of :mod:`predictor.energy` (shared with the live meter),
:mod:`~training_data.collect.runner` (train, measure, write one Parquet file per run, resume).
"""
