"""`joulecast predict FILE --gpu A100 ...`: forecast one training run and print a readable summary (or --json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from predictor.cards import fmt_j as _fmt_j
from predictor.cli._common import parse_dims


def _fmt_s(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:,.2f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.3g} s"


def summary_text(p, grid_text: str, co2_kg: float, pue: float = 1.0) -> str:
    """Plain-text summary of a Prediction (what the CLI prints)."""
    lo, hi = p.interval_j
    lines = [
        f"GPU            {p.gpu}{f' x {p.n_gpus} ({p.parallelism})' if p.n_gpus > 1 else ''}   (batch "
        f"{p.batch_size}{' per GPU' if p.n_gpus > 1 else ''}, {p.precision}, {p.samples_per_epoch:,} samples/epoch"
        f" + {p.val_samples:,} validation, {p.epochs:g} epochs)",
        f"Energy         {_fmt_j(p.energy_j)} = {p.energy_kwh:.4g} kWh   "
        f"[{p.interval_level:.0%} interval {_fmt_j(lo)} - {_fmt_j(hi)}]",
        f"Per epoch      {_fmt_j(p.energy_per_epoch_j)}, {_fmt_s(p.time_per_epoch_s)}",
        f"Time           {_fmt_s(p.time_s)}"
        + (f"   [{p.interval_level:.0%} interval {_fmt_s(p.interval_s[0])} - {_fmt_s(p.interval_s[1])}]"
           if p.interval_s else ""),
        f"Average power  {p.avg_power_w:.0f} W" + (" per GPU" if p.n_gpus > 1 else ""),
        *([f"Power limit    {p.optimal_power_limit_w:.0f} W saves the most energy within a 10 % slowdown "
           "(--power-limit-w to forecast it)"] if p.optimal_power_limit_w is not None else []),
        *([f"Memory         {p.memory_bytes / 2**30:,.1f} GiB per training step" + (" per GPU" if p.n_gpus > 1 else "")
           + (" (fits)" if p.fits else " -- does NOT fit on this GPU (see warnings)")]
          if p.memory_bytes is not None else []),
        f"CO2e           {co2_kg:.3g} kg (GPU energy x PUE {pue:g}) at {grid_text}",
        f"Model          {p.model_name} {p.model_version}",
    ]
    if p.warnings:
        lines.append("Warnings:")
        lines += [f"  - {w}" for w in p.warnings]
    return "\n".join(lines)


EXAMPLES = (
    "Examples:\n\n"
    "joulecast predict models/examples/resnet18.onnx --gpu A100 --batch-size 64 --samples-per-epoch 50000 --epochs 10\n\n"
    "joulecast predict bert.onnx --gpu H100 --dim seq=512 --precision bf16 --samples-per-epoch 100000 --json > p.json\n\n"
    "joulecast predict vit.onnx --gpu L4 --frozen encoder. --power-limit-w 60 --region fr\n\n"
    "joulecast predict llama.onnx --gpu H100 --n-gpus 8 --parallelism fsdp --tokens 2e9 --precision bf16"
)


def layers_text(layers, top: int) -> str:
    """The ``top`` energy hotspots and the per-op-class totals, as plain text."""
    from predictor.layers import by_class, hotspots

    lines = [f"Top {top} layers by energy (per-layer physics prior applied to the totals):",
             f"  {'layer':<28} {'op':<20} {'class':<14} {'bound':<9} {'time':>10} {'energy':>10} {'share':>6}"]
    for r in hotspots(layers, top).itertuples():
        label = str(getattr(r, "module", "") or r.node)  # the module path where parameter names carry one
        lines.append(f"  {label[-28:]:<28} {str(r.op_type)[:20]:<20} {r.op_class:<14} {r.bound:<9} "
                     f"{_fmt_s(r.time_s):>10} {_fmt_j(r.energy_j):>10} {r.share:>6.1%}")
    lines.append("By op class: " + ", ".join(f"{r.op_class} {r.share:.1%}" for r in by_class(layers).itertuples()))
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("predict", help="Forecast energy, time and power of training a model graph on a GPU.", epilog=EXAMPLES)
    def predict_cmd(
        file: Path = typer.Argument(..., help="ONNX model graph (weights not needed)."),
        gpu: str = typer.Option(..., "--gpu", "-g", help="GPU name or alias, e.g. A100, 'RTX 3090'."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b",
                                                 help="Samples per step (default: graph's, else 32)."),
        samples_per_epoch: Optional[int] = typer.Option(None, "--samples-per-epoch", "-n",
                                                        help="Training samples per epoch (default: 1 sample)."),
        epochs: float = typer.Option(1.0, "--epochs", "-e", help="Number of epochs."),
        val_samples: int = typer.Option(0, "--val-samples", help="Validation samples per epoch (forward only)."),
        precision: str = typer.Option("fp32", "--precision", help="fp32, tf32, fp16, bf16 or fp8."),
        precision_fallback: bool = typer.Option(False, "--precision-fallback",
                                                help="Price a precision frameworks refuse on the GPU (fp8 without FP8 "
                                                "tensor cores) as the nearest one they would pick."),
        implementation: str = typer.Option("reference", "--implementation",
                                           help="Whose training code: reference (typical PyTorch) or tuned "
                                                "(NVIDIA/MLPerf-class)."),
        n_gpus: int = typer.Option(1, "--n-gpus", help="GPUs on one node, data-parallel (--batch-size is per GPU)."),
        parallelism: str = typer.Option("ddp", "--parallelism", help="ddp or fsdp (with --n-gpus > 1)."),
        tokens: Optional[float] = typer.Option(None, "--tokens",
                                               help="Tokens per epoch instead of --samples-per-epoch (sequence models)."),
        frozen: list[str] = typer.Option([], "--frozen", help="Parameter-name prefix not trained (repeatable)."),
        dim: list[str] = typer.Option([], "--dim", help="Symbolic dimension, name=value (repeatable)."),
        power_limit_w: Optional[float] = typer.Option(None, "--power-limit-w", help="Enforced power limit, W."),
        model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="Model directory (default: shipped)."),
        region: Optional[str] = typer.Option(None, "--region", help="Grid region for CO2, e.g. fr, us-ca, us-east-1."),
        grid_g_per_kwh: Optional[float] = typer.Option(None, "--grid-g-per-kwh",
                                                       help="Grid carbon intensity, g CO2e/kWh (instead of --region)."),
        pue: float = typer.Option(1.0, "--pue", help="Data-centre power usage effectiveness (>= 1) for CO2."),
        input_samples_per_s: Optional[float] = typer.Option(
            None, "--input-samples-per-s",
            help="Most samples/s the data loader delivers; caps throughput (GPU idles while waiting)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the summary."),
        layers: Optional[int] = typer.Option(None, "--layers", min=1,
                                             help="Show the N layers taking the most energy (per-layer prior).",
                                             show_default=False),
    ) -> None:
        from predictor.api import predict
        from predictor.carbon import resolve_intensity
        from predictor.layers import hotspots

        p = predict(str(file), gpu=gpu, batch_size=batch_size, samples_per_epoch=samples_per_epoch, epochs=epochs,
                    val_samples=val_samples, precision=precision, frozen=list(frozen) or None,
                    dims=parse_dims(dim), power_limit_w=power_limit_w, model_dir=model_dir,
                    input_samples_per_s=input_samples_per_s,
                    precision_fallback=precision_fallback, implementation=implementation, n_gpus=n_gpus,
                    parallelism=parallelism, tokens=tokens)
        intensity, where = resolve_intensity(grid_g_per_kwh, region)
        co2 = p.co2_kg(grid_g_per_kwh=intensity, pue=pue)
        if as_json:
            d = p.to_dict()
            d.pop("features", None)
            d["layers"] = hotspots(p.layers, layers).to_dict(orient="records") if layers else None
            d.update(co2_kg=co2, grid_g_per_kwh=intensity, grid_source=where, pue=pue)
            typer.echo(json.dumps(d, indent=2))
        else:
            if region is None and grid_g_per_kwh is None:
                where = (where.removeprefix("default (no region given) ")
                         + " [default grid: pass --region or --grid-g-per-kwh]")
            typer.echo(summary_text(p, where, co2, pue=pue))
            if layers:
                typer.echo(layers_text(p.layers, layers))
