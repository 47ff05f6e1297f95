"""Fitting the PRE model: preparing the table (:mod:`~predictor.fit.prepare`), the boosters (:mod:`~predictor.fit.boosters`),
the stages (:mod:`~predictor.fit.stages`), grouped cross-validation (:mod:`~predictor.fit.cv`) and the artifact writer
(:mod:`~predictor.fit.write`).

Public entry points (``retrain`` reuses them):

* :func:`fit_model` — training table -> a complete model directory (boosters, manifest, model card; the
  table itself only for retrained models), written atomically (temp dir + rename).
* :func:`grouped_cv` — leave-one-group-out folds (``gpu``, ``group_arch``, ``source``) -> metrics and
  out-of-fold predictions.
* :func:`prepare` — table -> (rows, features, targets) with the GPU specs joined and scope corrected.
* ``python -m training_data.build_model --table training_data/table/training_table.parquet --out models``
  regenerates the shipped artifact deterministically (fixed seeds, single-threaded LightGBM). The table is
  built from ``../shared/data`` by ``python -m training_data.build_table`` and is never committed or shipped.

Design (see :data:`SHIPPED_DESIGN` and ``models/MODEL_CARD.md``): two LightGBM regressors on log residuals
over the physics prior of :mod:`featurize.physics.prior` -- ``log(time_per_sample / t_phys)`` and
``log(avg_power / p_phys)`` -- energy = power x time. The ``energy`` design (one regressor on
``log(energy_per_sample / e_phys)``) is the alternative the CV compares against. A retrain keeps its base
model's design and fits :data:`DEFAULT_FEATURES` (= :data:`SHIPPED_FEATURES`). A second, seen-configuration stage
(:func:`fit_local`, :data:`LOCAL_ROUNDS`) learns what the main boosters leave in the residual of the measured
(GPU, precision) pairs and applies only there; measured configurations get the interval calibrated on random row
folds (:func:`measured_halfwidth`), everything else the grouped-fold one.
Source-specific corrections (Zeus PCIe boards, Mayaki's TF32 steps and point-sampled power) live in
``training_data.corrections`` and are applied when the table is built; :func:`prepare` only reads the table's
generic ``power_reliable`` column (:data:`POWER_RELIABLE_COL`).
Retraining on a user's runs (rows with :data:`CALIBRATE_COL`) adds a per-GPU calibration offset
(:func:`fit_with_offsets`, manifest ``gpu_offsets``) so a user's GPU never drags GPUs with similar specs along.

Scope: the model predicts GPU board power. Rows whose ``scope`` contains ``ram_est`` (GPU + an estimated RAM
term, e.g. a user's CodeCarbon-style figures) are converted to GPU-only by subtracting :data:`RAM_EST_W` from
their power (and the same share of energy). del Rey's published RAM term is removed by its converter
(``training_data.sources.delrey``: a measured 6 W), so no shipped row needs this.
"""
