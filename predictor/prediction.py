"""The :class:`Prediction` value type returned by ``predict`` and ``refine``.

All energies in joules unless the name says kWh; times in seconds; power in watts. The interval is
a nominal 90 % interval on the total energy, calibrated on grouped cross-validation folds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from predictor.units import J_PER_KWH


@dataclass(frozen=True)
class Prediction:
    """Forecast of one training run on one GPU.

    Attributes:
        energy_j: total energy of the run (training + validation passes), joules.
        energy_per_epoch_j: energy of one epoch, joules.
        energy_per_sample_j: energy per training sample (one forward + backward + update), joules.
        time_s: total wall time of the run, seconds.
        time_per_epoch_s: time of one epoch, seconds.
        avg_power_w: average board power of one GPU over the run, watts (energy_j / (time_s x n_gpus)).
        interval_j: (low, high) of the nominal ``interval_level`` interval on ``energy_j``.
        interval_s: (low, high) of the nominal ``interval_level`` interval on ``time_s`` (calibrated on the same
            grouped folds; deadlines need it); None for a model without a calibrated time interval.
        gpu: resolved GPU name (canonical row of the hardware table).
        warnings: every default used, alias resolved and extrapolation flagged, as text.
        log_sigma: standard deviation of log(energy) implied by the interval (used by ``refine``).
        refinement: filled in by ``refine``: epochs measured, warm-up epochs, stable start, ...
        memory_bytes: peak GPU memory of one training step (weights, gradients, Adam state, activations x
            batch, workspace; :func:`featurize.physics.prior.training_memory_bytes`), bytes; None when unknown.
        fits: whether ``memory_bytes`` fits in the GPU's memory (None when unknown); when it does not,
            ``warnings`` names the largest batch that fits.
        optimal_power_limit_w: the power limit (W) that minimises the run's energy while it slows down by at most
            10 %, forecast from the uncapped run and the learned power-cap curve (the board's default limit when no
            lower cap saves energy); :func:`predictor.power_limits.optimal_power_limit_w` takes another slowdown.
            None when not computed.
        layers: per-layer breakdown (pandas DataFrame, one row per node plus the optimizer update and the
            step overhead: ``node, module, op_type, op_class, bound, time_s, energy_j, share``; ``module`` is the
            module path the node's parameter names carry, e.g. ``layers.3.conv1``, else ""): the run's
            ``time_s`` / ``energy_j`` split by the per-layer physics prior (:mod:`featurize.physics.layers`); ``share``
            is the node's share of the energy. None when not computed (``predict_many``). With several GPUs
            a ``communication`` row holds the collectives' time and energy the compute does not hide.
        n_gpus: GPUs training data-parallel on one node (1 = a single GPU); ``time_s`` is wall clock,
            ``energy_j`` every GPU's, ``avg_power_w`` and ``memory_bytes`` per GPU, ``batch_size`` per GPU.
        parallelism: ``"ddp"`` or ``"fsdp"`` (:mod:`predictor.parallel`).
    """

    energy_j: float
    energy_per_epoch_j: float
    energy_per_sample_j: float
    time_s: float
    time_per_epoch_s: float
    avg_power_w: float
    interval_j: tuple[float, float]
    gpu: str
    warnings: list[str] = field(default_factory=list)
    epochs: float = 1.0
    batch_size: int = 32
    samples_per_epoch: int = 1
    val_samples: int = 0
    precision: str = "fp32"
    interval_level: float = 0.9
    log_sigma: float = 0.0
    model_version: str = ""
    model_name: str = ""
    features: dict[str, float] = field(default_factory=dict)
    refinement: Any = None  # predictor.refinement.record.Refinement (a read-only mapping); a dict after from_dict
    memory_bytes: float | None = None
    fits: bool | None = None
    optimal_power_limit_w: float | None = None
    layers: Any = field(default=None, compare=False, repr=False)
    interval_s: tuple[float, float] | None = None
    n_gpus: int = 1
    parallelism: str = "ddp"

    @property
    def energy_kwh(self) -> float:
        """Total energy in kilowatt-hours."""
        return self.energy_j / J_PER_KWH

    @property
    def interval_kwh(self) -> tuple[float, float]:
        return (self.interval_j[0] / J_PER_KWH, self.interval_j[1] / J_PER_KWH)

    def co2_kg(self, grid_g_per_kwh: float | None = None, region: str | None = None, pue: float = 1.0) -> float:
        """Kilograms of CO2e of the run: ``energy_kwh x pue x grid intensity``.

        ``grid_g_per_kwh`` (g CO2e/kWh) wins; else ``region`` from the offline table in
        :mod:`predictor.carbon` (annual averages); else the world average (Ember 2023, 481 g/kWh).
        """
        from predictor.carbon import co2_kg

        return co2_kg(self.energy_kwh, grid_g_per_kwh=grid_g_per_kwh, region=region, pue=pue)

    def cost(self, price_per_kwh: float, pue: float = 1.0) -> float:
        """Electricity cost of the run at ``price_per_kwh`` (result in the same currency)."""
        from predictor.carbon import cost

        return cost(self.energy_kwh, price_per_kwh, pue=pue)

    def to_hf_model_card(self, *, training_type: str = "pre-training", region: str | None = None,
                         grid_g_per_kwh: float | None = None, pue: float = 1.0) -> dict[str, Any]:
        """The Hugging Face model-card ``co2_eq_emissions`` block of this forecast: ``emissions`` (grams CO2e),
        ``source`` ("joulecast forecast"), ``training_type`` ("pre-training" or "fine-tuning"),
        ``geographical_location`` (the ``region``'s name) and ``hardware_used`` (:func:`predictor.cards.hf_co2_block`).
        Put it in a card with ``huggingface_hub.ModelCardData(co2_eq_emissions=p.to_hf_model_card(region="fr"))``."""
        from predictor.cards import hf_co2_block

        return hf_co2_block(self, training_type=training_type, region=region, grid_g_per_kwh=grid_g_per_kwh,
                            pue=pue)

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the forecast as a small table (:func:`predictor.cards.prediction_html`)."""
        from predictor.cards import prediction_html

        return prediction_html(self)

    def replace(self, **changes: Any) -> "Prediction":
        """A copy with ``changes`` applied (the type is frozen)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field plus ``energy_kwh`` (``layers`` as a list of records)."""
        out = asdict(replace(self, layers=None))
        out["layers"] = None if self.layers is None else self.layers.to_dict(orient="records")
        out["interval_j"] = list(self.interval_j)
        out["interval_s"] = None if self.interval_s is None else list(self.interval_s)
        out["energy_kwh"] = self.energy_kwh
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Prediction":
        """Inverse of :meth:`to_dict` (extra keys such as ``energy_kwh`` are ignored)."""
        from dataclasses import fields

        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["interval_j"] = tuple(kwargs["interval_j"])
        if kwargs.get("interval_s") is not None:
            kwargs["interval_s"] = tuple(kwargs["interval_s"])
        if kwargs.get("layers") is not None:
            import pandas as pd

            kwargs["layers"] = pd.DataFrame(kwargs["layers"])
        return cls(**kwargs)
