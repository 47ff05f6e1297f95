"""Zoo graphs vs the data's FLOP figures, mayaki parameter reconstruction, and the built table's hash."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featurize.errors import InvalidInputError
from predictor.table_hash import table_sha256
from training_data.build_table import FEATURE_COLUMNS, finish_table
from training_data.zoo import ZOO, get_zoo_model, parse_name
from training_data.zoo.seq import mayaki_params

TABLE = Path(__file__).resolve().parents[1] / "training_data" / "table" / "training_table.parquet"
NOT_BUILT = "training table not built (gitignored; python -m training_data.build_table, ~35 min cold)"


def _gflops(name: str, shape: str) -> float:
    """Forward GFLOPs (2 x conv/linear MACs, fvcore's counting) of one sample."""
    fvcore = pytest.importorskip("fvcore.nn")
    module, x = get_zoo_model(name, shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fca = fvcore.FlopCountAnalysis(module, x[:1])
        fca.unsupported_ops_warnings(False)
        fca.uncalled_modules_warnings(False)
        return 2 * fca.total() / 1e9


# (zoo name, input shape, reference GFLOPs from the data / published, achieved tolerance)
FLOP_CASES = [
    ("vgg16_tl", "3x128x128", 10.02877, 0.005),  # seaa gflops_forward_per_image
    ("resnet50_tl", "3x128x128", 2.52438, 0.01),  # seaa
    ("mobilenet_v2_a05_tl", "3x128x128", 0.064028, 0.08),  # seaa (ours 0.0686; Keras counts differ in the head)
    ("nasnet_mobile_tl", "3x128x128", 0.371647, 0.02),  # seaa; approximation with matched MACs
    ("nasnet_mobile_tl", "3x224x224", 1.138, 0.02),  # published 0.569 GMACs
    ("inception_v3_tl?classes=102", "3x75x75", 0.4167, 0.06),  # delrey gflops
    ("inception_v3_tl?classes=102", "3x128x128", 1.50256, 0.05),  # delrey
    ("inception_v3_tl?classes=120", "3x224x224", 5.89837, 0.05),  # delrey
    ("resnet50", "3x224x224", 7.72, 0.02),  # published Keras ResNet50 3.86 GMACs
]


@pytest.mark.parametrize("name,shape,ref,tol", FLOP_CASES)
def test_forward_flops_match_data(name, shape, ref, tol):
    assert _gflops(name, shape) == pytest.approx(ref, rel=tol)


def test_mayaki_reconstruction_exact_for_gpt_and_long_bert(shared_data):
    raw = pd.read_csv(shared_data / "mayaki_a100_transformers" / "train_steps.csv")
    ours = np.array([mayaki_params(*a) for a in zip(raw.model, raw.num_layers, raw.d_model, raw.seq_length)])
    exact = ours == raw["params"].to_numpy()
    assert exact.sum() == 486
    assert set(raw.loc[~exact, "seq_length"]) == {256} and set(raw.loc[~exact, "model"]) == {"bert"}


def test_mayaki_module_matches_formula():
    module, x = get_zoo_model("mayaki_gpt?layers=4&d_model=128&heads=4", "seq512")
    assert sum(p.numel() for p in module.parameters()) == mayaki_params("gpt", 4, 128, 512) == 2629096
    assert module(x).shape == (2, 512, 1000)


def test_transfer_models_keep_backbone_prefix():
    module, _ = get_zoo_model("mobilenet_v2_a05_tl")
    names = [n for n, _ in module.named_parameters()]
    assert all(n.startswith(("backbone.", "head.")) for n in names)
    assert all(ZOO[k].frozen_prefix == "backbone" for k in ZOO if k.endswith("_tl"))


def test_unknown_zoo_name_is_clear():
    with pytest.raises(InvalidInputError, match="resnet50"):
        parse_name("zoo:resnet5O")


def _fake_runs():
    return pd.DataFrame({"source": ["b", "a", "a"], "run_id": ["1", "2", "1"], "architecture": ["x"] * 3,
                         "model": ["m"] * 3, "input_shape": [""] * 3, "batch_size": [8, 8, 16],
                         "precision": ["fp32"] * 3, "frozen": [""] * 3, "samples_per_epoch": [100] * 3,
                         "val_samples": [30, 0, 30], "energy_per_epoch_j": [130.0, 100.0, 65.0],
                         "time_per_epoch_s": [13.0, 10.0, 6.5]})


def _fake_feats():
    f = pd.DataFrame({"model": ["m", "m"], "input_shape": ["", ""], "batch_size": [8, 16], "precision": ["fp32"] * 2,
                      "frozen": ["", ""], "error": [np.nan, "featurize failed: boom"]})
    for c in FEATURE_COLUMNS:
        f[c] = [1.0, np.nan]
    f["g_flops_forward"], f["g_flops_train"] = [1.0, np.nan], [3.0, np.nan]
    from featurize.layer_profile import coarse_profile
    from training_data.build_table import PROFILE_COLUMN

    f[PROFILE_COLUMN] = [coarse_profile({c: 4.0 for c in FEATURE_COLUMNS}).to_text(), np.nan]
    return f


def test_finish_table_convention_drops_and_hash_determinism():
    table, dropped = finish_table(_fake_runs(), _fake_feats())
    assert list(table["run_id"]) == ["2", "1"] and list(table["source"]) == ["a", "b"]
    assert table.loc[table.source == "b", "energy_per_sample_j"].item() == pytest.approx(130.0 / 110.0)
    assert len(dropped) == 1 and "boom" in dropped["drop_reason"].item()
    again, _ = finish_table(_fake_runs().iloc[::-1], _fake_feats())
    assert table["table_sha256"].iloc[0] == again["table_sha256"].iloc[0]
    changed = _fake_runs()
    changed.loc[0, "energy_per_epoch_j"] = 131.0
    assert finish_table(changed, _fake_feats())[0]["table_sha256"].iloc[0] != table["table_sha256"].iloc[0]


def test_built_table_hash_and_columns(built_table):
    table = built_table
    sha = table["table_sha256"].iloc[0]
    assert (table["table_sha256"] == sha).all()
    assert table_sha256(table.drop(columns=["table_sha256"])) == sha
    assert set(FEATURE_COLUMNS) <= set(table.columns)
    assert {"time_per_sample_s", "group_arch", "n_gpus", "implementation", "workload"} <= set(table.columns)
    energy = table["energy_per_sample_j"]
    assert (energy.dropna() > 0).all() and (table["time_per_sample_s"] > 0).all()
    # energy is never invented: exactly the time-only sources' rows lack it
    assert set(table.loc[energy.isna(), "source"]) == {"lambda_dlbench", "nvidia_dle", "mlperf_training"}
    assert (table.loc[energy.isna(), "avg_power_w"].isna()).all()
    # every row carries its parallel layout; Perseus' pipeline rows are energy rows of 4 stages
    layout = table["tensor_parallel"] * table["pipeline_parallel"] * table["context_parallel"] * table["data_parallel"]
    assert (layout == table["n_gpus"]).all() and set(table["parallelism"]) <= {"none", "ddp", "pipeline"}
    perseus = table[table["source"] == "perseus_sosp24"]
    assert len(perseus) > 0 and (perseus["parallelism"] == "pipeline").all() and (perseus["pipeline_parallel"] == 4).all()
    assert perseus["energy_per_sample_j"].notna().all()


def test_eval_dim_composite_expressions():
    from training_data.zoo import _eval_dim

    sym = {"batch": 8, "seq": 512}
    assert _eval_dim("4*batch", sym) == 32
    assert _eval_dim("seq*batch", sym) == 4096
    assert _eval_dim("Max(1, seq - 1)", sym) == 511
    assert _eval_dim("unknown_sym", sym) is None


def test_built_table_frozen_rows_train_less(built_table):
    table = built_table
    frozen = table[table["frozen"] == "backbone"]
    assert len(frozen) > 0 and (frozen["trainable_fraction"] < 0.6).all()  # MobileNetV2 head (Dense 512) is ~49 %
    assert (frozen.loc[frozen.architecture != "mobilenet_v2", "trainable_fraction"] < 0.02).all()
    assert (table.loc[table["frozen"] == "", "trainable_fraction"] == 1.0).all()
    from training_data.subset import CI_RULES

    assert set(table["source"]) == set(CI_RULES)


def _utilisation(table: pd.DataFrame) -> pd.Series:
    """Training FLOP/s per GPU over the peak the MODEL prices the row at (``gpu_columns``' GEMM and convolution
    peaks without the sustained-clock factor, blended by the convolution share): the table's own figure must agree,
    so the table builder and the model price every row identically."""
    import warnings

    from featurize import lookup_gpu
    from featurize.physics.prior import clock_factor, gpu_columns
    from training_data.corrections import apply_corrections

    table = apply_corrections(table)  # idempotent: a table built before the move gets them too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        specs = {g: lookup_gpu(g) for g in table["gpu"].unique()}
    cols = [gpu_columns(specs[g], p, fallback=True) for g, p in zip(table["gpu"], table["precision"].astype(str))]
    clock = np.array([clock_factor(specs[g]) for g in table["gpu"]])
    fc = table["g_frac_macs_conv"].to_numpy(float)
    seconds_per_flop = (fc / np.array([c["conv_peak_flops"] for c in cols])
                        + (1 - fc) / np.array([c["peak_flops"] for c in cols])) * clock
    return table["g_flops_train"] / table["time_per_sample_s"] * seconds_per_flop


def test_built_table_is_physically_possible(built_table):
    """No row runs at >= 95 % of its GPU's peak for the precision it is labelled with (the check that exposed
    Zeus DeepSpeech2 as fp16 and sentiment140 as shorter than seq 128); the full table too when it is built."""
    tables = [built_table] + ([pd.read_parquet(TABLE)] if TABLE.is_file() else [])
    for table in tables:
        util = _utilisation(table)
        assert util.notna().all()
        assert float(util.max()) < 0.95, table.loc[util.idxmax(), ["source", "gpu", "architecture", "batch_size"]]
        assert np.allclose(util, table["implied_utilisation"], rtol=1e-9)
    # and real work, not a units slip the other way: MLPerf ResNet-50 v1.5 runs at 15-20 % of the FP16 tensor peak
    # on H100 SXM5 / L40S (3,000+ and 2,200 img/s per GPU x 24.5 GFLOP per training image)
    mlperf = _utilisation(built_table[built_table["source"] == "mlperf_training"])
    assert 0.10 < float(mlperf.min()) and float(mlperf.max()) < 0.30


def test_physical_check_drops_impossible_rows_with_a_reason(built_table):
    from training_data.build_table import physical_check

    table = built_table.drop(columns=["implied_utilisation"]).head(4).copy()
    table.loc[0, "time_per_sample_s"] = 1e-12  # a trillion samples per second
    table.loc[1, "time_per_sample_s"] *= 1e6  # samples/s read for millions of samples/s (NVIDIA's PyTorch NCF)
    kept, dropped = physical_check(table, pd.DataFrame(columns=["source", "run_id", "drop_reason"]))
    assert len(kept) == 2 and len(dropped) == 2
    reasons = dropped["drop_reason"].tolist()
    assert ">= 0.95" in reasons[0] and "unit slip" in reasons[1]
    assert kept["table_sha256"].iloc[0] != table["table_sha256"].iloc[0]


def test_built_table_macs_match_flop_counter(built_table):
    """The featurizer's per-sample forward MACs of the new zoo graphs agree with torch's FlopCounterMode count of the
    same PyTorch definition (4.089 G ResNet-50 v1.5; 106,624 NeuMF DLE MLP MACs, embeddings excluded by both). MACs,
    not FLOPs / 2: with batch-norm kept in the exports (training mode) the FLOPs count its element-wise work too,
    which FlopCounterMode leaves out."""
    per_arch = built_table.groupby("architecture")["g_macs_forward"].agg(["min", "max"])
    assert per_arch.loc["resnet50_v15", "min"] == pytest.approx(per_arch.loc["resnet50_v15", "max"], rel=1e-12)
    assert per_arch.loc["resnet50_v15", "min"] == pytest.approx(4.089184256e9, rel=0.005)
    assert per_arch.loc["ncf", "max"] == pytest.approx(106_624, rel=0.01)
