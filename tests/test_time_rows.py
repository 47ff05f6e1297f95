"""Which rows teach the single-GPU time model (issue 28 with issues 29 and 31): data-parallel rows at their per-GPU
time, everything else that cannot be priced per GPU kept out and counted, capped rows left to the power-cap curve."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predictor.parallel import single_gpu_time_per_sample_s
from predictor.fit.prepare import prepare

from test_model_synth import synth_gpus, synth_table


@pytest.fixture(scope="module")
def mixed():
    """The synthetic table plus: three 8-GPU Lambda rows and two 8-GPU DLE rows (GPU-seconds per sample), a 4-GPU
    Perseus pipeline row, an MLPerf row with tensor parallelism, and a single-GPU row capped at 100 W of 220."""
    base = synth_table()
    base["n_gpus"] = 1
    g1 = base[base["gpu"] == "G1"].head(5).copy()
    g1["source"] = ["lambda_dlbench"] * 3 + ["nvidia_dle"] * 2
    g1["n_gpus"] = 8
    g1["time_per_sample_s"] *= 1.3
    g1["time_per_epoch_s"] = g1["time_per_sample_s"] * 10000 / 8
    g1[["avg_power_w", "energy_per_sample_j"]] = np.nan
    g1["run_id"] += "-dp"
    other = base[base["gpu"] == "G1"].tail(2).copy()
    other["source"] = ["perseus", "mlperf_training"]
    other["n_gpus"] = [4, 8]
    other["pipeline_parallel"] = [4, 1]
    other["tensor_parallel"] = [1, 2]
    other["time_per_epoch_s"] = 1.0
    other["run_id"] += "-mp"
    capped = base[base["gpu"] == "G2"].head(1).copy()
    capped["power_limit_w"], capped["default_power_limit"], capped["run_id"] = 100.0, False, "capped"
    table = pd.concat([base, g1, other, capped], ignore_index=True)
    return table, g1


def test_data_parallel_rows_teach_time_at_their_per_gpu_time(mixed):
    table, g1 = mixed
    rows, _, targets = prepare(table, gpu_specs=synth_gpus())
    dp = rows["_multi_gpu"].to_numpy(bool)
    assert dp.sum() == 5 and set(rows.loc[dp, "source"]) == {"lambda_dlbench", "nvidia_dle"}
    specs = synth_gpus()
    for cls, src in (("reference", "lambda_dlbench"), ("tuned", "nvidia_dle")):
        sub = g1[g1["source"] == src]
        want = single_gpu_time_per_sample_s(sub, [specs["G1"]] * len(sub), n_gpus=8,
                                            batch_size=sub["batch_size"].to_numpy(float),
                                            time_per_sample_s=sub["time_per_sample_s"].to_numpy(float),
                                            implementation=cls)
        got = targets.loc[dp & (rows["source"] == src).to_numpy(), "time_per_sample_s"].to_numpy()
        np.testing.assert_allclose(np.sort(got), np.sort(want), rtol=1e-12)
        assert np.all(got < sub["time_per_sample_s"].to_numpy().max())  # the scaling overhead is taken out
    # a node's power is not one GPU's: no energy or power target, never an energy row
    assert targets.loc[dp, ["power", "energy"]].isna().all().all() and not rows.loc[dp, "_energy_ok"].any()


def test_rows_that_cannot_be_priced_per_gpu_are_counted_out(mixed):
    table, _ = mixed
    rows, _, _ = prepare(table, gpu_specs=synth_gpus())
    kept_out = rows.attrs["kept_out"]
    assert "capped" not in set(rows["run_id"]) and kept_out["power_capped_below_board_limit"] == 1
    assert not rows["source"].isin(["perseus", "mlperf_training"]).any()
    assert kept_out["multi_gpu: perseus (no data-parallel fit for this source)"] == 1
    assert kept_out["multi_gpu: model-parallel layout (issue 30)"] == 1
    assert len(rows) == len(table) - 3
    no_multi, _, _ = prepare(table, gpu_specs=synth_gpus(), multi_gpu=False)
    assert not no_multi["_multi_gpu"].any() and no_multi.attrs["kept_out"]["multi_gpu"] == 7
