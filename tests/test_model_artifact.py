"""Model directory: fit -> write atomically -> load/verify round trip, tamper and version checks (synthetic data)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from test_model_synth import synth_gpus, synth_table

from featurize.errors import ModelArtifactError
from featurize.physics.prior import power_prior_w
from predictor.model.artifact import seal
from predictor.model.inference import clip_power_w, feature_frame, predict_frame
from predictor.model.loaded import load_model
from predictor.conformal import conformal_quantile
from predictor.fit.cv import grouped_cv
from predictor.fit.prepare import prepare
from predictor.fit.write import fit_model


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "model"
    fit_model(synth_table(), out, gpu_specs=synth_gpus(), run_cv=True)
    return out


def test_round_trip_predictions_match_training_code(synth_dir):
    m = load_model(synth_dir)
    table = synth_table()
    rows, feats, targets = prepare(table, gpu_specs=synth_gpus())
    specs = synth_gpus()
    out = predict_frame(rows, [specs[g] for g in rows["gpu"]], batch_size=rows["batch_size"].to_numpy(),
                        samples_per_epoch=100, epochs=3, val_samples=0, model=m)
    x = feats[m.features].to_numpy()
    shrink = m.manifest["shrink"]
    xl = feats[list(m.manifest["local"]["features"])].to_numpy()
    local_t, local_p = (m.local.boosters[t].predict(xl) for t in ("time", "power"))
    assert np.abs(local_p).max() > 1e-3  # every synthetic row is a measured configuration: both terms apply
    bound = m.manifest["time_model"]["bound"]
    raw_t = m.boosters["time"].predict(feats[m.booster_features("time")].to_numpy())
    # reference implementation: offset 0; the bounded shared residual, then the measured configuration's own term
    time_s = feats["t_layers_s"] * np.exp(bound * np.tanh(shrink * raw_t / bound) + local_t)
    # power: the prior over the predicted time (a step slower than its kernels waits at lower power)
    expect = time_s * clip_power_w(power_prior_w(feats, time_s) * np.exp(shrink * m.boosters["power"].predict(x)
                                                                         + local_p), feats)
    np.testing.assert_allclose(out["energy_per_sample_j"], expect, rtol=1e-12)
    np.testing.assert_allclose(out["energy_j"], expect * 300, rtol=1e-12)
    assert (out["interval_low_j"] < out["energy_j"]).all() and (out["energy_j"] < out["interval_high_j"]).all()
    # in-sample fit on smooth synthetic physics is close
    assert np.median(np.abs(out["energy_per_sample_j"] / targets["energy_per_sample_j"] - 1)) < 0.25


def test_manifest_contents(synth_dir):
    man = json.loads((synth_dir / "manifest.json").read_text())
    assert man["design"] == "time_power" and set(man["boosters"]) == {"time", "power"}
    assert set(man["files"]) == {"time.txt", "power.txt", "local_time.txt", "local_power.txt", "time_accuracy.png",
                                 "novelty_reference.csv", "training_table.parquet", "prior_spec.json"}
    table = synth_table()
    assert man["local"]["applies_to"] == [[g, "fp32", int(table.loc[table["gpu"] == g, "group_arch"].nunique())]
                                          for g in ("G1", "G2", "G3", "G4")]
    assert set(man["metrics"]["cv_rows"]) >= {"median_ape", "p90_ape", "coverage_90"}
    assert man["gpus_seen"] == ["G1", "G2", "G3", "G4"]
    assert set(man["metrics"]["cv"]) == {"gpu", "group_arch", "source"}
    assert 0 < man["intervals"]["log_halfwidth"] < 2
    assert man["feature_ranges"]["batch_size"] == [16.0, 128.0]
    assert (synth_dir / "MODEL_CARD.md").read_text().startswith("# joulecast-pre")
    assert len(pd.read_parquet(synth_dir / "training_table.parquet")) == 96


def test_local_stage_only_for_measured_gpu_precision_pairs(synth_dir):
    """A GPU (or precision) the table never measured gets exactly the main model: boosters x shrink, no local term."""
    import dataclasses

    m = load_model(synth_dir)
    table = synth_table().iloc[:8]
    spec = synth_gpus()[table["gpu"].iloc[0]]
    renamed = dataclasses.replace(spec, name="G-unseen")
    main_only = dataclasses.replace(m, local=None)
    seen = predict_frame(table, spec, batch_size=32, model=m)["energy_per_sample_j"].to_numpy()
    seen_main = predict_frame(table, spec, batch_size=32, model=main_only)["energy_per_sample_j"].to_numpy()
    unseen = predict_frame(table, renamed, batch_size=32, model=m)["energy_per_sample_j"].to_numpy()
    other_prec = predict_frame(table, spec, batch_size=32, precision="fp16", model=m)["energy_per_sample_j"]
    other_prec_main = predict_frame(table, spec, batch_size=32, precision="fp16", model=main_only)
    np.testing.assert_allclose(unseen, seen_main, rtol=1e-12)
    # a graph matching no measured run on a measured pair: the stage weighs n_arch / (n_arch + prior)
    from predictor.model.loaded import LOCAL_ARCH_PRIOR

    n_arch = m.local.applies_to[(spec.name, "fp32")]
    new_graph = table.assign(g_params=table["g_params"] * 1.5)
    new_full = predict_frame(new_graph, spec, batch_size=32, model=m)
    new_main = predict_frame(new_graph, spec, batch_size=32, model=main_only)
    assert not new_full["measured_config"].any() and predict_frame(table, spec, batch_size=32, model=m)[
        "measured_config"].all()
    feats = feature_frame(new_graph, spec, batch_size=32)
    xl = feats[list(m.local.features)].to_numpy()
    term = m.local.boosters["power"].predict(xl)  # its time term applies to measured configurations only
    np.testing.assert_allclose(np.log(new_full["energy_per_sample_j"] / new_main["energy_per_sample_j"]),
                               n_arch / (n_arch + LOCAL_ARCH_PRIOR) * term, atol=1e-9)
    np.testing.assert_allclose(other_prec, other_prec_main["energy_per_sample_j"], rtol=1e-12)
    assert np.abs(np.log(seen / seen_main)).max() > 1e-3


def test_validation_samples_cost_forward_only(synth_dir):
    table = synth_table().iloc[:1]
    spec = synth_gpus()[table["gpu"].iloc[0]]
    a = predict_frame(table, spec, batch_size=32, samples_per_epoch=1000, model=synth_dir)
    b = predict_frame(table, spec, batch_size=32, samples_per_epoch=1000, val_samples=300, model=synth_dir)
    ratio = table["g_flops_forward"].iloc[0] / table["g_flops_train"].iloc[0]
    assert b["energy_per_epoch_j"].iloc[0] == pytest.approx(a["energy_per_epoch_j"].iloc[0] * (1 + 0.3 * ratio))


def test_tampered_file_is_refused(synth_dir, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(synth_dir, copy)
    data = bytearray((copy / "time.txt").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "time.txt").write_bytes(bytes(data))
    with pytest.raises(ModelArtifactError, match="sha256"):
        load_model(copy)


def test_missing_file_incompatible_version_and_bad_json(synth_dir, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(synth_dir, copy)
    (copy / "power.txt").unlink()
    with pytest.raises(ModelArtifactError, match="missing"):
        load_model(copy)
    shutil.rmtree(copy)
    shutil.copytree(synth_dir, copy)
    man = json.loads((copy / "manifest.json").read_text())
    man["compatible_package"] = ">=99"
    (copy / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelArtifactError, match="manifest.json: sha256.*does not match SHA256SUMS"):
        load_model(copy)
    seal(copy)  # a deliberate edit, re-sealed: the manifest's own checks apply
    with pytest.raises(ModelArtifactError, match="needs joulecast"):
        load_model(copy)
    (copy / "manifest.json").write_text("{not json")
    seal(copy)
    with pytest.raises(ModelArtifactError, match="JSON"):
        load_model(copy)
    with pytest.raises(ModelArtifactError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelArtifactError, match="manifest.json"):
        load_model(tmp_path)


def test_refuses_to_overwrite_and_is_deterministic(synth_dir, tmp_path):
    with pytest.raises(FileExistsError):
        fit_model(synth_table(), synth_dir, gpu_specs=synth_gpus())
    out = fit_model(synth_table(), tmp_path / "again", gpu_specs=synth_gpus(), run_cv=False,
                    base_manifest=json.loads((synth_dir / "manifest.json").read_text()))
    a = json.loads((synth_dir / "manifest.json").read_text())["files"]
    b = json.loads((out / "manifest.json").read_text())["files"]
    a.pop("time_accuracy.png")  # the out-of-fold time plot comes with cross-validation only
    assert a == b  # same seed + same table -> byte-identical boosters and table copy
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dir left behind


def test_grouped_cv_holds_out_each_group():
    res = grouped_cv(synth_table(), "gpu", gpu_specs=synth_gpus(), rounds=50)
    oof = res["oof"]
    assert set(oof["group"]) == {"G1", "G2", "G3", "G4"} and oof["pred_j"].notna().all()
    assert res["metrics"]["n_groups"] == 4
    # coverage recomputed independently: each group's 90 % half-width from the other groups' |log residual| /
    # novelty scale (the ceil((n + 1) x 0.9)-th smallest), then the share of rows inside it
    r = (oof["log_resid"].abs() / oof["scale"]).to_numpy()
    hits = []
    for g in sorted(set(oof["group"])):
        inside = (oof["group"] == g).to_numpy()
        other = np.sort(r[~inside])
        q = other[min(len(other), int(np.ceil((len(other) + 1) * 0.9))) - 1]
        hits += list(r[inside] <= q)
    assert res["metrics"]["coverage_90"] == pytest.approx(np.mean(hits), abs=1e-12)


def test_leave_group_out_coverage_by_hand():
    from predictor.conformal import loo_group_coverage

    # group a's residuals (0.1) are all inside b's quantile (1.0); b's (1.0) all outside a's (0.1)
    oof = pd.DataFrame({"group": ["a"] * 10 + ["b"] * 10, "log_resid": [0.1] * 10 + [-1.0] * 10,
                        "scale": 1.0, "true_j": 1.0, "pred_j": 1.0})
    cov, width = loo_group_coverage(oof)
    assert cov == 0.5 and width == pytest.approx((1.0 + 0.1) / 2)


def test_conformal_quantile():
    assert conformal_quantile(np.arange(1, 10), 0.9) == 9  # ceil(10 * 0.9) = 9th smallest
    assert conformal_quantile(np.arange(1, 100), 0.5) == 50


@pytest.mark.parametrize("objective", ["huber", "regression"])
def test_numpy_tree_walker_matches_lightgbm(objective):
    import lightgbm as lgb

    from predictor.model.trees import TreeEnsemble

    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 5))
    x[rng.random(x.shape) < 0.05] = np.nan  # NaN-missing splits
    x[:, 4] = np.where(rng.random(600) < 0.3, 0.0, x[:, 4])  # zeros
    y = np.nan_to_num(x[:, 0]) * 2 + np.sin(np.nan_to_num(x[:, 1])) + rng.normal(0, 0.1, 600)
    booster = lgb.train({"objective": objective, "num_leaves": 7, "max_depth": 4, "verbose": -1, "seed": 0,
                         "monotone_constraints": [1, 0, 0, 0, 0]},
                        lgb.Dataset(x, y, feature_name=[f"f{i}" for i in range(5)]), num_boost_round=40)
    walker = TreeEnsemble.from_string(booster.model_to_string())
    test = rng.normal(size=(300, 5))
    test[rng.random(test.shape) < 0.1] = np.nan
    test[:50, 4] = 0.0
    np.testing.assert_allclose(walker.predict(test), booster.predict(test), rtol=1e-12, atol=1e-12)
    assert walker.feature_name() == [f"f{i}" for i in range(5)]


def test_source_corrections_licenses_and_canonical_gpus():
    import pandas as pd

    from predictor.fit.write import SOURCE_INFO
    from training_data.corrections import apply_corrections, source_gpu_names

    rows = pd.DataFrame({"source": ["zeus", "zeus", "delrey", "mayaki"],
                         "gpu": ["NVIDIA V100", "NVIDIA P100", "NVIDIA V100", "A100-PCIE-80GB"],
                         "precision": ["fp32", "fp32", "fp32", "fp32"]})
    assert source_gpu_names(rows).tolist() == ["V100-PCIE-32GB", "P100-PCIE-16GB", "NVIDIA V100", "A100-PCIE-80GB"]
    fixed = apply_corrections(rows)
    assert fixed["precision"].tolist() == ["fp32", "fp32", "fp32", "tf32"]
    assert fixed["power_reliable"].tolist() == [True, True, True, False]
    assert "point sample" in fixed["power_note"].iloc[3] and fixed.attrs["source_corrections"]["precision"]
    assert set(SOURCE_INFO) == {"seaa2023", "delrey", "zeus", "mayaki", "lambda_dlbench", "nvidia_dle", "mlperf_training"}


def test_shipped_package_names_no_data_source():
    """Source-specific corrections live in training_data/ (build time); the shipped prior code names no source."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for path in [*(repo / "predictor").glob("*.py"), *(repo / "featurize").glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        assert "SOURCE_PRECISION" not in text and "SOURCE_GPU_NAMES" not in text, path
        assert '"mayaki": "tf32"' not in text, path


def test_shipped_manifest_names_canonical_gpus_and_licenses():
    from featurize import lookup_gpu

    m = load_model(None).manifest
    for name in m["gpus_seen"]:
        assert lookup_gpu(name).name == name
    assert all("user-supplied" not in s["license"] for s in m["sources"])


def test_model_without_table_records_how_to_rebuild_it(synth_dir, tmp_path):
    """The shipped model is written with write_table=False: same boosters, no data file, the table's hash kept."""
    out = fit_model(synth_table(), tmp_path / "bare", gpu_specs=synth_gpus(), run_cv=False, write_table=False,
                    base_manifest=json.loads((synth_dir / "manifest.json").read_text()))
    man = json.loads((out / "manifest.json").read_text())
    full = json.loads((synth_dir / "manifest.json").read_text())
    boosters = ("time.txt", "power.txt", "local_time.txt", "local_power.txt", "novelty_reference.csv",
                "prior_spec.json")
    assert set(man["files"]) == set(boosters) and not (out / "training_table.parquet").exists()
    assert {f: man["files"][f] for f in boosters} == {f: full["files"][f] for f in boosters}
    assert man["training_table"]["rows"] == full["training_table"]["rows"] == 96
    assert "build_table" in man["training_table"]["rebuild"] and "file" not in man["training_table"]
    assert "is not shipped" in (out / "MODEL_CARD.md").read_text()
    load_model(out)  # verifies


def test_measured_configuration_gets_the_withheld_run_interval(synth_dir):
    """A (GPU, precision, graph) that matches a training run within 1 % gets the row-fold half-width; a graph
    with 5 % more FLOPs, another precision or another GPU gets the grouped one."""
    m = load_model(synth_dir)
    iv = m.manifest["intervals"]
    assert 0 < iv["measured_log_halfwidth"] <= iv["log_halfwidth"]  # never wider
    table = synth_table().iloc[:1]
    spec = synth_gpus()[table["gpu"].iloc[0]]

    def halfwidth(rows, gpu=spec, precision="fp32"):
        out = predict_frame(rows, gpu, batch_size=32, precision=precision, model=m)
        return float(np.log(out["interval_high_j"].iloc[0] / out["energy_j"].iloc[0])), bool(
            out["measured_config"].iloc[0])

    assert halfwidth(table) == pytest.approx((iv["measured_log_halfwidth"], True))
    bigger = table.assign(g_flops_train=table["g_flops_train"] * 1.05)
    nov = predict_frame(bigger, spec, batch_size=32, model=m)["novelty"].iloc[0]
    factor = min(1 + iv["novelty"]["scale"] * nov, iv["novelty"]["cap"])
    assert halfwidth(bigger) == pytest.approx((iv["log_halfwidth"] * factor, False))
    assert halfwidth(table, precision="fp16")[1] is False
    other = next(s for name, s in synth_gpus().items() if name != spec.name)
    assert halfwidth(table, gpu=other)[1] == any(
        g == other.name and abs(p / table["g_params"].iloc[0] - 1) < 0.01 for g, _, p, _ in m.manifest["local"]["measured"])


def test_a_table_built_before_the_corrections_moved_is_refused():
    import pandas as pd

    from featurize.errors import SchemaError
    from predictor.fit.prepare import require_corrected
    from training_data.corrections import apply_corrections

    old = pd.DataFrame({"source": ["mayaki"], "gpu": ["A100-PCIE-80GB"], "precision": ["fp32"]})
    with pytest.raises(SchemaError, match="python -m training_data.corrections"):
        require_corrected(old)
    require_corrected(apply_corrections(old))  # corrected: accepted
