"""Runner on CPU with the replay energy device: rows in the run schema, resumability, OOM handling, budget."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from training_data.collect import models, networks  # noqa: E402
from training_data.collect.__main__ import main  # noqa: E402
from predictor.energy.devices import open_device  # noqa: E402
from training_data.collect.runner import (  # noqa: E402
    EXTRA_COLUMNS,
    RUN_COLUMNS,
    RunnerOptions,
    done_keys,
    gpu_slug,
    load_runs,
    run_sweep,
)
from training_data.collect.sweep import RunConfig, expand, parse_sweep  # noqa: E402

SPEC = {
    "name": "cpu-test",
    "epochs": 3,
    "steps_per_epoch": 2,
    "grids": [
        {"family": "mlp", "arch": "mlp", "shape": ["rectangle", "trapezoid"], "width": 64, "depth": [2, 3],
         "batch_size": 8, "precision": ["fp32", "bf16"]},
        {"family": "rnn", "arch": "gru", "hidden": 32, "layers": 1, "seq_len": 8, "batch_size": 4,
         "precision": "fp32"},
        {"family": "transformer", "arch": "gpt_decoder", "d_model": 64, "layers": 1, "seq_len": 16, "vocab": 100,
         "batch_size": 2, "precision": "fp32"},
    ],
}
N_RUNS = 8 + 1 + 1


@pytest.fixture()
def spec_file(tmp_path):
    import yaml

    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(SPEC))
    return p


def _files(out: Path) -> list[Path]:
    return sorted(out.rglob("*.parquet"))


def test_dry_run_resumes_without_duplicates(spec_file, tmp_path):
    out = tmp_path / "runs"
    args = ["--sweep", str(spec_file), "--out", str(out), "--device", "cpu", "--dry-run", "-q"]
    assert main([*args, "--max-runs", "3"]) == 0  # a sweep stopped after 3 runs
    first = {p.name: p.stat().st_mtime_ns for p in _files(out)}
    assert len(first) == 3
    assert main(args) == 0  # the rerun completes the rest
    files = _files(out)
    assert len(files) == N_RUNS
    assert {p.name: p.stat().st_mtime_ns for p in files if p.name in first} == first  # not re-measured
    expected = {c.run_key for c in expand(parse_sweep(SPEC))}
    assert done_keys(out / "replay-synthetic") == expected
    assert main(args) == 0  # nothing left: no new files
    assert len(_files(out)) == N_RUNS
    df = load_runs(out)
    assert len(df) == N_RUNS * (1 + 2)  # --dry-run: 2 epochs per run unless --epochs
    assert df["run_id"].is_unique
    assert set(df.loc[df.row_kind == "run", "config_hash"]) == {k.split("-")[0] for k in expected}


def test_rows_follow_the_run_schema(spec_file, tmp_path):
    out = tmp_path / "runs"
    assert main(["--sweep", str(spec_file), "--out", str(out), "--device", "cpu", "--dry-run", "-q",
                 "--max-runs", "4", "--epochs", "3"]) == 0
    df = load_runs(out)
    assert list(df.columns) == list(RUN_COLUMNS) + list(EXTRA_COLUMNS)
    from training_data import schema

    assert list(RUN_COLUMNS) == list(schema.RUN_COLUMNS)
    valid = schema.validate_runs(df, origin="dry run", check_gpus=False)
    assert len(valid) == len(df) == 4 * 4
    for key, g in df.groupby("config_hash"):
        ep = g[g.row_kind == "epoch"].sort_values("epoch_index")
        run = g[g.row_kind == "run"].iloc[0]
        assert ep["epoch_index"].tolist() == [0, 1, 2]
        assert ep["is_warmup"].tolist() == [True, False, False]
        assert run["energy_j"] == pytest.approx(ep["energy_j"].sum())
        assert run["time_s"] == pytest.approx(ep["time_s"].sum())
        assert run["energy_per_epoch_j"] == pytest.approx(ep["energy_j"].iloc[1:].mean())
        assert run["samples_per_epoch"] == run["steps_per_epoch"] * run["batch_size"] == 2 * run["batch_size"]
        assert run["energy_per_sample_j"] == pytest.approx(run["energy_per_epoch_j"] / run["samples_per_epoch"])
        assert run["epochs"] == 3
        assert (ep["energy_method"] == "counter").all()
        assert run["source"] == "joulecast_collect" and run["scope"] == "gpu_replay"
        ident = json.loads(run["config_json"])
        cfg = RunConfig(ident["family"], ident["arch"], ident["batch_size"], ident["precision"], ident["optimizer"],
                        tuple(sorted(ident["params"].items())))
        assert cfg.config_hash == key
        assert models.config_from_ref(run["model"]).p == ident["params"]
        assert bool(run["dry_run"]) is True


def test_dry_run_refuses_the_committed_runs_folder(spec_file, capsys):
    runs = Path(__file__).resolve().parents[1] / "training_data" / "runs"
    assert main(["--sweep", str(spec_file), "--out", str(runs), "--device", "cpu", "--dry-run", "-q"]) == 2
    assert "not measurements" in capsys.readouterr().err


def test_list_prints_the_plan(spec_file, capsys):
    assert main(["--sweep", str(spec_file), "--list", "--max-runs", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and [ln.split()[1] for ln in lines[:3]] == ["mlp", "rnn", "transformer"]


def test_model_ref_roundtrip():
    from training_data.collect.runner import model_ref

    cfg = RunConfig("transformer", "vit", 32, "bf16", params=(("d_model", 384), ("image_size", 32),
                                                                ("layers", 6), ("patch", 4)))
    ref = model_ref(cfg)
    assert ref == "collect:vit?d_model=384&image_size=32&layers=6&patch=4"
    back = models.config_from_ref(ref, batch_size=32, precision="bf16")
    assert back.config_hash == cfg.config_hash


class _OOMBuilder:
    """Raises an out-of-memory error for one arch (as torch does when a model does not fit), builds the rest."""

    def __init__(self, arch: str, error: Exception):
        self.arch, self.error, self.calls = arch, error, 0

    def __call__(self, cfg, *, tiny=False):
        self.calls += 1
        if cfg.arch == self.arch:
            raise self.error
        return models.build(cfg, tiny=tiny)


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB"),
                                   RuntimeError("CUDA error: out of memory")])
def test_oom_is_recorded_as_skipped_and_the_sweep_continues(tmp_path, error):
    configs = expand(parse_sweep(SPEC))
    opts = RunnerOptions(epochs=2, steps_per_epoch=1, torch_device="cpu", tiny=True)
    builder = _OOMBuilder("gru", error)
    with open_device("replay") as energy:
        s = run_sweep(configs, energy=energy, out_dir=tmp_path, opts=opts, builder=builder)
    assert len(s.oom) == 1 and len(s.measured) == N_RUNS - 1 and not s.failed
    skipped = load_runs(tmp_path, row_kinds=("skipped",))
    assert len(skipped) == 1
    row = skipped.iloc[0]
    assert row["architecture"] == "gru" and row["skip_reason"].startswith("out of memory")
    assert pd.isna(row["energy_j"])
    assert "gru" not in set(load_runs(tmp_path)["architecture"])  # measured rows only by default
    # resume: the OOM config is on disk and is not retried
    with open_device("replay") as energy:
        s2 = run_sweep(configs, energy=energy, out_dir=tmp_path, opts=opts, builder=builder)
    assert s2.skipped_existing == N_RUNS and not s2.measured and builder.calls == N_RUNS


def test_other_errors_are_counted_and_not_written(tmp_path):
    configs = [c for c in expand(parse_sweep(SPEC)) if c.family != "mlp"]
    opts = RunnerOptions(epochs=2, steps_per_epoch=1, torch_device="cpu", tiny=True)
    with open_device("replay") as energy:
        s = run_sweep(configs, energy=energy, out_dir=tmp_path, opts=opts,
                      builder=_OOMBuilder("gru", ValueError("a bug")))
    assert len(s.failed) == 1 and len(s.measured) == 1 and not s.oom
    assert len(_files(tmp_path)) == 1


def test_budget_stops_before_starting_a_run(tmp_path):
    configs = expand(parse_sweep(SPEC))
    with open_device("replay") as energy:
        s = run_sweep(configs, energy=energy, out_dir=tmp_path, budget_s=1.0, est_run_s=5.0,
                      opts=RunnerOptions(epochs=2, steps_per_epoch=1, torch_device="cpu", tiny=True))
    assert s.stopped_by == "budget" and s.not_started == N_RUNS and not _files(tmp_path)


def test_gpu_slug():
    assert gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert gpu_slug("NVIDIA H200") == "nvidia-h200"
    assert gpu_slug("") == "unknown-gpu"


@pytest.mark.parametrize("arch", sorted(models.ARCHS))
def test_every_arch_trains_a_tiny_step(arch):
    p = {"mlp": {"shape": "trapezoid", "width": 64, "depth": 3},
         "transformer": {"d_model": 64, "layers": 1, "seq_len": 16},
         "rnn": {"hidden": 32, "layers": 1, "seq_len": 8}}.get(models.ARCHS[arch], {})
    cfg = RunConfig(models.ARCHS[arch], arch, 2, "fp32", params=tuple(sorted(p.items())))
    module, fn = models.build(cfg, tiny=True)
    (x,), y = fn(2, "cpu")
    loss = models.loss_fn(module(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(q.grad is not None for q in module.parameters() if q.requires_grad)


def test_full_size_param_counts_match_reference_models():
    def n(family, arch, **p):
        return models.param_count(RunConfig(family, arch, 1, "fp32", params=tuple(sorted(p.items()))))

    # torchvision / paper figures: resnet18 11,689,512; resnet50 25,557,032; vgg16_bn 138,365,992;
    # mobilenet_v2 3,504,872; efficientnet_b0 5,288,548; ViT-B/16 86,567,656
    assert n("cnn", "resnet18") == 11_689_512
    assert n("cnn", "resnet50") == 25_557_032
    assert n("cnn", "vgg16") == 138_365_992
    assert n("cnn", "mobilenet_v2") == 3_504_872
    assert n("cnn", "efficientnet", variant="b0") == 5_288_548
    assert n("transformer", "vit", d_model=768, layers=12, image_size=224) == 86_567_656
    assert n("mlp", "mlp", shape="rectangle", width=32, depth=2) == 784 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    assert networks.mlp_widths("trapezoid", 1024, 4) == [1024, 768, 512, 256]
    assert networks.mlp_widths("exponential", 64, 5) == [64, 32, 16, 8, 8]
    assert networks.mlp_widths("wide_first", 1024, 3) == [1024, 256, 256]


def test_export_onnx_for_featurization(tmp_path):
    onnx = pytest.importorskip("onnx")
    cfg = RunConfig("rnn", "lstm", 1, "fp32", params=(("hidden", 32), ("layers", 1), ("seq_len", 8)))
    path = models.export_onnx(cfg, tmp_path / "lstm.onnx", batch_size=2, tiny=True)
    graph = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in graph.graph.node}
    assert "LSTM" in ops or "MatMul" in ops or "Gemm" in ops
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


def test_rows_with_an_nvml_gpu_name_pass_the_gpu_check(tmp_path):
    """Rows carry NVML's device name in `gpu`; the schema resolves it through featurize.lookup_gpu."""
    from training_data import schema
    from predictor.energy.devices import ReplayDevice, synthetic_trace

    configs = [c for c in expand(parse_sweep(SPEC)) if c.family == "mlp"][:2]
    dev = ReplayDevice(synthetic_trace(), loop=True, name="NVIDIA H100 80GB HBM3", power_limit_w=700.0)
    s = run_sweep(configs, energy=dev, out_dir=tmp_path,
                  opts=RunnerOptions(epochs=2, steps_per_epoch=1, torch_device="cpu", tiny=True))
    assert len(s.measured) == 2
    assert (tmp_path / "nvidia-h100-80gb-hbm3").is_dir()
    valid = schema.validate_runs(load_runs(tmp_path), origin="replayed H100", check_gpus=True)
    assert len(valid) == 2 * 3 and (valid["power_limit_w"] == 700.0).all()
    assert valid["default_power_limit"].all()
