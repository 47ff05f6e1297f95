"""MLPerf whole-server power: which runs have it, what it covers, and a host-power term per system class.

Usage::

    python -m training_data.mlperf_power [--shared ../shared/data] [--out training_data/table/mlperf_power.parquet]

MLPerf Training v4.0 / v5.0 logged the **whole server's** power for 195 single-node runs (``node_avg_power_W``,
``node_energy_ttt_J`` = that power x ``time_to_train_s``): GPUs + CPUs + fans / pumps + NICs + power-conversion loss.
It is never GPU power. This module turns those rows into a small table (:func:`load_power_runs`) and models a node as

    P_node = scope_factor x (n_gpus x P_gpu + P_host[system class])

* ``P_gpu``: one GPU's average board power, from the model (or the GPU's TDP: tuned MLPerf code runs at the limit);
* ``P_host``: CPUs, memory, fans or pumps, NICs -- learned per system class (:data:`SYSTEMS`: 8-GPU SXM board, two
  Xeons, air- or liquid-cooled); a class never seen takes the mean over the classes seen;
* ``scope_factor``: 1 for DC power at the supply outputs; the AC/DC ratio for wall (AC) power, learned from the
  runs Supermicro measured both ways (the same result file under ``smc-ac-power`` and ``smc-dc-power``).

:func:`leave_one_system_out` refits on the other systems and scores each held-out system's node power and node energy
per run (energy with the measured time to train: the time forecast of multi-GPU runs belongs to the time model).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from training_data.sources.mlperf_training import GPU_NAMES, WORKLOADS

REPO = Path(__file__).resolve().parents[1]
FOLDER = "mlperf_training"
SYSTEMS: dict[str, str] = {
    "1xSMC-H100-SXM-80GB": "hgx8_sxm_2xeon_air",
    "SR780aV3-8xB200_SXM_180GB": "hgx8_sxm_2xeon_liquid",
}
"""System -> class: Supermicro's air-cooled HGX H100 8-GPU server; Lenovo ThinkSystem SR780a V3 (direct water
cooling, 8x B200). Both carry two Xeon Platinum CPUs (8462Y+ / 8562Y+, 300 W TDP each)."""
SCOPES = {"smc-ac-power": "node_ac", "smc-dc-power": "node_dc"}
"""Submitter -> scope; others report AC-equivalent node power (Lenovo states the 0.94 conversion efficiency it
applied), ``node_ac``."""
GRAPHS = {**{k: v[1:3] for k, v in WORKLOADS.items()}, "bert": ("zoo:bert_large_pretrain", "seq512")}
"""Benchmark -> (zoo graph, per-sample input) for a per-GPU power forecast. BERT's packed sequences keep it out of
the time table (samples are not tokens); one 512-token row per sample is right for its power."""


def load_power_runs(shared: Path) -> pd.DataFrame:
    """One row per MLPerf result with whole-server power (``scope`` ``node_ac`` / ``node_dc``, never GPU power)."""
    raw = pd.read_csv(Path(shared) / FOLDER / "single_node_runs.csv")
    raw = raw[raw["node_avg_power_W"].notna() & (raw["status"] == "success")]
    from training_data.sources.throughput import zoo_available

    graph = raw["benchmark"].map(lambda b: GRAPHS[b] if b in GRAPHS and zoo_available(GRAPHS[b][0]) else ("", ""))
    return pd.DataFrame({
        "run_id": raw["version"] + "/" + raw["submitter"] + "/" + raw["result_file"],
        "result_file": raw["version"] + "/" + raw["result_file"].str.split("/", n=1).str[1],  # AC and DC share it
        "system": raw["system"], "system_class": raw["system"].map(SYSTEMS).fillna("unknown"),
        "scope": raw["submitter"].map(SCOPES).fillna("node_ac"),
        "gpu": raw["gpu"].map(GPU_NAMES).fillna(raw["gpu"]), "n_gpus": raw["n_gpus"].astype(int),
        "benchmark": raw["benchmark"], "model": [g[0] for g in graph], "input_shape": [g[1] for g in graph],
        "batch_size": raw["batch_size"].astype(float), "precision": "fp16",
        "node_avg_power_w": raw["node_avg_power_W"].astype(float),
        "time_to_train_s": raw["time_to_train_s"].astype(float),
        "node_energy_j": raw["node_energy_ttt_J"].astype(float), "host_cpu": raw["host_cpu"],
    }).reset_index(drop=True)


def ac_dc_ratio(runs: pd.DataFrame) -> float:
    """Median AC / DC node power over results measured both ways (1.0 when none)."""
    wide = runs.pivot_table(index="result_file", columns="scope", values="node_avg_power_w")
    both = wide.dropna() if {"node_ac", "node_dc"} <= set(wide.columns) else pd.DataFrame()
    return float((both["node_ac"] / both["node_dc"]).median()) if len(both) else 1.0


def gpu_power_forecast(runs: pd.DataFrame, cache_dir: Path | None = None, model_dir: Path | None = None) -> np.ndarray:
    """The model's average power of one GPU per run (its graph at the per-GPU batch; NaN without a zoo graph)."""
    from featurize import featurize, lookup_gpu
    from predictor.model.inference import predict_frame
    from training_data.zoo import bind_export, export_onnx

    out = np.full(len(runs), np.nan)
    keys = runs[runs["model"] != ""][["model", "input_shape", "batch_size", "precision", "gpu"]].drop_duplicates()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in keys.itertuples(index=False):
            path = export_onnx(k.model, k.input_shape or None, cache_dir)
            gf = featurize(bind_export(Path(path), k.model, k.input_shape or None, int(k.batch_size)),
                           batch_size=int(k.batch_size), precision=k.precision)
            p = predict_frame(pd.DataFrame([gf.to_dict()]), lookup_gpu(k.gpu), batch_size=int(k.batch_size),
                              precision=k.precision, model=model_dir)["avg_power_w"].iloc[0]
            hit = ((runs["model"] == k.model) & (runs["batch_size"] == k.batch_size) & (runs["gpu"] == k.gpu)).to_numpy()
            out[hit] = float(p)
    return out


def fit_host(runs: pd.DataFrame, gpu_w: np.ndarray) -> dict[str, float]:
    """``P_host`` per system class (median of node power / scope factor - n x P_gpu) and the AC/DC factor."""
    ratio = ac_dc_ratio(runs)
    factor = np.where(runs["scope"] == "node_ac", ratio, 1.0)
    host = runs["node_avg_power_w"].to_numpy() / factor - runs["n_gpus"].to_numpy() * gpu_w
    per_class = pd.Series(host).groupby(runs["system_class"].to_numpy()).median().dropna()
    return {"ac_dc_ratio": ratio, **{f"host_w/{k}": float(v) for k, v in per_class.items()}}


def predict_node_w(runs: pd.DataFrame, gpu_w: np.ndarray, host: dict[str, float]) -> np.ndarray:
    """Node power from the fitted terms; a class never seen takes the mean host power of the classes seen."""
    seen = {k.split("/", 1)[1]: v for k, v in host.items() if k.startswith("host_w/")}
    fallback = float(np.mean(list(seen.values()))) if seen else 0.0
    p_host = runs["system_class"].map(lambda c: seen.get(c, fallback)).to_numpy(float)
    factor = np.where(runs["scope"] == "node_ac", host["ac_dc_ratio"], 1.0)
    return factor * (runs["n_gpus"].to_numpy() * gpu_w + p_host)


def leave_one_system_out(runs: pd.DataFrame, gpu_w: np.ndarray) -> dict[str, dict[str, float]]:
    """Per held-out system: node power and node energy (measured time) median / p90 APE, and the host term it got."""
    out = {}
    ok = np.isfinite(gpu_w)
    for system in sorted(runs["system"].unique()):
        train, test = ok & (runs["system"] != system).to_numpy(), ok & (runs["system"] == system).to_numpy()
        if not test.any() or not train.any():
            continue
        host = fit_host(runs[train], gpu_w[train])
        pred = predict_node_w(runs[test], gpu_w[test], host)
        ape = 100 * np.abs(pred / runs.loc[test, "node_avg_power_w"].to_numpy() - 1)
        out[system] = {"n_runs": int(test.sum()), "node_energy_median_ape": float(np.median(ape)),
                       "node_energy_p90_ape": float(np.percentile(ape, 90)), **host}
    return out


def report(runs: pd.DataFrame, gpu_w: np.ndarray) -> dict[str, object]:
    """Host terms on all rows and leave-one-system-out errors, for the model's GPU power and for GPUs at TDP."""
    from featurize import lookup_gpu

    tdp = runs["gpu"].map(lambda g: float(lookup_gpu(g).tdp_w)).to_numpy(float)
    with_graph = np.isfinite(gpu_w)
    return {"runs": int(len(runs)), "runs_with_graph": int(with_graph.sum()),
            "scopes": {f"{a}/{b}": int(n) for (a, b), n in runs.groupby(["system", "scope"]).size().items()},
            "model_gpu_power": {"host": fit_host(runs[with_graph], gpu_w[with_graph]),
                                "leave_one_system_out": leave_one_system_out(runs, gpu_w)},
            "gpus_at_tdp": {"host": fit_host(runs, tdp), "leave_one_system_out": leave_one_system_out(runs, tdp)}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training_data.mlperf_power", description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=None, help="write the power rows (with the GPU forecast) as Parquet")
    ap.add_argument("--model-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    runs = load_power_runs(args.shared)
    gpu_w = gpu_power_forecast(runs, model_dir=args.model_dir)
    print(json.dumps(report(runs, gpu_w), indent=2))
    if args.out:
        runs.assign(gpu_power_forecast_w=gpu_w).to_parquet(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
