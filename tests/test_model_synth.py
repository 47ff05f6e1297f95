"""Synthetic training tables for the model tests (no shared data needed): physics + noise."""

from __future__ import annotations

import numpy as np
import pandas as pd

from featurize.types import GRAPH_FEATURE_KEYS, GPUSpec


def synth_gpus() -> dict[str, GPUSpec]:
    def mk(name, tdp, fp32, fp16, bw, l2, sms, year):
        return GPUSpec(name=name, vendor="NVIDIA", architecture="x", tdp_w=tdp, peak_fp32_flops=fp32,
                       peak_fp16_tensor_flops=fp16, mem_bw_bytes_per_s=bw, mem_bytes=24e9, l2_cache_bytes=l2,
                       sm_count=sms, source="user", idle_power_w=0.1 * tdp, launch_year=year)
    return {
        "G1": mk("G1", 350, 35.6e12, 71e12, 936e9, 6e6, 82, 2020),
        "G2": mk("G2", 220, 20.3e12, 40e12, 448e9, 4e6, 46, 2020),
        "G3": mk("G3", 300, 14e12, 112e12, 900e9, 6e6, 80, 2017),
        "G4": mk("G4", 250, 9.3e12, 18.7e12, 732e9, 4e6, 56, 2016),
    }


def synth_graph(rng, flops_fwd: float, params: float) -> dict[str, float]:
    g = {k: 0.0 for k in GRAPH_FEATURE_KEYS}
    g.update(params=params, trainable_params=params, macs_forward=flops_fwd / 2, flops_forward=flops_fwd,
             flops_backward=2 * flops_fwd, flops_optimizer=10 * params / 32, flops_train=3 * flops_fwd + 10 * params / 32,
             activation_bytes=flops_fwd / 50, peak_activation_bytes=flops_fwd / 80, weight_bytes=4 * params,
             bytes_moved_forward=flops_fwd / 30, depth=50, n_nodes=rng.integers(50, 400),
             frac_macs_conv=rng.uniform(0, 1), frac_macs_matmul=0.1, frac_flops_elementwise=0.05,
             arithmetic_intensity=30.0, max_layer_working_set_bytes=flops_fwd / 100, batch_size=1)
    return g


def synth_table(n_arch: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    gpus = synth_gpus()
    rows = []
    archs = [(f"arch{i}", rng.uniform(0.1e9, 20e9), rng.uniform(1e6, 100e6)) for i in range(n_arch)]
    for src, gnames in (("srcA", ["G1", "G2"]), ("srcB", ["G3", "G4"])):
        for gname in gnames:
            spec = gpus[gname]
            for arch, ff, params in archs:
                g = synth_graph(rng, ff, params)
                for bs in (16, 32, 64, 128):
                    t = g["flops_train"] / (0.4 * spec.peak_fp32_flops) + 3 * g["n_nodes"] * 8e-6 / bs
                    p = spec.tdp_w * (0.6 + 0.3 * np.tanh(np.log10(ff / 1e8)))
                    t *= np.exp(rng.normal(0, 0.05))
                    row = {f"g_{k}": v for k, v in g.items()}
                    row.update(source=src, run_id=f"{src}-{gname}-{arch}-{bs}", gpu=gname, architecture=arch,
                               group_arch=arch, batch_size=bs, precision="fp32", power_limit_w=np.nan,
                               samples_per_epoch=10000, val_samples=0, time_per_sample_s=t, avg_power_w=p,
                               energy_per_sample_j=t * p, scope="gpu_nvml", g_unsupported_op_count=0.0,
                               table_sha256="synthetic0000")
                    rows.append(row)
    return pd.DataFrame(rows)


def test_synth_table_shape():
    t = synth_table()
    assert len(t) == 96 and t["energy_per_sample_j"].gt(0).all()
