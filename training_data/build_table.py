"""Build the featurized training table from the public sources.

Usage::

    python -m training_data.build_table [--shared ../shared/data] [--out training_data/table] [--n-jobs 2]
                                        [--cache-dir training_data/cache]

Entry points: :func:`build_table` (runs DataFrame + features) and :func:`main` (CLI). Steps: load and validate every
source (:mod:`training_data.sources`), export each zoo graph once (cached in ``training_data/cache/``), featurize each
distinct ``(model, input_shape, batch_size, precision, frozen)`` once, join ``g_*`` columns
(:data:`featurize.types.GRAPH_FEATURE_KEYS` + ``g_unsupported_op_count``), apply the per-sample convention
(``energy_per_sample_j = energy_per_epoch_j / (samples_per_epoch + val_samples * g_flops_forward / g_flops_train)``,
same for ``time_per_sample_s``), add ``group_arch`` and a deterministic ``table_sha256``. Writes
``training_table.parquet`` and ``SUMMARY.md`` atomically (temp file + rename); rows that cannot be featurized are
dropped and listed with their reason in the summary, never silently.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from featurize.types import GRAPH_FEATURE_KEYS
from predictor.table_hash import table_sha256
from training_data.corrections import apply_corrections

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "training_data" / "table"
FEATURE_COLUMNS = [f"g_{k}" for k in GRAPH_FEATURE_KEYS] + ["g_unsupported_op_count"]
PROFILE_COLUMN = "g_layer_profile"
"""The graph's kernel profile (:meth:`featurize.layer_profile.LayerProfile.to_text`): the per-layer prior's input."""
KEY = ["model", "input_shape", "batch_size", "precision", "frozen"]
GROUP_ARCH = {"mobilenet_v2": "mobilenet_v2", "nasnet_mobile": "nasnet_mobile", "vgg16": "vgg16",
              "resnet50": "resnet50", "resnet50_v15": "resnet50", "inception_v3": "inception_v3", "shufflenet_v2": "shufflenet_v2",
              "deepspeech2": "deepspeech2", "ncf": "ncf", "bert_base": "bert_base", "mayaki_bert": "mayaki_bert",
              "mayaki_gpt": "mayaki_gpt", "nnunet_2d": "nnunet", "nnunet_3d": "nnunet"}  # one U-Net, two patch kinds


def _export(model: str, input_shape: str, cache_dir: str) -> tuple[str, str]:
    """(model, input_shape) -> path of its ONNX graph (zoo export or the user's file)."""
    if not model.startswith("zoo:"):
        return model, ""
    from training_data.zoo import export_onnx

    try:
        return str(export_onnx(model, input_shape or None, Path(cache_dir))), ""
    except Exception as err:  # noqa: BLE001 - recorded as a drop reason
        return "", f"export failed: {type(err).__name__}: {str(err)[:200]}"


def _featurizer_version() -> str:
    """Hash of the featurizer's source, so cached features refresh when it changes."""
    root = REPO / "featurize"
    h = hashlib.sha256()
    for f in sorted(list(root.glob("*.py")) + list(root.glob("ops/*.py"))):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _featurize(path: str, model: str, input_shape: str, batch_size: int, precision: str, frozen: str,
               cache_dir: str = "", version: str = "") -> dict:
    """Features of one key, cached as JSON under ``cache_dir/features`` (a killed build resumes)."""
    import json

    cache = None
    if cache_dir:
        blob = json.dumps([Path(path).name, model, input_shape, int(batch_size), precision, frozen, version])
        cache = Path(cache_dir) / "features" / f"{hashlib.sha256(blob.encode()).hexdigest()[:24]}.json"
        if cache.is_file():
            return json.loads(cache.read_text())
    out = _featurize_uncached(path, model, input_shape, batch_size, precision, frozen)
    if cache is not None and "error" not in out:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(out))
        os.replace(tmp, cache)
    return out


def _featurize_uncached(path: str, model: str, input_shape: str, batch_size: int, precision: str,
                        frozen: str) -> dict:
    from featurize import featurize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            source = path
            if model.startswith("zoo:"):
                from training_data.zoo import bind_export

                source = bind_export(Path(path), model, input_shape or None, int(batch_size))
            feats = featurize(source, batch_size=int(batch_size), precision=precision,
                              frozen=[p for p in frozen.split(";") if p] or None)
        except Exception as err:  # noqa: BLE001 - recorded as a drop reason
            return {"error": f"featurize failed: {type(err).__name__}: {str(err)[:200]}"}
    return {**{f"g_{k}": v for k, v in feats.to_dict().items()}, PROFILE_COLUMN: feats.layer_profile.to_text()}


def featurize_runs(runs: pd.DataFrame, *, cache_dir: Path, n_jobs: int = 2, progress: bool = True) -> pd.DataFrame:
    """One row per distinct :data:`KEY` with ``g_*`` columns or an ``error``."""
    from joblib import Parallel, delayed

    graphs = runs[["model", "input_shape"]].drop_duplicates().sort_values(["model", "input_shape"])
    # token models with a symbolic seq share one export; export those once
    exported = Parallel(n_jobs=n_jobs, verbose=5 if progress else 0)(
        delayed(_export)(m, s, str(cache_dir)) for m, s in graphs.itertuples(index=False))
    paths = {(m, s): e for (m, s), e in zip(graphs.itertuples(index=False), exported)}
    keys = runs[KEY].drop_duplicates().sort_values(KEY).reset_index(drop=True)
    version = _featurizer_version()
    jobs = []
    for k in keys.itertuples(index=False):
        path, err = paths[(k.model, k.input_shape)]
        jobs.append((path, err, k))
    results = Parallel(n_jobs=n_jobs, verbose=5 if progress else 0)(
        delayed(_featurize)(p, k.model, k.input_shape, k.batch_size, k.precision, k.frozen, str(cache_dir), version)
        if not e else
        delayed(dict)(error=e) for p, e, k in jobs)
    feats = pd.DataFrame(results)
    for col in FEATURE_COLUMNS + [PROFILE_COLUMN, "error"]:
        if col not in feats:
            feats[col] = np.nan
    return pd.concat([keys, feats], axis=1)


def finish_table(runs: pd.DataFrame, feats: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join features, apply the per-sample convention; returns (table, dropped rows with ``drop_reason``)."""
    merged = runs.merge(feats, on=KEY, how="left", validate="many_to_one")
    bad = merged["error"].notna() | merged[FEATURE_COLUMNS[0]].isna() | merged[PROFILE_COLUMN].isna()
    dropped = merged.loc[bad, list(runs.columns)].assign(drop_reason=merged.loc[bad, "error"].fillna("no features"))
    table = merged.loc[~bad].drop(columns=["error"]).copy()
    ratio = table["g_flops_forward"] / table["g_flops_train"]
    equiv = table["samples_per_epoch"] + table["val_samples"] * ratio
    table["energy_per_sample_j"] = table["energy_per_epoch_j"] / equiv
    table["time_per_sample_s"] = table["time_per_epoch_s"] / equiv
    table["trainable_fraction"] = table["g_trainable_params"] / table["g_params"]
    table["group_arch"] = table["architecture"].map(GROUP_ARCH).fillna(table["architecture"]).astype("string")
    table = table.sort_values(["source", "run_id"], kind="mergesort").reset_index(drop=True)
    table = apply_corrections(table)  # per-source label corrections (training_data.corrections)
    table["table_sha256"] = table_sha256(table)
    return table, dropped


UTILISATION_LIMIT = 0.95
"""A row whose implied utilisation (training FLOPs per second / the GPU's peak at the row's precision) reaches this is
physically impossible for a real training step: its label (precision, sequence length, sample unit) is wrong."""


def priced_peak_flops(gpus: pd.Series, precisions: pd.Series, frac_conv: pd.Series) -> np.ndarray:
    """Per row, the datasheet peak FLOP/s the prior prices the row's training FLOPs at: convolutions (share
    ``frac_conv`` of the MACs) on the convolution path, the rest on the GEMM path, each from the one precision rule
    (:func:`featurize.hardware.precision.peak_flops`, with the framework fallback a measured run took)."""
    import warnings

    from featurize import lookup_gpu
    from featurize.hardware.precision import peak_flops

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        specs = {g: lookup_gpu(g) for g in pd.unique(gpus.astype(str))}
    memo: dict[tuple[str, str], tuple[float, float]] = {}
    gemm, conv = np.empty(len(gpus)), np.empty(len(gpus))
    for i, (g, p) in enumerate(zip(gpus.astype(str), precisions.astype(str))):
        if (g, p) not in memo:
            memo[(g, p)] = (peak_flops(specs[g], p, "gemm", fallback=True),
                            peak_flops(specs[g], p, "conv", fallback=True))
        gemm[i], conv[i] = memo[(g, p)]
    fc = np.clip(frac_conv.to_numpy(float), 0.0, 1.0)
    return 1.0 / (fc / conv + (1.0 - fc) / gemm)


def implied_utilisation(table: pd.DataFrame) -> np.ndarray:
    """``g_flops_train / time_per_sample_s / peak`` per row (time per sample is per GPU; peak:
    :func:`priced_peak_flops`), with the model pipeline's per-source GPU names and precision corrections
    (:mod:`training_data.corrections`); NaN where time is unknown."""
    from training_data.corrections import SOURCE_PRECISION, source_gpu_names

    gpus = source_gpu_names(table)
    prec = table["precision"].astype(str).copy()
    for src, p in SOURCE_PRECISION.items():
        prec[table["source"].astype(str) == src] = p
    peak = priced_peak_flops(gpus, prec, table["g_frac_macs_conv"])
    return table["g_flops_train"].to_numpy(float) / table["time_per_sample_s"].to_numpy(float) / peak


UTILISATION_FLOOR = 1e-5
"""A row whose implied utilisation is below this is a unit slip, not a slow run: the smallest real training steps in
the table (Zeus NCF, batch 64: 1.5e-4; MobileNetV2 transfer learning: 2e-3) sit well above it, NVIDIA's PyTorch NCF
README figures read as samples/s instead of millions of samples/s sit at 4e-8."""


def physical_check(table: pd.DataFrame, dropped: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``implied_utilisation``; rows at or above :data:`UTILISATION_LIMIT` or below :data:`UTILISATION_FLOOR`
    move to ``dropped`` with the figure as their reason (never silently); the table hash is recomputed."""
    util = implied_utilisation(table)
    high = np.isfinite(util) & (util >= UTILISATION_LIMIT)
    bad = high | (np.isfinite(util) & (util < UTILISATION_FLOOR))
    table = table.drop(columns=["table_sha256"]).assign(implied_utilisation=util)
    gone = table.loc[bad, [c for c in dropped.columns if c in table.columns]].assign(
        drop_reason=[f"implied utilisation {u:.2g} of the {p} peak "
                     + (f">= {UTILISATION_LIMIT}" if h else f"< {UTILISATION_FLOOR:g} (a unit slip)")
                     for u, p, h in zip(util[bad], table.loc[bad, "precision"], high[bad])])
    table = table.loc[~bad].reset_index(drop=True)
    table["table_sha256"] = table_sha256(table)
    return table, pd.concat([dropped, gone], ignore_index=True) if len(gone) else dropped


def _count_lines(table: pd.DataFrame, excluded: pd.DataFrame) -> list[str]:
    lines = ["## Rows per source", "", "| source | rows | energy rows | GPUs | architectures | multi-GPU rows | kept out |",
             "|---|---|---|---|---|---|---|"]
    for src, t in table.groupby("source"):
        out = int((excluded["source"] == src).sum()) if len(excluded) else 0
        lines.append(f"| {src} | {len(t)} | {int(t['energy_per_sample_j'].notna().sum())} | {t['gpu'].nunique()} | "
                     f"{t['architecture'].nunique()} | {int((t['n_gpus'] > 1).sum())} | {out} |")
    lines.append(f"| **all** | {len(table)} | {int(table['energy_per_sample_j'].notna().sum())} | "
                 f"{table['gpu'].nunique()} | {table['architecture'].nunique()} | {int((table['n_gpus'] > 1).sum())} | "
                 f"{len(excluded)} |")
    return lines


MODERN_ARCHITECTURES = ("Hopper", "Blackwell", "CDNA3")


def reason_family(reason: str) -> str:
    """A kept-out reason without its row-specific details (figures, names after the first ':' or '(')."""
    import re

    head = re.split(r":|\(| for ", str(reason), maxsplit=1)[0].strip()
    return re.sub(r"^implied utilisation [\d.e+-]+ of", "implied utilisation x of", head)


def _reason_lines(dropped: pd.DataFrame, excluded: pd.DataFrame) -> list[str]:
    reasons = pd.concat([dropped["drop_reason"] if len(dropped) else pd.Series(dtype=str),
                         excluded["reason"] if len(excluded) else pd.Series(dtype=str)], ignore_index=True)
    counts = reasons.map(reason_family).value_counts()
    return ["## Kept out, per reason", "", "| reason | rows |", "|---|---|",
            *[f"| {r.replace('|', '/')} | {n} |" for r, n in counts.items()], f"| **all** | {int(counts.sum())} |"]


def _modern_lines(table: pd.DataFrame) -> list[str]:
    import warnings

    from featurize import lookup_gpu

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arch = {g: lookup_gpu(g).architecture for g in table["gpu"].unique()}
    modern = table[table["gpu"].map(arch).isin(MODERN_ARCHITECTURES)]
    return [f"- architectures: {table['architecture'].nunique()}; on {' / '.join(MODERN_ARCHITECTURES)} GPUs: "
            f"{modern['architecture'].nunique()} ({len(modern)} rows: {', '.join(sorted(modern['architecture'].unique()))})"]


def summary_markdown(table: pd.DataFrame, dropped: pd.DataFrame, sha: str,
                     excluded: pd.DataFrame | None = None) -> str:
    excluded = excluded if excluded is not None else pd.DataFrame(columns=["source", "architecture", "reason"])
    lines = ["# Training table summary", "", f"- rows: {len(table)}; dropped: {len(dropped)}; kept out by the "
             f"converters: {len(excluded)}", f"- table_sha256: `{sha}`",
             "- built by `python -m training_data.build_table` (do not edit by hand)", *_modern_lines(table), "",
             *_count_lines(table, excluded), "", *_reason_lines(dropped, excluded), "",
             "## Rows per source x GPU x architecture", "", "| source | gpu | architecture | rows |", "|---|---|---|---|"]
    counts = table.groupby(["source", "gpu", "architecture"]).size()
    lines += [f"| {s} | {g} | {a} | {n} |" for (s, g, a), n in counts.items()]
    lines += ["", "## Dropped rows", ""]
    if dropped.empty:
        lines.append("None.")
    else:
        lines += ["| source | model | input_shape | reason | rows |", "|---|---|---|---|---|"]
        for (s, m, i, r), n in dropped.groupby(["source", "model", "input_shape", "drop_reason"]).size().items():
            lines.append(f"| {s} | {m} | {i} | {r.replace('|', '/')} | {n} |")
    lines += ["", "## Rows kept out by the converters", ""]
    if excluded.empty:
        lines.append("None.")
    else:
        lines += ["| source | architecture | reason | rows |", "|---|---|---|---|"]
        for (s, a, r), n in excluded.groupby(["source", "architecture", "reason"]).size().items():
            lines.append(f"| {s} | {a} | {str(r).replace('|', '/')} | {n} |")
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_runs(shared: Path, sources: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validated runs of ``sources`` (default all), rows the converters kept out with their reason)."""
    from training_data.sources import SOURCE_NAMES, load_source

    loaded = [load_source(s, Path(shared)) for s in (sources or SOURCE_NAMES)]
    runs = pd.concat([r for r, _ in loaded], ignore_index=True)
    excluded = pd.concat([x for _, x in loaded if len(x)], ignore_index=True) if any(len(x) for _, x in loaded) \
        else loaded[0][1]
    return runs, excluded


def build_table(shared: Path, out: Path, *, n_jobs: int = 2, sources: list[str] | None = None,
                cache_dir: Path | None = None, progress: bool = True, subset=None) -> pd.DataFrame:
    """Load, validate, featurize, write ``out/training_table.parquet`` + ``out/SUMMARY.md``; return the table.

    ``subset`` (runs -> runs), e.g. :func:`training_data.subset.ci_subset`, selects rows before featurizing."""
    from training_data.zoo import CACHE_DIR

    runs, excluded = load_runs(shared, sources)
    if subset is not None:
        runs = subset(runs).reset_index(drop=True)
    feats = featurize_runs(runs, cache_dir=Path(cache_dir or CACHE_DIR), n_jobs=n_jobs, progress=progress)
    table, dropped = physical_check(*finish_table(runs, feats))
    sha = str(table["table_sha256"].iloc[0]) if len(table) else ""
    summary = summary_markdown(table, dropped, sha, None if subset is not None else excluded)
    # build both outputs in memory first, then replace: a failure above never touches a good table
    _atomic_write(Path(out) / "training_table.parquet", lambda p: table.to_parquet(p, index=False))
    _atomic_write(Path(out) / "SUMMARY.md", lambda p: Path(p).write_text(summary))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training_data.build_table", description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--sources", nargs="*", default=None, help="subset of sources (default: all)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="ONNX export + feature cache (default training_data/cache/; an empty folder = from scratch)")
    args = parser.parse_args(argv)
    from featurize.errors import JoulecastError

    try:
        table = build_table(args.shared, args.out, n_jobs=args.n_jobs, sources=args.sources, cache_dir=args.cache_dir)
    except JoulecastError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {len(table)} rows to {args.out / 'training_table.parquet'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
