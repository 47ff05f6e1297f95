"""Learn the per-layer prior's efficiencies per op class from the training table's measured step times.

Usage::

    python -m training_data.fit_layer_efficiencies [--table training_data/table/training_table.parquet]
        [--out training_data/table/layer_efficiencies.json]

Each distinct graph of the table (model, input shape, precision, frozen) is featurized once (its node table is per
sample); every row's per-layer prior step time (:func:`featurize.physics.layers.layer_prior`) is then a function of three
multipliers -- convolution compute, GEMM (matmul / attention / recurrent) compute, DRAM bandwidth efficiency
(all memory classes, at most 1) -- fitted by minimising the mean |log(measured / prior)| time over rows, each source weighted equally
(Nelder-Mead on the logs). Leave-one-GPU-out folds refit on the other GPUs and report the held-out median error
next to the defaults', so the printed figures are out-of-sample. Writes the efficiencies as JSON
(``fit_model(..., layer_efficiencies=)`` / ``python -m training_data.build_model --layer-efficiencies``).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from featurize.graph.weights import frozen_from_text
from featurize.layer_profile import COMPUTE_CLASSES, LayerEfficiencies, evaluated_batch
from featurize.physics.layers import layer_prior
from predictor.stats import ape_pct

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "training_data" / "table" / "training_table.parquet"
GRAPH_KEY = ["model", "input_shape", "precision", "frozen"]


def _nodes(row: pd.Series, cache_dir: Path):
    from featurize import featurize
    from training_data.zoo import bind_export, export_onnx

    path = export_onnx(row.model, row.input_shape or None, cache_dir)
    source = bind_export(Path(path), row.model, row.input_shape or None, int(row.batch_size))
    gf = featurize(source, batch_size=int(row.batch_size), precision=row.precision,
                   frozen=frozen_from_text(row.frozen))
    return gf


def step_parts(table: pd.DataFrame, cache_dir: Path) -> list[pd.DataFrame]:
    """Per row: the per-layer prior at unit efficiencies (compute and memory times per node, for refitting)."""
    from featurize import lookup_gpu
    from featurize.physics.prior import gpu_columns

    unit = LayerEfficiencies(compute={c: 1.0 for c in COMPUTE_CLASSES},
                             memory={c: 1.0 for c in LayerEfficiencies().memory})
    graphs, out = {}, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row in table.itertuples(index=False):
            key = tuple(getattr(row, k) for k in GRAPH_KEY)
            if key not in graphs:
                graphs[key] = _nodes(row, cache_dir)
            gf = graphs[key]
            lp = layer_prior(gf.nodes, gpu_columns(lookup_gpu(row.gpu), row.precision, fallback=True),
                             batch_size=int(row.batch_size), backward_ratio=gf.flops_backward / gf.flops_forward,
                             trainable_params=gf.trainable_params, eval_batch=evaluated_batch(gf.nodes, gf.flops_forward),
                             power_limit_w=None, efficiencies=unit)
            out.append(lp[["op_class", "t_compute_s", "t_memory_s", "time_s"]].assign(
                fixed=lambda d: d["time_s"] - np.maximum(d["t_compute_s"], d["t_memory_s"])))
    return out


def predicted_time(parts: list[pd.DataFrame], batch: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Per-sample prior time of each row for multipliers theta = (conv, gemm, memory)."""
    conv, gemm, mem = theta
    t = np.empty(len(parts))
    for i, p in enumerate(parts):
        cls = p["op_class"].to_numpy()
        c = np.where(cls == "conv", conv, np.where(np.isin(cls, ("gemm", "attention")), gemm, 1.0))
        t[i] = np.sum(np.maximum(p["t_compute_s"].to_numpy() / c, p["t_memory_s"].to_numpy() / mem)
                      + p["fixed"].to_numpy()) / batch[i]
    return t


def fit(parts: list[pd.DataFrame], batch: np.ndarray, measured: np.ndarray, weight: np.ndarray) -> np.ndarray:
    from scipy.optimize import minimize

    def loss(log_theta: np.ndarray) -> float:
        log_theta = np.minimum(log_theta, [np.log(3.0), np.log(3.0), 0.0])  # no more than the peak bandwidth
        err = np.abs(np.log(measured / predicted_time(parts, batch, np.exp(log_theta))))
        return float(np.sum(weight * err) / np.sum(weight))

    start = np.log([1.0, 1.0, 0.8])
    res = minimize(loss, start, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-5, "maxiter": 300})
    return np.clip(np.exp(res.x), 0.05, [3.0, 3.0, 1.0])


def runs_from_sources(shared: Path, max_rows_per_source: int) -> pd.DataFrame:
    """Runs straight from the source converters: rows without validation passes whose zoo export is cached
    (time per sample = epoch time / samples), with their graph features joined for the whole-graph prior."""
    from training_data.build_table import FEATURE_COLUMNS, KEY, _featurize_uncached
    from training_data.corrections import apply_corrections
    from training_data.sources import SOURCE_NAMES, _loaders
    from training_data.zoo import CACHE_DIR, _cache_key

    loaders = _loaders()
    runs = pd.concat([loaders[s](Path(shared)) for s in SOURCE_NAMES], ignore_index=True)
    runs = runs[(runs["val_samples"].fillna(0) == 0) & (runs["time_per_epoch_s"] > 0)].copy()
    cached = [(Path(CACHE_DIR) / f"{_cache_key(m, s or None)}.onnx").is_file()
              for m, s in zip(runs["model"], runs["input_shape"])]
    runs = runs[np.array(cached)].copy()
    runs["time_per_sample_s"] = runs["time_per_epoch_s"] / runs["samples_per_epoch"]
    runs["table_sha256"] = "sources"
    runs = apply_corrections(runs)
    runs = runs.sample(frac=1.0, random_state=0).groupby("source").head(max_rows_per_source).reset_index(drop=True)
    keys = runs[KEY].drop_duplicates()
    feats = []
    for k in keys.itertuples(index=False):
        path = Path(CACHE_DIR) / f"{_cache_key(k.model, k.input_shape or None)}.onnx"
        feats.append({**k._asdict(), **_featurize_uncached(str(path), k.model, k.input_shape, k.batch_size,
                                                            k.precision, k.frozen)})
    feats = pd.DataFrame(feats)
    feats = feats[feats.get("error", pd.Series(np.nan, index=feats.index)).isna()]
    return runs.merge(feats[KEY + FEATURE_COLUMNS], on=KEY, how="inner")


def whole_graph_prior(table: pd.DataFrame) -> np.ndarray:
    """The whole-graph prior ``t_phys_s`` per row (what the shipped boosters multiply)."""
    from featurize import lookup_gpu
    from predictor.model.inference import feature_frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        specs = [lookup_gpu(g) for g in table["gpu"]]
    feats = feature_frame(table, specs, batch_size=table["batch_size"].astype(float),
                          precision=table["precision"].astype(str), precision_fallback=True)
    return feats["t_phys_s"].to_numpy(float)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training_data.fit_layer_efficiencies")
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--out", type=Path, default=TABLE.with_name("layer_efficiencies.json"))
    parser.add_argument("--max-rows-per-source", type=int, default=150)
    parser.add_argument("--from-sources", type=Path, default=None,
                        help="read the runs from ../shared/data directly (no built table needed; only rows whose "
                             "graph export is cached and that have no validation passes)")
    args = parser.parse_args(argv)
    from training_data.corrections import apply_corrections
    from training_data.zoo import CACHE_DIR

    table = (runs_from_sources(args.from_sources, args.max_rows_per_source) if args.from_sources
             else pd.read_parquet(args.table))
    table = apply_corrections(table)
    table = table[np.isfinite(table["time_per_sample_s"]) & (table["time_per_sample_s"] > 0)]
    table = (table.sample(frac=1.0, random_state=0).groupby("source").head(args.max_rows_per_source)
             .reset_index(drop=True))
    parts = step_parts(table, Path(CACHE_DIR))
    batch = table["batch_size"].to_numpy(float)
    measured = table["time_per_sample_s"].to_numpy(float)
    weight = 1.0 / table.groupby("source")["source"].transform("size").to_numpy(float)
    default = np.array([1.0, 1.0, 0.8])
    gpus = table["gpu"].astype(str).to_numpy()
    held_fit, held_default = [], []
    for g in sorted(set(gpus)):
        test = gpus == g
        theta = fit([p for p, t in zip(parts, test) if not t], batch[~test], measured[~test], weight[~test])
        for th, acc in ((theta, held_fit), (default, held_default)):
            pred = predicted_time([p for p, t in zip(parts, test) if t], batch[test], th)
            acc.append(float(np.median(ape_pct(pred, measured[test]))))
        print(f"held-out {g:<18} rows {test.sum():4d}  fitted {held_fit[-1]:6.1f} %  default {held_default[-1]:6.1f} %"
              f"  (theta {np.round(theta, 3).tolist()})")
    theta = fit(parts, batch, measured, weight)
    whole = whole_graph_prior(table)
    for src in sorted(table["source"].unique()):
        m = (table["source"] == src).to_numpy()
        mine = [p for p, k in zip(parts, m) if k]
        errs = [np.median(ape_pct(t, measured[m])) for t in (whole[m], predicted_time(mine, batch[m], default),
                                                               predicted_time(mine, batch[m], theta))]
        print(f"source {src:<10} rows {m.sum():4d}  median |time error| whole-graph prior {errs[0]:6.1f} %, "
              f"per-layer default {errs[1]:6.1f} %, per-layer fitted {errs[2]:6.1f} %")
    print(f"leave-one-GPU-out median of GPU medians: fitted {np.median(held_fit):.1f} %, "
          f"default {np.median(held_default):.1f} %; all-row fit theta (conv, gemm, memory) {np.round(theta, 3)}")
    eff = LayerEfficiencies(
        compute={"conv": float(theta[0]), "gemm": float(theta[1]), "attention": float(theta[1])},
        memory={c: float(theta[2]) * (0.5 / 0.8 if c == "embedding" else 1.0) for c in LayerEfficiencies().memory},
        source=(f"fitted by training_data.fit_layer_efficiencies on {len(table)} rows of table "
                f"{str(table['table_sha256'].iloc[0])[:8]} (mean |log time error|, sources weighted equally); "
                f"leave-one-GPU-out median {np.median(held_fit):.1f} % vs {np.median(held_default):.1f} % defaults"))
    args.out.write_text(json.dumps(eff.to_dict(), indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
