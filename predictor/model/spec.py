"""The model owns its prior: a typed spec (``prior_spec.json``) saved with every model directory.

Public entry points:

* :class:`PriorSpec` -- pydantic model: physics constants, per-layer efficiencies, feature definitions (names +
  a probe of their values on fixed inputs), the GPU table's sha256, precision semantics and the per-source
  corrections of the training table.
* :func:`current_spec` -- the spec of the running code (what a model trained now would carry).
* :func:`write_spec` / :func:`read_spec` -- ``prior_spec.json`` in a model directory.
* :func:`verify_spec` -- the loading hook (:func:`predictor.model.load_model`): the directory's spec must be
  listed (hence checksummed) in the manifest's ``files`` and agree with the running code; any disagreement raises
  :class:`~featurize.errors.ModelArtifactError` naming each field and the fix. Per-layer efficiencies and
  corrections are the model's own (learned / build-time data), carried, not compared.
* ``python -m predictor.model.spec DIR`` checks a directory; ``--write`` records the running code's prior there (only
  after a deliberate prior change the boosters were refitted for, or to adopt a table edit that moves no trained
  row; the file's hash in the manifest is updated).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from featurize.errors import ModelArtifactError

SPEC_FILE = "prior_spec.json"
SPEC_VERSION = 1
PROBE_RTOL = 1e-9
_CONSTANTS = ("LAUNCH_S", "STEP_OVERHEAD_S", "COMPUTE_EFFICIENCY", "TENSOR_CORE_EFFICIENCY", "KERNELS_PER_NODE",
              "OPT_BYTES_PER_PARAM", "REFERENCE_YEAR", "CLOCK_POWER_EXPONENT")
_PROBES = (("A100-PCIE-40GB", "fp32", 64), ("H100-SXM5-80GB", "bf16", 8), ("V100-PCIE-32GB", "fp16", 32),
           ("RTX-3090", "tf32", 16))
"""(GPU, precision, batch) of the feature probe: TF32 convolutions + PCIe clock, a Hopper tensor path, Volta
tensor cores, a GeForce TF32 rate that equals FP32."""


class LayerEfficiencySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    compute: dict[str, float]
    memory: dict[str, float]
    source: str
    tile_elements: int


class PowerCapSpec(BaseModel):
    """The learned power-cap response (:class:`featurize.power_cap.PowerCapCurve`); carried, like the per-layer
    efficiencies, and checked for range at load."""

    model_config = ConfigDict(extra="forbid")
    static_frac_of_tdp: float = Field(ge=0.0, lt=1.0)
    knee_clock: float = Field(gt=0.0, le=1.0)
    min_clock: float = Field(gt=0.0, le=1.0)
    source: str

    def curve(self) -> Any:
        from featurize.power_cap import PowerCapCurve

        return PowerCapCurve(**self.model_dump())


class FeatureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    names: list[str]
    prior_names: list[str]
    probe: dict[str, dict[str, float]] = Field(description="GPU|precision|batch -> every feature on a fixed graph")


class PriorSpec(BaseModel):
    """Everything the boosters' targets and features were defined with."""

    model_config = ConfigDict(extra="forbid")
    spec_version: int = SPEC_VERSION
    physics_constants: dict[str, float]
    layer_efficiencies: LayerEfficiencySpec
    features: FeatureSpec
    gpu_table_sha256: str
    precision_semantics: dict[str, str]
    source_corrections: dict[str, Any] = Field(default_factory=dict)
    power_cap: PowerCapSpec | None = None
    """None in a model written before the power-cap curve: :data:`featurize.power_cap.DEFAULT_CURVE` applies."""
    data_parallel: dict[str, dict[str, float]] | None = None
    """The N-GPU constants (:func:`predictor.parallel.scaling_record`); None in a model written before them."""
    note: str = ""


def gpu_table_sha256() -> str:
    """sha256 of the hardware table's prior-relevant columns (every ``GPUSpec`` field), rows sorted by name."""
    from featurize.hardware.table import gpu_table
    from featurize.types import GPUSpec
    from predictor.table_hash import table_sha256

    table = gpu_table()
    cols = sorted(c for c in table.columns if c in GPUSpec.__dataclass_fields__ and c != "source")
    return table_sha256(table.sort_values("name")[cols])


def _probe_graph() -> dict[str, float]:
    return {"flops_train": 6.0e11, "flops_forward": 2.0e11, "flops_backward": 4.0e11, "bytes_moved_forward": 3.0e8,
            "trainable_params": 2.5e7, "params": 2.6e7, "n_nodes": 180.0, "weight_bytes": 1.0e8,
            "max_layer_working_set_bytes": 6.0e7, "arithmetic_intensity": 600.0, "frac_macs_conv": 0.6,
            "frac_macs_matmul": 0.3, "frac_macs_attention": 0.1, "frac_macs_recurrent": 0.0,
            "frac_flops_elementwise": 0.01}


def feature_probe() -> dict[str, dict[str, float]]:
    """Every physics feature of a fixed graph on fixed (GPU, precision, batch) cases, by the running code."""
    import warnings

    from featurize import lookup_gpu
    from featurize.physics.prior import physics_features

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for gpu, prec, batch in _PROBES:
            f = physics_features(_probe_graph(), lookup_gpu(gpu), batch_size=batch, precision=prec)
            out[f"{gpu}|{prec}|{batch}"] = {k: float(v) for k, v in sorted(f.items())}
        out.update(_layer_probe())
    return out


def _layer_probe() -> dict[str, dict[str, float]]:
    """The per-layer prior's features (:func:`featurize.layer_profile.layered_arrays`, default efficiencies) of a
    fixed kernel profile on the probe GPUs and on the reference GPU the time model's workload features use."""
    from featurize import lookup_gpu
    from featurize.layer_profile import REFERENCE_GPU, LayerProfile, layered_arrays
    from featurize.physics.prior import gpu_columns

    prof = LayerProfile.build(["conv", "conv", "gemm", "attention", "normalization", "elementwise", "embedding"],
                              [2e9, 5e7, 8e8, 3e8, 1e6, 2e6, 0.0], [4e6, 3e7, 6e6, 5e7, 8e6, 1.2e7, 3e6],
                              [2e6, 1e7, 2e6, 2e7, 4e6, 6e6, 3e6], 1.0)
    out = {}
    for gpu, prec, batch in (*_PROBES, (REFERENCE_GPU, "fp8", 16)):
        f = layered_arrays([prof], gpu_columns(lookup_gpu(gpu), prec, fallback=True), batch_size=batch,
                           backward_ratio=2.0, trainable_params=2.5e7)
        out[f"layers|{gpu}|{prec}|{batch}"] = {k: float(v[0]) for k, v in sorted(f.items())}
    return out


def current_spec(*, efficiencies: Any = None, source_corrections: dict[str, Any] | None = None,
                 note: str = "", power_cap: Any = None) -> PriorSpec:
    """The running code's prior (``efficiencies``: a ``featurize.layer_profile.LayerEfficiencies``; ``power_cap``: a
    ``featurize.power_cap.PowerCapCurve``; None = defaults)."""
    import featurize.physics.prior as physics
    from featurize.hardware.precision import PRECISION_SEMANTICS
    from featurize.layer_profile import TILE_ELEMENTS, LayerEfficiencies
    from featurize.power_cap import DEFAULT_CURVE
    from predictor.parallel import scaling_record

    eff = (efficiencies or LayerEfficiencies()).to_dict()
    return PriorSpec(
        physics_constants={k: float(getattr(physics, k)) for k in _CONSTANTS},
        layer_efficiencies=LayerEfficiencySpec(**eff, tile_elements=TILE_ELEMENTS),
        features=FeatureSpec(names=list(physics.FEATURE_NAMES), prior_names=list(physics.PRIOR_NAMES),
                             probe=feature_probe()),
        gpu_table_sha256=gpu_table_sha256(),
        precision_semantics=dict(PRECISION_SEMANTICS),
        source_corrections=dict(source_corrections or {}),
        power_cap=PowerCapSpec(**(power_cap or DEFAULT_CURVE).to_dict()),
        data_parallel=scaling_record(),
        note=note,
    )


def write_spec(model_dir: Path, spec: PriorSpec) -> Path:
    path = Path(model_dir) / SPEC_FILE
    path.write_text(spec.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def read_spec(model_dir: Path) -> PriorSpec:
    path = Path(model_dir) / SPEC_FILE
    if not path.is_file():
        raise ModelArtifactError(
            f"{model_dir}: no {SPEC_FILE}: the model does not carry its physics prior (a directory written before "
            "joulecast 0.2 model v2); retrain it (`joulecast retrain`, `python -m training_data.build_model`).")
    try:
        return PriorSpec.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as err:
        raise ModelArtifactError(f"{path} is not a valid prior spec ({err.error_count()} problems: "
                                 f"{err.errors()[0]['loc']}: {err.errors()[0]['msg']}); regenerate the model.") from err


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=PROBE_RTOL, abs_tol=1e-300)


def spec_differences(saved: PriorSpec, running: PriorSpec) -> list[str]:
    """Human-readable differences between a saved spec and the running code's (empty = compatible)."""
    out = []
    for k in sorted(set(saved.physics_constants) | set(running.physics_constants)):
        a, b = saved.physics_constants.get(k), running.physics_constants.get(k)
        if a is None or b is None or not _close(a, b):
            out.append(f"physics constant {k}: model {a}, running code {b}")
    if saved.layer_efficiencies.tile_elements != running.layer_efficiencies.tile_elements:
        out.append("per-layer tile size differs")
    if saved.features.names != running.features.names or saved.features.prior_names != running.features.prior_names:
        out.append("feature names differ")
    for case, feats in saved.features.probe.items():
        now = running.features.probe.get(case, {})
        bad = [k for k, v in feats.items() if k not in now or not _close(v, now[k])]
        if bad or case not in running.features.probe:
            out.append(f"feature definitions: probe {case} differs in {', '.join(bad[:4]) or 'its cases'}")
    if saved.gpu_table_sha256 != running.gpu_table_sha256:
        out.append(f"GPU table sha256: model {saved.gpu_table_sha256[:12]}, running {running.gpu_table_sha256[:12]}")
    if saved.precision_semantics != running.precision_semantics:
        diff = [p for p in set(saved.precision_semantics) | set(running.precision_semantics)
                if saved.precision_semantics.get(p) != running.precision_semantics.get(p)]
        out.append(f"precision semantics of {', '.join(sorted(diff))}")
    return out + _scaling_differences(saved.data_parallel, running.data_parallel)


def _scaling_differences(saved: dict[str, dict[str, float]] | None,
                         running: dict[str, dict[str, float]] | None) -> list[str]:
    """The N-GPU constants that differ (a model written before them carries none: nothing to compare)."""
    if saved is None:
        return []
    running = running or {}
    keys = sorted({(c, k) for c, d in (*saved.items(), *running.items()) for k in d})
    return [f"data-parallel constant {c}.{k}: model {saved.get(c, {}).get(k)}, running code "
            f"{running.get(c, {}).get(k)}" for c, k in keys
            if c not in saved or c not in running or k not in saved[c] or k not in running[c]
            or not _close(saved[c][k], running[c][k])]


def verify_spec(model_dir: Path, manifest: dict[str, Any]) -> PriorSpec:
    """The loading hook: the directory's spec, checksummed and equal to the running code's prior, or an error."""
    model_dir = Path(model_dir)
    if SPEC_FILE not in manifest.get("files", {}):
        raise ModelArtifactError(f"{model_dir}: {SPEC_FILE} is not listed in the manifest's checksummed files; "
                                 "the prior spec is not covered: regenerate or retrain the model.")
    saved = read_spec(model_dir)
    diffs = spec_differences(saved, current_spec())
    if diffs:
        raise ModelArtifactError(
            f"{model_dir}: the model's physics prior does not match this joulecast's ({'; '.join(diffs[:6])}"
            f"{'; ...' if len(diffs) > 6 else ''}). Its boosters learned residuals over the prior they were "
            "trained with: install the joulecast that made the model, or retrain it "
            "(`python -m training_data.build_model --table ... --out DIR`, `joulecast retrain`).")
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m predictor.model.spec", description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--write", action="store_true", help="record the running code's prior in the directory")
    parser.add_argument("--note", default="", help="why the spec was (re)written (with --write)")
    args = parser.parse_args(argv)
    mpath = args.model_dir / "manifest.json"
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    if args.write:
        from featurize.layer_profile import LayerEfficiencies
        from predictor.model.artifact import hash_file

        old = read_spec(args.model_dir) if (args.model_dir / SPEC_FILE).is_file() else None
        eff = None if old is None else LayerEfficiencies(old.layer_efficiencies.compute,
                                                         old.layer_efficiencies.memory, old.layer_efficiencies.source)
        corr = {} if old is None else old.source_corrections
        cap = None if old is None or old.power_cap is None else old.power_cap.curve()
        write_spec(args.model_dir, current_spec(efficiencies=eff, source_corrections=corr, power_cap=cap,
                                                note=args.note or (old.note if old else "")))
        manifest["files"][SPEC_FILE] = hash_file(args.model_dir / SPEC_FILE)
        mpath.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    try:
        verify_spec(args.model_dir, manifest)
    except ModelArtifactError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.model_dir}: prior spec matches the running code")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
