"""Golden predictions of the shipped model (regenerate only with ``python tests/update_golden.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from predictor.model.loaded import MANIFEST, load_model, shipped_model_dir

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).with_name("golden") / "predictions.json"
RTOL = 1e-4


def _shipped_or_skip():
    if not (shipped_model_dir() / MANIFEST).is_file():
        pytest.skip("no shipped model in models/ yet (python -m training_data.build_model)")
    return load_model()


def test_shipped_model_loads_and_verifies():
    m = _shipped_or_skip()
    assert m.manifest["files"] and set(m.boosters) and m.features
    # the public measurements stay in ../shared/data: no table (nor any data file) ships with the model
    assert "training_table.parquet" not in m.manifest["files"]
    reference = m.manifest["intervals"]["novelty"]["file"]
    assert not [p.name for p in m.path.iterdir()
                if p.suffix in (".parquet", ".csv", ".feather") and p.name != reference]
    # the novelty reference holds configuration descriptors only: physics features computed from the graph, the
    # GPU's specifications and the batch size, standardised; no measured energy, time or power
    from featurize.physics.prior import FEATURE_NAMES

    header = (m.path / reference).read_text().splitlines()[0].split(",")
    assert header == m.manifest["intervals"]["novelty"]["features"] and set(header) <= set(FEATURE_NAMES)
    table = m.manifest["training_table"]
    assert len(table["table_sha256"]) == 64 and table["rows"] > 1000 and "build_table" in table["rebuild"]
    assert m.manifest["intervals"]["log_halfwidth"] > 0


def test_golden_predictions():
    m = _shipped_or_skip()
    sys.path.insert(0, str(Path(__file__).parent))
    from update_golden import FIELDS, compute

    golden = json.loads(GOLDEN.read_text())
    assert golden[0]["model_version"] == m.version, "model changed: run python tests/update_golden.py"
    now = compute()
    assert len(now) == len(golden)
    for g, n in zip(golden, now):
        assert (g["graph"], g["gpu"]) == (n["graph"], n["gpu"])
        for f in FIELDS:
            assert n[f] == pytest.approx(g[f], rel=RTOL), (g["graph"], g["gpu"], f)


def test_golden_cases_behave_physically():
    """The behaviour behind the golden numbers (a golden file only detects change): for each golden case, energy is
    time x power; both intervals hold their forecast; time over the per-layer prior stays within the model's bound;
    and the GPUs keep the per-layer prior's order (the learned residual cannot reorder them)."""
    import math

    m = _shipped_or_skip()
    golden = json.loads(GOLDEN.read_text())
    bound = m.manifest["time_model"]["bound"]
    for g in golden:
        assert g["energy_j"] == pytest.approx(g["time_s"] * g["avg_power_w"], rel=1e-9)
        assert g["interval_low_j"] < g["energy_j"] < g["interval_high_j"]
        assert g["interval_low_s"] < g["time_s"] < g["interval_high_s"]
        # time / (per-layer prior x samples): within the bound; validation samples cost a forward pass only
        ratio = g["time_s"] / (g["t_layers_s"] * g["epochs"] * (g["samples_per_epoch"] + g["val_samples"]))
        share = g["samples_per_epoch"] / (g["samples_per_epoch"] + g["val_samples"])
        assert math.exp(-bound) * share * (1 - 1e-9) <= ratio <= math.exp(bound) * (1 + 1e-9), g
    for case in {g["graph"] for g in golden}:
        rows = [g for g in golden if g["graph"] == case]
        by_prior = sorted(rows, key=lambda g: g["t_layers_s"])
        assert [g["gpu"] for g in by_prior] == [g["gpu"] for g in sorted(rows, key=lambda g: g["time_s"])], case


@pytest.mark.timeout(300)
def test_installed_wheel_finds_and_verifies_models(tmp_path):
    """Build the wheel, install it into a bare --target dir, load the model from outside the repo."""
    _shipped_or_skip()
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, capture_output=True, cwd=tmp_path)
    wheel = next(wheels.glob("joulecast-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, cwd=tmp_path)
    code = textwrap.dedent(f"""
        import predictor.model.loaded as pm, featurize
        m = pm.load_model()
        assert str(m.path).startswith({str(site)!r}), m.path
        assert pm.__file__.startswith({str(site)!r}), pm.__file__
        assert featurize.__file__.startswith({str(site)!r})
        from predictor import predict
        p = predict(str(m.path / "examples" / "resnet18.onnx"), gpu="A100", batch_size=64,
                    samples_per_epoch=50000, epochs=10)
        print(m.version, p.energy_j)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    res = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert float(res.stdout.split()[-1]) > 0


def test_shipped_local_stage_covers_the_measured_pairs_only():
    """The seen-configuration stage applies to measured (GPU, precision) pairs; "V100" resolves to its default
    variant (the SXM2 board, not the measured PCIe one); an unmeasured GPU gets the main boosters alone."""
    import dataclasses
    import warnings

    from predictor import predict
    from predictor.model.inference import predict_frame

    m = _shipped_or_skip()
    pairs = {(g, p) for g, p, _ in m.manifest["local"]["applies_to"]}
    assert {("V100-PCIE-32GB", "fp32"), ("RTX-3090", "fp32"), ("A100-PCIE-80GB", "tf32")} <= pairs
    assert ("A100-PCIE-80GB", "fp32") not in pairs
    example = str(REPO / "models" / "examples" / "resnet18.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = predict(example, gpu="V100", batch_size=64, samples_per_epoch=1000)
    # an ambiguous name has one rule (its default variant, which the model did not measure): the full name is needed
    assert p.gpu == "V100-SXM2-32GB" and any("default variant V100-SXM2-32GB" in w for w in p.warnings)
    from featurize import featurize, lookup_gpu

    row = featurize(example, batch_size=64).to_dict()
    import pandas as pd

    frame = pd.DataFrame([row])
    main_only = dataclasses.replace(m, local=None)
    for gpu, measured in (("T4", False), ("V100-PCIE-32GB", True)):
        full = predict_frame(frame, lookup_gpu(gpu), batch_size=64, model=m)["energy_j"].iloc[0]
        base = predict_frame(frame, lookup_gpu(gpu), batch_size=64, model=main_only)["energy_j"].iloc[0]
        assert bool(full != base) is measured, gpu


def _measured_row_errors(built_table):
    """Absolute percent error of the shipped model's energy per sample on the subset's measured rows, whether each
    row was measured under a cap below its board's limit, and its source."""
    import numpy as np
    import pandas as pd

    from featurize import lookup_gpu
    from predictor.model.inference import predict_frame
    from predictor.fit.prepare import prepare

    m = _shipped_or_skip()
    trained_on = {src["source"] for src in m.manifest["sources"]}  # the sources the shipped model was fitted on
    # prepare keeps rows capped below the board's limit out of the fit: read every row as if uncapped, then price
    # each at its measured cap (predict_frame's power_limit_w), as a user asking for that cap gets it
    from predictor.power_cap_rows import capped_below_default

    tdp_w = [lookup_gpu(g).tdp_w for g in built_table["gpu"]]
    table = built_table.assign(_cap_w=built_table["power_limit_w"], power_limit_w=np.nan, default_power_limit=True,
                               _capped=capped_below_default(built_table, tdp_w))
    rows, _, targets = prepare(table)
    ok = rows["_energy_ok"].to_numpy(bool) & rows["source"].isin(trained_on).to_numpy()
    rows, true = rows[ok], targets["energy_per_sample_j"].to_numpy()[ok]
    specs = {g: lookup_gpu(g) for g in rows["_gpu_canonical"].unique()}
    rows = rows.assign(power_limit_w=rows["_cap_w"].astype(float))
    out = predict_frame(rows, [specs[g] for g in rows["_gpu_canonical"]], batch_size=rows["batch_size"].to_numpy(),
                        precision=rows["precision"].astype(str).to_numpy(),
                        power_limit_w=rows["power_limit_w"].to_numpy(), model=m)
    ape = pd.Series(np.abs(out["energy_per_sample_j"].to_numpy() / true - 1) * 100, index=rows.index)
    return ape, rows["_capped"].to_numpy(bool), rows["source"]


def test_shipped_model_fits_its_measured_rows(built_table):
    """On the measured rows at their board's default limit the shipped model, local stage included, is within a few
    percent; the main boosters alone are not (Zeus: 13 % median out of fold). Rows capped below it (Zeus sweeps)
    are priced by the learned power-cap curve (featurize.power_cap: 3-5 % per held-out Zeus GPU on its own) on top
    of the forecast at the default limit: within 10 %."""
    ape, capped, source = _measured_row_errors(built_table)
    per_source = ape[~capped].groupby(source[~capped]).median()
    assert ape[~capped].median() < 3.0 and (per_source.drop("zeus") < 5.0).all(), per_source.to_dict()
    assert capped.sum() > 100  # the Zeus power-limit sweeps: see the test below


@pytest.mark.xfail(strict=True, reason=(
    "open (issue 28 refit): Zeus's measured rows at the default limit sit at 8.3 % median (time 5-17 % low), its "
    "rows capped below the board's limit (priced by the power-cap curve) at 10.3 %. The "
    "time model applies its implementation class's offset (Zeus: reference) but not Zeus's own learned source "
    "offset (+0.071 log, stated in the manifest), and the seen-configuration stage learns power only"))
def test_shipped_model_fits_zeus_measured_rows(built_table):
    ape, capped, source = _measured_row_errors(built_table)
    assert ape[~capped & (source == "zeus")].median() < 5.0 and ape[capped].median() < 10.0


def test_shipped_fp32_on_a100_runs_gemms_in_fp32():
    """PyTorch's fp32 on an A100: GEMMs on the FP32 cores, convolutions on TF32. A GPT step in fp32 is predicted
    well below its tf32 speed (shipped model 2.0x, per-layer prior 2.4x)."""
    import sys
    import warnings

    from predictor import predict

    _shipped_or_skip()
    sys.path.insert(0, str(REPO / "tests"))
    from _graphs import gpt_onnx

    gpt = gpt_onnx(layers=4, seq=512, batch=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp32, tf32 = (predict(gpt, gpu="A100-PCIE-80GB", batch_size=8, samples_per_epoch=1000, precision=p)
                      for p in ("fp32", "tf32"))
        v100 = predict(gpt, gpu="V100-PCIE-32GB", batch_size=8, samples_per_epoch=1000)
    assert fp32.time_s > 1.5 * tf32.time_s
    # the note on cuDNN's TF32 convolutions applies to graphs with convolutions only (test_cli_consistency.py)
    assert not any("matmuls on the FP32 cores" in w for w in fp32.warnings + tf32.warnings + v100.warnings)
