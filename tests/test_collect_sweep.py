"""Sweep expansion: exact counts, determinism, stable hashes, coverage-first order, filters, spec errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurize.errors import InvalidInputError, SchemaError
from training_data.collect.sweep import RunConfig, expand, expand_grid, load_sweep, parse_sweep, select

H100 = Path(__file__).resolve().parents[1] / "training_data" / "collect" / "sweeps" / "h100.yaml"

SMALL = {
    "name": "small",
    "epochs": 3,
    "steps_per_epoch": 2,
    "grids": [
        {"family": "cnn", "arch": ["resnet18", "vgg11"], "image_size": [32, 64], "batch_size": [8, 16],
         "precision": ["fp32", "bf16"]},
        {"family": "mlp", "arch": "mlp", "shape": ["rectangle", "exponential"], "width": [32, 64], "depth": 2,
         "batch_size": 8, "precision": "fp32"},
        {"family": "rnn", "arch": "gru", "hidden": 16, "layers": 1, "seq_len": 8, "batch_size": [4, 8],
         "precision": "fp32"},
    ],
    "repeats": [{"family": "mlp", "arch": "mlp", "shape": "rectangle", "width": 32, "depth": 2, "batch_size": 8,
                 "precision": "fp32"}],
}


def test_grid_is_a_cartesian_product():
    cfgs = expand_grid(SMALL["grids"][0])
    assert len(cfgs) == 2 * 2 * 2 * 2
    assert {c.p["image_size"] for c in cfgs} == {32, 64}
    assert all(c.optimizer == "adamw" for c in cfgs)


def test_expand_counts_and_round_robin_order():
    spec = parse_sweep(SMALL)
    runs = expand(spec)
    assert len(runs) == 16 + 4 + 2
    assert len({r.run_key for r in runs}) == len(runs)
    # coverage first: the first three runs are one per family, and the first four CNN runs cover both archs
    assert [r.family for r in runs[:3]] == ["cnn", "mlp", "rnn"]
    assert {r.arch for r in runs if r.family == "cnn"} == {"resnet18", "vgg11"}
    assert [r.arch for r in runs if r.family == "cnn"][:2] == ["resnet18", "vgg11"]


def test_expand_is_deterministic_and_independent_of_key_order():
    a = [r.run_key for r in expand(parse_sweep(SMALL))]
    reordered = dict(SMALL)
    reordered["grids"] = [dict(reversed(list(g.items()))) for g in SMALL["grids"]]
    b = [r.run_key for r in expand(parse_sweep(reordered))]
    assert a == [r.run_key for r in expand(parse_sweep(SMALL))]
    assert sorted(a) == sorted(b)


def test_config_hash_is_pinned():
    cfg = RunConfig("cnn", "resnet50", 128, "bf16", "sgd", (("image_size", 224),))
    assert cfg.config_hash == "f8d0841a8416cb66"
    assert cfg.with_repeat(3).config_hash == cfg.config_hash
    assert cfg.with_repeat(3).run_key == "f8d0841a8416cb66-r3"
    assert RunConfig("cnn", "resnet50", 64, "bf16", "sgd", (("image_size", 224),)).config_hash != cfg.config_hash


def test_repeats_reuse_the_sweep_run_and_add_n_minus_one():
    spec = parse_sweep(SMALL)
    runs = expand(spec, repeats=4)
    rep = [r for r in runs if r.family == "mlp" and r.p["width"] == 32 and r.p["shape"] == "rectangle"]
    assert sorted(r.repeat for r in rep) == [0, 1, 2, 3]
    assert len({r.config_hash for r in rep}) == 1
    assert len(runs) == 22 + 3


def test_select_filters_then_limits():
    runs = expand(parse_sweep(SMALL))
    assert len(select(runs, families=["cnn"])) == 16
    assert len(select(runs, precisions=["bf16"])) == 8
    assert len(select(runs, archs=["gru", "mlp"])) == 6
    assert select(runs, max_runs=5) == runs[:5]
    with pytest.raises(InvalidInputError):
        select(runs, max_runs=-1)


def test_h100_spec_counts():
    from training_data.collect.models import param_count

    spec = load_sweep(H100)
    raw = expand(spec)
    kept = expand(spec, param_counter=param_count)
    assert len(raw) == 290
    assert len(kept) == 287  # 3 MLPs of width 16384 above max_params=1e9 dropped
    assert all(param_count(c) <= 1e9 for c in kept if c.family == "mlp")
    with_rep = expand(spec, repeats=5, param_counter=param_count)
    assert len(with_rep) == 287 + 4 * 4
    fams = {f: sum(c.family == f for c in kept) for f in ("cnn", "mlp", "transformer", "rnn")}
    assert fams == {"cnn": 118, "mlp": 61, "transformer": 72, "rnn": 36}
    from training_data.collect.models import architecture_name

    assert len({architecture_name(c) for c in kept}) >= 20
    assert {c.precision for c in kept} == {"fp32", "bf16"}
    assert {c.family for c in kept[:4]} == {"cnn", "mlp", "transformer", "rnn"}


@pytest.mark.parametrize("bad, msg", [
    ({"grids": []}, "non-empty"),
    ({"grids": [{"family": "cnn", "arch": "resnet18", "batch_size": 8}]}, "precision"),
    ({"grids": [{"family": "gnn", "arch": "x", "batch_size": 8, "precision": "fp32"}]}, "family"),
    ({"grids": [{"family": "cnn", "arch": "x", "batch_size": 8, "precision": "fp8"}]}, "precision"),
    ({"grids": [{"family": "cnn", "arch": "x", "batch_size": 0, "precision": "fp32"}]}, "batch_size"),
    ({"epochs": 1, "grids": [{"family": "cnn", "arch": "x", "batch_size": 8, "precision": "fp32"}]}, "epochs"),
    ({"grid": []}, "unknown keys"),
])
def test_bad_specs_raise_schema_error(bad, msg):
    with pytest.raises(SchemaError, match=msg):
        parse_sweep(bad)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(InvalidInputError, match="not found"):
        load_sweep(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("grids: [\n")
    with pytest.raises(SchemaError, match="YAML"):
        load_sweep(p)
