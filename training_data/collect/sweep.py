"""Sweep specification: a YAML file of grids, expanded to a deterministic, coverage-first list of runs.

Public entry points: :func:`load_sweep` (YAML path -> :class:`SweepSpec`), :func:`parse_sweep` (dict -> spec),
:func:`expand` (spec -> list of :class:`RunConfig`, round-robin over families), :func:`select` (filters, limits).

A spec looks like::

    name: h100
    epochs: 4                 # per run; epoch 0 is kept and marked as warm-up
    target_epoch_s: 1.0       # steps per epoch calibrated to about this long (or steps_per_epoch: N)
    optimizer: adamw
    grids:
      - family: cnn
        arch: [resnet18, resnet50]
        image_size: [64, 224]
        batch_size: [64, 128]
        precision: [fp32, bf16]
    repeats:                  # a few fixed configs measured --repeats N times (noise floor)
      - {family: cnn, arch: resnet18, image_size: 224, batch_size: 128, precision: fp32}

Every list value in a grid is swept (cartesian product); scalars are fixed. A config's identity is its
family, arch, batch size, precision, optimizer and model/input parameters; ``config_hash`` is a stable
SHA-256 prefix of that identity (canonical JSON), independent of YAML key order and of the sweep it came from.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurize.errors import InvalidInputError, SchemaError

FAMILIES: tuple[str, ...] = ("cnn", "mlp", "transformer", "rnn")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
#: keys of a grid that are not model/input parameters
_RUN_KEYS = {"family", "arch", "batch_size", "precision", "optimizer"}
_SPEC_KEYS = {
    "name", "epochs", "steps_per_epoch", "target_epoch_s", "min_steps", "max_steps", "optimizer",
    "max_params", "est_run_s", "grids", "repeats", "notes",
}


@dataclass(frozen=True)
class RunConfig:
    """One training run to measure. ``params`` holds the model/input parameters as sorted (key, value) pairs."""

    family: str
    arch: str
    batch_size: int
    precision: str
    optimizer: str = "adamw"
    params: tuple[tuple[str, Any], ...] = ()
    repeat: int = 0

    @property
    def p(self) -> dict[str, Any]:
        """Model/input parameters as a dict (e.g. ``{"image_size": 224}``)."""
        return dict(self.params)

    def identity(self) -> dict[str, Any]:
        """The fields that define the configuration (``repeat`` excluded)."""
        return {
            "family": self.family,
            "arch": self.arch,
            "batch_size": self.batch_size,
            "precision": self.precision,
            "optimizer": self.optimizer,
            "params": dict(self.params),
        }

    @property
    def config_hash(self) -> str:
        """16 hex chars of SHA-256 over the canonical JSON identity; stable across runs and machines."""
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def run_key(self) -> str:
        """File stem of this run's output: ``<config_hash>-r<repeat>``."""
        return f"{self.config_hash}-r{self.repeat}"

    def model_name(self) -> str:
        """Readable model id, e.g. ``resnet18-image_size224``."""
        bits = [f"{k}{v}" for k, v in self.params if not isinstance(v, (list, tuple, dict))]
        return "-".join([self.arch, *bits])

    def with_repeat(self, repeat: int) -> RunConfig:
        return RunConfig(self.family, self.arch, self.batch_size, self.precision, self.optimizer, self.params,
                         repeat)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file. Times in seconds."""

    name: str
    grids: tuple[Mapping[str, Any], ...]
    epochs: int = 4
    steps_per_epoch: int | None = None
    target_epoch_s: float | None = 1.0
    min_steps: int = 5
    max_steps: int = 2000
    optimizer: str = "adamw"
    max_params: int | None = None
    est_run_s: float = 6.0
    repeats: tuple[Mapping[str, Any], ...] = ()
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep YAML file (``yaml.safe_load``) and validate it."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"sweep file {path} not found; pass --sweep training_data/collect/sweeps/h100.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SchemaError(f"sweep file {path} is not valid YAML: {err}") from err
    return parse_sweep(data, where=str(path))


def parse_sweep(data: Any, *, where: str = "sweep") -> SweepSpec:
    """Validate a sweep mapping (as loaded from YAML) into a :class:`SweepSpec`."""
    if not isinstance(data, Mapping):
        raise SchemaError(f"{where}: top level must be a mapping with a 'grids' list")
    unknown = set(data) - _SPEC_KEYS
    if unknown:
        raise SchemaError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}")
    grids = data.get("grids")
    if not isinstance(grids, list) or not grids:
        raise SchemaError(f"{where}: 'grids' must be a non-empty list of mappings")
    for i, g in enumerate(grids):
        _check_grid(g, f"{where}: grids[{i}]")
    repeats = data.get("repeats") or []
    for i, r in enumerate(repeats):
        _check_grid(r, f"{where}: repeats[{i}]")
        if any(isinstance(v, list) for v in r.values()):
            raise SchemaError(f"{where}: repeats[{i}] must be one fixed config (no lists)")
    spec = SweepSpec(
        name=str(data.get("name", "sweep")),
        grids=tuple(grids),
        epochs=int(data.get("epochs", 4)),
        steps_per_epoch=None if data.get("steps_per_epoch") is None else int(data["steps_per_epoch"]),
        target_epoch_s=None if data.get("target_epoch_s") is None else float(data["target_epoch_s"]),
        min_steps=int(data.get("min_steps", 5)),
        max_steps=int(data.get("max_steps", 2000)),
        optimizer=str(data.get("optimizer", "adamw")),
        max_params=None if data.get("max_params") is None else int(float(data["max_params"])),
        est_run_s=float(data.get("est_run_s", 6.0)),
        repeats=tuple(repeats),
        notes=str(data.get("notes", "")),
    )
    if spec.epochs < 2:
        raise SchemaError(f"{where}: epochs must be >= 2 (epoch 0 is the warm-up), got {spec.epochs}")
    if spec.steps_per_epoch is None and spec.target_epoch_s is None:
        raise SchemaError(f"{where}: set steps_per_epoch or target_epoch_s")
    if spec.optimizer not in OPTIMIZERS:
        raise SchemaError(f"{where}: optimizer {spec.optimizer!r} not in {OPTIMIZERS}")
    return spec


def _check_grid(g: Any, where: str) -> None:
    if not isinstance(g, Mapping):
        raise SchemaError(f"{where} must be a mapping")
    for key in ("family", "arch", "batch_size", "precision"):
        if key not in g:
            raise SchemaError(f"{where} lacks '{key}'")
    for fam in _as_list(g["family"]):
        if fam not in FAMILIES:
            raise SchemaError(f"{where}: family {fam!r} not in {FAMILIES}")
    for prec in _as_list(g["precision"]):
        if prec not in PRECISIONS:
            raise SchemaError(f"{where}: precision {prec!r} not in {PRECISIONS}")
    for opt in _as_list(g.get("optimizer", "adamw")):
        if opt not in OPTIMIZERS:
            raise SchemaError(f"{where}: optimizer {opt!r} not in {OPTIMIZERS}")
    for bs in _as_list(g["batch_size"]):
        if not isinstance(bs, int) or bs < 1:
            raise SchemaError(f"{where}: batch_size values must be positive integers, got {bs!r}")


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list) else [v]


def expand_grid(grid: Mapping[str, Any], *, default_optimizer: str = "adamw") -> list[RunConfig]:
    """Cartesian product of one grid's list values, in YAML order."""
    keys = list(grid)
    values = [_as_list(grid[k]) for k in keys]
    out = []
    for combo in itertools.product(*values):
        d = dict(zip(keys, combo))
        params = tuple(sorted((k, v) for k, v in d.items() if k not in _RUN_KEYS))
        out.append(RunConfig(
            family=str(d["family"]), arch=str(d["arch"]), batch_size=int(d["batch_size"]),
            precision=str(d["precision"]), optimizer=str(d.get("optimizer", default_optimizer)), params=params,
        ))
    return out


def expand(spec: SweepSpec, *, repeats: int = 0,
           param_counter: Callable[[RunConfig], int] | None = None) -> list[RunConfig]:
    """All runs of ``spec`` in coverage-first order, duplicates (same hash) dropped.

    Order: round-robin over families (in order of first appearance), and inside a family round-robin over
    architectures, each architecture's configs ordered by ``config_hash`` (a fixed pseudo-random order that
    spreads sizes, batch sizes and precisions). With ``repeats=N`` the spec's repeat configs run N times
    (repeat 0..N-1) as one more stream of the round-robin, so noise-floor runs are spread over the session.
    ``param_counter`` with ``spec.max_params`` drops configs whose model would be larger.
    """
    seen: set[str] = set()
    by_family: dict[str, dict[str, list[RunConfig]]] = {}
    for grid in spec.grids:
        for cfg in expand_grid(grid, default_optimizer=spec.optimizer):
            if cfg.config_hash in seen:
                continue
            seen.add(cfg.config_hash)
            if spec.max_params is not None and param_counter is not None:
                if param_counter(cfg) > spec.max_params:
                    continue
            by_family.setdefault(cfg.family, {}).setdefault(cfg.arch, []).append(cfg)
    streams: list[list[RunConfig]] = []
    for archs in by_family.values():
        per_arch = [sorted(cfgs, key=lambda c: c.config_hash) for cfgs in archs.values()]
        streams.append(_round_robin(per_arch))
    if repeats > 0 and spec.repeats:
        fixed = [c for r in spec.repeats for c in expand_grid(r, default_optimizer=spec.optimizer)]
        # repeat 0 of a config that is also in the sweep is the sweep's own run; add 1..N-1 (or 0..N-1 if new)
        rep_runs = []
        for k in range(repeats):
            for c in fixed:
                if k == 0 and c.config_hash in seen:
                    continue
                rep_runs.append(c.with_repeat(k))
        streams.append(rep_runs)
    return _round_robin(streams)


def _round_robin(lists: Sequence[Sequence[RunConfig]]) -> list[RunConfig]:
    out: list[RunConfig] = []
    for group in itertools.zip_longest(*lists):
        out.extend(c for c in group if c is not None)
    return out


def select(configs: Iterable[RunConfig], *, families: Sequence[str] | None = None,
           archs: Sequence[str] | None = None, precisions: Sequence[str] | None = None,
           max_runs: int | None = None) -> list[RunConfig]:
    """Keep configs matching every given filter (``None`` = no filter), then the first ``max_runs``."""
    out = [
        c for c in configs
        if (not families or c.family in families)
        and (not archs or c.arch in archs)
        and (not precisions or c.precision in precisions)
    ]
    if max_runs is not None:
        if max_runs < 0:
            raise InvalidInputError(f"max_runs must be >= 0, got {max_runs}")
        out = out[:max_runs]
    return out
