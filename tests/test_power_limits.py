"""Power limits: a cap at or above the draw changes nothing; below it power is the cap and time stretches along the
learned clock curve; energy versus cap has Zeus's shape; the settable range comes from the GPU table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from featurize import featurize, lookup_gpu
from featurize.errors import InvalidInputError
from featurize.physics.prior import power_limit_range_w
from featurize.power_cap import DEFAULT_CURVE, PowerCapCurve, apply_power_cap, optimal_power_limit_w
from predictor import predict
from predictor.model.inference import predict_frame
from predictor.power_limits import optimal_power_limit_w as prediction_optimum
from tests._graphs import conv_stack_onnx
from tests.conftest import RESNET18

RUN = dict(gpu="A100-SXM4-80GB", batch_size=64, samples_per_epoch=50_000, epochs=10)


@pytest.fixture(scope="module")
def uncapped():
    return predict(str(RESNET18), **RUN)


def _numbers(p):
    return (p.energy_j, p.time_s, p.avg_power_w, p.interval_j, p.energy_per_epoch_j, p.optimal_power_limit_w)


def test_a_cap_at_or_above_the_draw_changes_nothing(uncapped):
    draw = uncapped.avg_power_w
    lo, hi = power_limit_range_w(lookup_gpu(RUN["gpu"]))
    for cap in (math.ceil(draw), draw + 3.0, draw + 13.0, 380.0, hi):
        capped = predict(str(RESNET18), power_limit_w=cap, **RUN)
        assert _numbers(capped) == _numbers(uncapped), cap
        assert capped.layers[["time_s", "energy_j"]].equals(uncapped.layers[["time_s", "energy_j"]])
        assert any("no effect" in w for w in capped.warnings)


def _rows(n: int) -> pd.DataFrame:
    """The example graph's feature rows as predict passes them (with its per-layer profile)."""
    gf = featurize(str(RESNET18), batch_size=64)
    return pd.DataFrame([{**gf.to_dict(), "layer_profile": gf.layer_profile}] * n)


def test_below_the_draw_power_is_the_cap_and_time_stretches(uncapped):
    draw = uncapped.avg_power_w
    caps = np.array([110.0, 150.0, 200.0, 250.0, draw - 1.0])
    rows = _rows(len(caps))
    out = predict_frame(rows, lookup_gpu(RUN["gpu"]), batch_size=64, samples_per_epoch=50_000, epochs=10,
                        power_limit_w=caps)
    np.testing.assert_allclose(out["avg_power_w"], caps, rtol=1e-12)
    assert (out["time_s"] > uncapped.time_s).all()
    assert (np.diff(out["time_s"].to_numpy()) < 0).all()  # a lower cap is never faster
    one = predict(str(RESNET18), power_limit_w=200.0, **RUN)
    assert one.energy_j == pytest.approx(out["energy_j"].iloc[2], rel=1e-12)
    assert any("below the forecast draw" in w for w in one.warnings)


def _sweep(draw_w, t_arith, t_memory, t_other, tdp=250.0, curve=DEFAULT_CURVE):
    caps = np.arange(60.0, draw_w + 1.0)
    t, p = apply_power_cap(np.ones_like(caps), np.full_like(caps, draw_w), caps, tdp_w=tdp, t_arith_s=t_arith,
                           t_memory_s=t_memory, t_other_s=t_other, curve=curve)
    return caps, t, p, t * p


def test_energy_versus_cap_has_an_interior_minimum_on_compute_bound_work():
    caps, t, p, e = _sweep(230.0, t_arith=1.0, t_memory=0.1, t_other=0.02)
    i = int(np.argmin(e))
    assert 0 < i < len(caps) - 1 and e[0] > e[i] < e[-1]
    assert (np.diff(e[i:]) >= -1e-12).all() and (np.diff(e[: i + 1]) <= 1e-12).all()  # one valley
    assert (np.diff(t) <= 1e-12).all() and (np.diff(p) >= 0).all()


def test_energy_falls_with_the_cap_all_the_way_on_memory_bound_work():
    caps, t, p, e = _sweep(230.0, t_arith=0.05, t_memory=1.0, t_other=0.1)
    assert (np.diff(e) > 0).all()  # energy rises with the cap: the clock does not set the time
    np.testing.assert_allclose(t[caps >= 80], 1.0)


def test_the_static_power_makes_the_valley():
    flat = PowerCapCurve(static_frac_of_tdp=0.0, knee_clock=0.05, min_clock=0.05)  # P ~ f^3 throughout
    _, _, _, e = _sweep(230.0, t_arith=1.0, t_memory=0.0, t_other=0.0, curve=flat)
    assert (np.diff(e) > 0).all()  # clock ~ power^(1/3) and nothing static: every watt cut saves energy


def test_optimal_power_limit_is_the_least_energy_within_the_slowdown(uncapped):
    opt = uncapped.optimal_power_limit_w
    lo, hi = power_limit_range_w(lookup_gpu(RUN["gpu"]))
    assert lo <= opt < uncapped.avg_power_w and float(opt).is_integer()
    caps = np.arange(math.ceil(lo), math.floor(uncapped.avg_power_w) + 1.0)
    rows = _rows(len(caps))
    out = predict_frame(rows, lookup_gpu(RUN["gpu"]), batch_size=64, samples_per_epoch=50_000, epochs=10,
                        power_limit_w=caps)
    ok = out["time_s"].to_numpy() <= 1.1 * uncapped.time_s * (1 + 1e-12)
    best = caps[ok][np.argmin(out["energy_j"].to_numpy()[ok])]
    assert opt == best
    at = predict(str(RESNET18), power_limit_w=opt, **RUN)
    assert at.time_s <= 1.1 * uncapped.time_s and at.energy_j < uncapped.energy_j
    assert prediction_optimum(uncapped) == opt
    assert prediction_optimum(uncapped, max_slowdown=0.5) <= opt


def test_no_slowdown_allowed_still_caps_where_the_clock_does_not_set_the_time():
    got = optimal_power_limit_w(1.0, 230.0, limit_min_w=100, limit_max_w=250, default_w=250, tdp_w=250,
                                t_arith_s=0.05, t_memory_s=1.0, t_other_s=0.1, max_slowdown=0.0)
    assert got[0] < 230.0
    none = optimal_power_limit_w(1.0, 99.0, limit_min_w=100, limit_max_w=250, default_w=250, tdp_w=250,
                                 t_arith_s=1.0, t_memory_s=0.0, t_other_s=0.0)
    assert none[0] == 250.0  # the draw is below the lowest settable cap: keep the default
    with pytest.raises(InvalidInputError, match="max_slowdown"):
        optimal_power_limit_w(1.0, 230.0, limit_min_w=100, limit_max_w=250, default_w=250, tdp_w=250,
                              t_arith_s=1.0, t_memory_s=0.0, t_other_s=0.0, max_slowdown=float("nan"))


def test_compute_bound_net_on_a_v100_has_its_optimum_inside_the_range():
    gpu = "V100-PCIE-32GB"
    p = predict(conv_stack_onnx(layers=4, batch=64), gpu=gpu, batch_size=64, samples_per_epoch=10_000)
    lo, hi = power_limit_range_w(lookup_gpu(gpu))
    caps = np.arange(lo, hi + 1.0, 10.0)
    e = [predict(conv_stack_onnx(layers=4, batch=64), gpu=gpu, batch_size=64, samples_per_epoch=10_000,
                 power_limit_w=c).energy_j for c in caps]
    i = int(np.argmin(e))
    assert 0 < i and caps[i] < p.avg_power_w  # Zeus's valley: below the draw, above the lowest cap


@pytest.mark.parametrize("gpu, lo, hi", [("H100-SXM5-80GB", 200.0, 700.0), ("RTX-3090", 100.0, 350.0),
                                         ("V100-PCIE-32GB", 100.0, 250.0), ("A100-PCIE-80GB", 75.0, 399.0)])
def test_settable_range_comes_from_nvidia_smi_where_known_else_the_rule(gpu, lo, hi):
    assert power_limit_range_w(lookup_gpu(gpu)) == pytest.approx((lo, hi))


def test_a_cap_outside_the_settable_range_is_refused_naming_it():
    with pytest.raises(InvalidInputError, match=r"power_limit_w=150.*\[200, 700\]"):
        predict(str(RESNET18), gpu="H100-SXM5-80GB", batch_size=64, power_limit_w=150)


def test_the_model_carries_its_power_cap_curve_and_uses_it(tmp_path):
    import json
    import shutil

    from featurize.errors import ModelArtifactError
    from predictor.model.artifact import seal
    from predictor.model.artifact import hash_file
    from predictor.model.loaded import MANIFEST, load_model, shipped_model_dir
    from predictor.model.spec import SPEC_FILE

    assert load_model(None).power_cap_curve() == DEFAULT_CURVE  # recorded in prior_spec.json when the model was made

    def copy_with(edit, name):
        dest = tmp_path / name
        shutil.copytree(shipped_model_dir(), dest)
        data = json.loads((dest / SPEC_FILE).read_text())
        edit(data["power_cap"])
        (dest / SPEC_FILE).write_text(json.dumps(data))
        man = json.loads((dest / MANIFEST).read_text())
        man["files"][SPEC_FILE] = hash_file(dest / SPEC_FILE)
        (dest / MANIFEST).write_text(json.dumps(man))
        seal(dest)
        return dest

    steep = copy_with(lambda c: c.update(static_frac_of_tdp=0.45), "steep")
    kw = dict(RUN, power_limit_w=150.0)
    assert predict(str(RESNET18), model_dir=steep, **kw).time_s > predict(str(RESNET18), **kw).time_s
    assert predict(str(RESNET18), model_dir=steep, **RUN).energy_j == predict(str(RESNET18), **RUN).energy_j
    bad = copy_with(lambda c: c.update(knee_clock=1.5), "bad")
    with pytest.raises(ModelArtifactError, match="power_cap"):
        load_model(bad)


def test_the_shipped_curve_reproduces_zeus_power_limit_sweeps(built_table):
    """Real sweeps (V100, P100, Quadro RTX 6000; every cap of each configuration forecast from its measured default
    point): per GPU the median per-point energy error is a few percent, well under the two naive rules."""
    from training_data.fit_power_cap import baselines, summary, sweep_points

    points = sweep_points(built_table)
    assert points["gpu"].nunique() == 3 and (~points["default_power_limit"].astype(bool)).sum() > 400
    per_gpu = {g: summary(points[points["gpu"] == g], DEFAULT_CURVE)["energy_median_pct"]
               for g in points["gpu"].unique()}
    assert max(per_gpu.values()) < 6.5, per_gpu
    base = baselines(points)
    overall = summary(points, DEFAULT_CURVE)["energy_median_pct"]
    assert overall < 0.8 * base["cube_root"]["energy_median_pct"] and overall < 0.7 * base["no_change"]["energy_median_pct"]
