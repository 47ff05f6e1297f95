"""Tensor-core efficiency in the prior, sources with unusable power, and per-GPU calibration offsets."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from test_model_physics import GPU, graph
from test_model_synth import synth_gpus, synth_table

from featurize.errors import ModelArtifactError
from featurize.physics.prior import COMPUTE_EFFICIENCY, TENSOR_CORE_EFFICIENCY, physics_features
from predictor.fit.rows import sample_weights
from predictor.model.artifact import seal
from predictor.model.inference import predict_frame
from predictor.model.loaded import load_model
from predictor.fit.cv import grouped_cv
from predictor.fit.prepare import CALIBRATE_COL, prepare
from predictor.fit.stages import OFFSET_PRIOR_ROWS, fit_with_offsets
from predictor.fit.write import fit_model


def test_tensor_precisions_reach_a_smaller_share_of_their_peak():
    g = graph(bytes_moved_forward=1e3)  # compute-bound on every precision
    f32 = physics_features(g, GPU, batch_size=1024, precision="fp32")
    f16 = physics_features(g, GPU, batch_size=1024, precision="fp16")
    busy32 = f32["t_phys_s"] - f32["t_overhead_s"]
    busy16 = f16["t_phys_s"] - f16["t_overhead_s"]
    assert busy32 == pytest.approx(3e9 / 10e12 / COMPUTE_EFFICIENCY)
    assert busy16 == pytest.approx(3e9 / 80e12 / TENSOR_CORE_EFFICIENCY)
    assert TENSOR_CORE_EFFICIENCY < COMPUTE_EFFICIENCY


def _with_unreliable_source(table):
    src = "pointsampled"
    t = table.copy()
    t.loc[t["gpu"] == "G4", "source"] = src
    t["power_reliable"] = t["source"] != src  # what training_data.corrections marks at build time
    t["power_note"] = ""
    return t, src


def test_unreliable_power_source_teaches_time_only():
    table, src = _with_unreliable_source(synth_table())
    rows, feats, targets = prepare(table, gpu_specs=synth_gpus())
    bad = (rows["source"] == src).to_numpy()
    assert bad.sum() == 24
    assert targets.loc[bad, ["power", "energy"]].isna().all().all()
    assert targets.loc[bad, "time"].notna().all() and targets.loc[~bad, "power"].notna().all()
    assert (rows["_energy_ok"].to_numpy() == ~bad).all()
    res = grouped_cv(table, "gpu", gpu_specs=synth_gpus(), rounds=50)
    assert set(res["oof"]["group"]) == {"G1", "G2", "G3"}  # no energy truth for G4's rows
    assert res["metrics"]["n_rows"] == 72
    assert res["metrics"]["time"]["n_rows"] == 96 and "G4" in res["metrics"]["time"]["per_group_median_ape"]


def _calibrated(factor: float):
    table = synth_table()
    user = table["gpu"] == "G2"
    table.loc[user, "energy_per_sample_j"] *= factor  # the user's GPU runs `factor` slower (power stays physical)
    table.loc[user, "time_per_sample_s"] *= factor
    table[CALIBRATE_COL] = user
    return table, user.to_numpy()


def test_offsets_absorb_a_users_constant_factor_and_leave_other_gpus_alone():
    factor = 1.8
    table, user = _calibrated(factor)
    rows, feats, targets = prepare(table, gpu_specs=synth_gpus())
    gpus = rows["_gpu_canonical"].to_numpy()
    boosters, offsets = fit_with_offsets(feats, targets, sample_weights(rows), gpus, user, rounds=100)
    assert set(offsets) == {"G2"} and offsets["G2"]["n_rows"] == 24
    # the same user rows without the factor: what the boosters' extrapolation to G2 alone gives
    table1, _ = _calibrated(1.0)
    r1, f1, t1 = prepare(table1, gpu_specs=synth_gpus())
    same, offsets1 = fit_with_offsets(f1, t1, sample_weights(r1), gpus, user, rounds=100)
    # the factor sits in the time offset (power was not scaled): at least the shrunk share n / (n + prior rows)
    # of log(factor) for n = 24, at most all of it
    shrunk = 24 / (24 + OFFSET_PRIOR_ROWS) * math.log(factor)
    assert shrunk - 0.03 <= offsets["G2"]["time"] - offsets1["G2"]["time"] <= math.log(factor) + 0.03
    # power was not scaled: its offset moves only by what the power prior over the slower measured time moved the
    # power target (a step slower than its kernels waits at lower power), so the forecast power stays put
    prior_shift = float(np.median(targets["power"].to_numpy()[user] - t1["power"].to_numpy()[user]))
    assert prior_shift > 0.1
    assert 24 / (24 + OFFSET_PRIOR_ROWS) * prior_shift - 0.05 <= offsets["G2"]["power"] - offsets1["G2"]["power"] \
        <= prior_shift + 0.05
    # what the factor alone does to the other GPUs' forecasts, with and without offsets
    x = feats[list(same["time"].feature_name())].to_numpy(float)
    other = ~user
    moved = np.median(np.abs(boosters["time"].predict(x[other]) - same["time"].predict(x[other])))
    # without offsets the same rows shift every GPU (the boosters carry no GPU identity)
    no_cal = np.zeros(len(rows), bool)
    naive, _ = fit_with_offsets(feats, targets, sample_weights(rows), gpus, no_cal, rounds=100)
    naive1, _ = fit_with_offsets(f1, t1, sample_weights(r1), gpus, no_cal, rounds=100)
    leaked = np.median(np.abs(naive["time"].predict(x[other]) - naive1["time"].predict(x[other])))
    assert leaked > 0.1 and moved < 0.3 * leaked, (moved, leaked)  # other GPUs keep most of their forecast


def test_fit_model_writes_offsets_and_predict_applies_them(tmp_path):
    table, user = _calibrated(1.8)
    specs = synth_gpus()
    out = fit_model(table, tmp_path / "m", gpu_specs=specs, run_cv=False)
    m = load_model(out)
    off = m.manifest["gpu_offsets"]
    assert set(off) == {"G2"} and off["G2"]["n_rows"] == 24
    rows, feats, targets = prepare(table, gpu_specs=specs)
    g = rows.filter(like="g_")
    on_g2 = predict_frame(g, specs["G2"], batch_size=rows["batch_size"], model=m)
    manifest = dict(m.manifest, gpu_offsets={})
    m_off = dataclasses.replace(m, manifest=manifest)
    without = predict_frame(g, specs["G2"], batch_size=rows["batch_size"], model=m_off)
    assert np.allclose(on_g2["time_s"] / without["time_s"], math.exp(off["G2"]["time"]))
    # power: its offset times the power prior over each predicted time (slower steps wait at lower power)
    from featurize.physics.prior import power_prior_w
    from predictor.model.inference import feature_frame

    ff = feature_frame(g, specs["G2"], batch_size=rows["batch_size"], precision="fp32",
                       efficiencies=m.layer_efficiencies())
    prior_ratio = (power_prior_w(ff, on_g2["time_per_sample_s"].to_numpy())
                   / power_prior_w(ff, without["time_per_sample_s"].to_numpy()))
    assert np.allclose(on_g2["avg_power_w"] / without["avg_power_w"], prior_ratio * math.exp(off["G2"]["power"]))
    assert np.allclose(on_g2["energy_j"] / without["energy_j"],
                       math.exp(off["G2"]["time"] + off["G2"]["power"]) * prior_ratio)
    on_g1 = predict_frame(g, specs["G1"], batch_size=rows["batch_size"], model=m)
    g1_without = predict_frame(g, specs["G1"], batch_size=rows["batch_size"], model=m_off)
    assert np.allclose(on_g1["energy_j"], g1_without["energy_j"])
    # the card states the calibration
    assert "calibration offsets" in (out / "MODEL_CARD.md").read_text()
    # a malformed offset is refused at load
    man = json.loads((out / "manifest.json").read_text())
    man["gpu_offsets"] = {"G2": {"power": "big"}}
    (out / "manifest.json").write_text(json.dumps(man))
    seal(out)  # re-sealed, so the schema (not the checksum) is what refuses it
    with pytest.raises(ModelArtifactError, match="gpu_offsets"):
        load_model(out)




def test_intervals_widen_outside_the_trained_generations_and_precisions(tmp_path):
    specs = synth_gpus()
    out = fit_model(synth_table(), tmp_path / "m", gpu_specs=specs, run_cv=False)
    m = load_model(out)
    iv = m.manifest["intervals"]
    assert m.manifest["feature_ranges"]["launch_year"] == [2016, 2020]
    newer = dataclasses.replace(specs["G1"], name="G9", launch_year=2024)
    rows, _, _ = prepare(synth_table(), gpu_specs=specs)
    g = rows.filter(like="g_").iloc[:4]

    def sigma_at_zero_novelty(gpu, precision="fp32"):  # the novelty scale is tested on its own
        out = predict_frame(g, gpu, batch_size=32, precision=precision, model=m)
        return out["log_sigma"].to_numpy() / np.minimum(1 + iv["novelty"]["scale"] * out["novelty"].to_numpy(),
                                                        iv["novelty"]["cap"])

    base = sigma_at_zero_novelty(specs["G1"])
    assert np.allclose(base, iv["log_sigma"])
    assert np.allclose(sigma_at_zero_novelty(newer), base * iv["extrapolation_factor"])
    assert np.allclose(sigma_at_zero_novelty(specs["G1"], "fp16"), base * iv["extrapolation_factor"])
    assert iv["extrapolation_factor"] > 1


def test_interval_halfwidth_keeps_every_grouping_above_the_floor():
    from predictor.conformal import INTERVAL_FLOOR_LEVEL, conformal_quantile, interval_halfwidth

    rng = np.random.default_rng(0)
    narrow = rng.normal(0, 0.2, 2000)  # two well-predicted groupings
    wide = rng.normal(0, 0.8, 1000)  # one hard grouping (a new measuring setup)
    hw = interval_halfwidth({"gpu": narrow, "group_arch": narrow, "source": wide})
    pooled = conformal_quantile(np.abs(np.concatenate([narrow, narrow, wide])))
    assert hw > pooled  # pooling alone under-covers the hard grouping ...
    assert np.mean(np.abs(wide) <= hw) >= INTERVAL_FLOOR_LEVEL  # ... the floor restores it
    assert hw == pytest.approx(conformal_quantile(np.abs(wide), INTERVAL_FLOOR_LEVEL))
    # when every grouping is alike, the pooled 90 % quantile is the answer
    same = {g: rng.normal(0, 0.3, 1500) for g in ("gpu", "group_arch", "source")}
    assert interval_halfwidth(same) == pytest.approx(conformal_quantile(np.abs(np.concatenate(list(same.values())))))


def test_novelty_is_the_mean_distance_to_the_k_nearest_reference_rows():
    from predictor.model.loaded import novelty, novelty_scale

    ref = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    x = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0]])
    # k=2: (0 + 1) / 2; (1 + 1) / 2; (7 + 9) / 2
    np.testing.assert_allclose(novelty(ref, x, k=2, chunk=2), [0.5, 1.0, 8.0])
    np.testing.assert_allclose(novelty(ref, x, k=10), novelty(ref, x, k=4))  # k capped at the reference size
    np.testing.assert_allclose(novelty_scale([0.0, 2.0, 100.0], 0.5, 4.0), [1.0, 2.0, 4.0])


def test_interval_widens_away_from_the_training_rows_up_to_the_cap(tmp_path):
    """Normalised conformal: a graph far from every training row gets a wider interval, at most cap x base."""
    specs = synth_gpus()
    m = load_model(fit_model(synth_table(), tmp_path / "m", gpu_specs=specs, run_cv=False))
    iv = m.manifest["intervals"]
    rows, _, _ = prepare(synth_table(), gpu_specs=specs)
    near = rows.filter(like="g_").iloc[:1].assign(g_params=lambda d: d["g_params"] * 1.02)  # not a measured run
    far = near.assign(g_flops_train=near["g_flops_train"] * 1e4, g_flops_forward=near["g_flops_forward"] * 1e4)

    def log_halfwidth(g):
        out = predict_frame(g, specs["G1"], batch_size=32, model=m)
        assert not out["measured_config"].iloc[0]
        return float(np.log(out["interval_high_j"].iloc[0] / out["energy_j"].iloc[0])), float(out["novelty"].iloc[0])

    (hw_near, nov_near), (hw_far, nov_far) = log_halfwidth(near), log_halfwidth(far)
    assert nov_far > nov_near
    assert hw_near == pytest.approx(iv["log_halfwidth"] * min(1 + iv["novelty"]["scale"] * nov_near, iv["novelty"]["cap"]))
    assert iv["log_halfwidth"] <= hw_near < hw_far <= iv["log_halfwidth"] * iv["novelty"]["cap"] + 1e-12
