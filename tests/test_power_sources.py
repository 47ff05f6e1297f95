"""Power rows the power model may learn from: MLPerf whole-server power (never GPU power) with a host-power term per
system class, and the rows that teach board power at the board's own limit (capped sweeps are the curve's)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from featurize import lookup_gpu


def test_mlperf_server_power_rows_keep_their_scope_and_learn_a_host_term(shared_data):
    from training_data.mlperf_power import ac_dc_ratio, fit_host, leave_one_system_out, load_power_runs

    runs = load_power_runs(shared_data)
    assert len(runs) == 195 and set(runs["scope"]) == {"node_ac", "node_dc"}  # whole server, AC or DC; no GPU scope
    assert set(runs["system_class"]) == {"hgx8_sxm_2xeon_air", "hgx8_sxm_2xeon_liquid"}
    ratio = ac_dc_ratio(runs)
    assert 1.0 < ratio < 1.1  # Supermicro measured the same runs at the wall and at the supply outputs
    tdp = runs["gpu"].map(lambda g: float(lookup_gpu(g).tdp_w)).to_numpy(float)
    host = fit_host(runs, tdp)
    assert all(300 < v < 3000 for k, v in host.items() if k.startswith("host_w/"))  # CPUs, fans/pumps, NICs
    held = leave_one_system_out(runs, tdp)
    assert set(held) == set(runs["system"]) and all(v["node_energy_median_ape"] < 15 for v in held.values())
    # without a host term (GPUs alone) the node is badly under-forecast: the term carries real power
    gpu_only = np.median(np.abs(runs["n_gpus"] * tdp / runs["node_avg_power_w"] - 1))
    assert gpu_only > 0.1


def test_power_rows_are_those_at_the_boards_own_limit():
    from predictor.power_model import POWER_FEATURES, power_frame, power_mask

    rows = pd.DataFrame({"power_limit_w": [np.nan, 250.0, 150.0, 240.0],
                         "default_power_limit": pd.array([pd.NA, True, False, pd.NA], dtype="boolean")})
    feats = pd.DataFrame({"tdp_w": [250.0, 250.0, 250.0, 220.0], "busy_frac": 0.5, "compute_frac": 0.4,
                          "memory_frac": 0.1, "overhead_frac": 0.5, "launch_frac": 0.2, "tensor_precision": 0.0,
                          "idle_frac": 0.1, "log_batch_size": 5.0})
    targets = pd.DataFrame({"power": [0.1, 0.2, -0.3, np.nan]})
    assert power_mask(rows, feats, targets).tolist() == [True, True, False, False]
    x = power_frame(feats)
    assert list(x.columns) == list(POWER_FEATURES) and x["log_tdp_w"].iloc[0] == pytest.approx(np.log2(250 / 300))
