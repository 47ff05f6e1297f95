"""The typed record ``refine`` attaches to its :class:`~predictor.prediction.Prediction`: what was measured and
what the projection assumed. A read-only mapping too (``p.refinement["epochs_measured"]``, ``dict(...)``, JSON),
so code and files written against the earlier plain dict keep working."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, eq=False)
class Refinement(Mapping):
    """One refinement. Energies in J (per epoch where named), log values natural logs of J per epoch.

    Attributes:
        method: the projection used (``step-robust-conjugate-v1``, or ``...-pooled-phase-priors-v1`` with
            phase priors).
        epochs_measured / measured_energy_j: epochs given and their summed energy.
        warmup_epochs / stable_start / stable_epochs / outlier_epochs: the steady-state analysis.
        phase_change_at / phase_starts / detected_phase_starts / declared_phases / current_phase: phases.
        projected_epoch_energy_j / measured_epoch_energy_j / obs_log_sigma: the level projected and measured.
        prior_energy_per_epoch_j / prior_log_sigma / prior_energy_j / prior_weight: the prior and its weight.
        total_epochs_assumed / total_epochs_range / total_epochs_source: the run length.
        phase_priors_used / prior_rho / phase_projected_epoch_energy_j: partial pooling across declared phases.
        drift_log_shift: the fitted drift applied to the coming epochs; level_from: what set the level.
    """

    method: str
    epochs_measured: int
    measured_energy_j: float
    warmup_epochs: list[int]
    stable_start: int
    stable_epochs: int
    phase_change_at: int | None
    phase_starts: list[int]
    detected_phase_starts: list[int]
    declared_phases: list[int]
    outlier_epochs: list[int]
    projected_epoch_energy_j: float
    measured_epoch_energy_j: float
    obs_log_sigma: float
    prior_energy_per_epoch_j: float
    prior_log_sigma: float
    prior_weight: float
    total_epochs_assumed: int
    total_epochs_range: list[int]
    total_epochs_source: str
    prior_energy_j: float
    current_phase: int
    phase_priors_used: bool
    prior_rho: float | None
    phase_projected_epoch_energy_j: list[float] | None
    drift_log_shift: float
    level_from: str

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return (f.name for f in fields(self))

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)

    def to_dict(self) -> dict[str, Any]:
        return dict(self)
