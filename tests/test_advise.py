"""advise: every option fits, respects the deadline and budget, is priced from the snapshot, and the cheapest one
matches a forecast re-done by hand with predict()."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from featurize.errors import InvalidInputError
from featurize.physics import training_memory_bytes
from predictor import advise, predict
from predictor.advise import pareto_mask, tie_note
from predictor.prices import price_table
from tests._graphs import gpt_onnx
from tests.conftest import REPO_ROOT

RESNET = str(REPO_ROOT / "models" / "examples" / "resnet18.onnx")
JOB = dict(samples_per_epoch=50_000, epochs=10)


@pytest.fixture(scope="module")
def limited():
    """Every priced GPU, default precisions and batches, with a deadline and a budget that cut some options."""
    free = advise(RESNET, **JOB)
    deadline = float(free["time_s"].quantile(0.5))
    budget = float(free["cost_usd"].quantile(0.5))
    return free, advise(RESNET, **JOB, deadline_s=deadline, budget_usd=budget), deadline, budget


def test_every_option_fits_in_memory(limited):
    from featurize import featurize, lookup_gpu

    _, df, _, _ = limited
    assert (df["memory_bytes"] <= df["mem_bytes_gpu"]).all()
    for _, r in df.drop_duplicates(["precision", "batch_size"]).head(4).iterrows():  # memory re-derived
        gf = featurize(RESNET, batch_size=int(r["batch_size"]), precision=r["precision"])
        need = training_memory_bytes(gf.params, gf.trainable_params, gf.activation_bytes, r["batch_size"])
        assert r["memory_bytes"] == pytest.approx(need["total_bytes"])
        assert need["total_bytes"] <= lookup_gpu(r["gpu"]).mem_bytes


def test_limits_are_respected_and_every_drop_says_why(limited):
    free, df, deadline, budget = limited
    assert len(df) > 0 and (df["time_s"] <= deadline).all() and (df["cost_usd"] <= budget).all()
    dropped = df.attrs["dropped"]
    assert len(df) + len(dropped) == len(free)
    late = dropped["reason"].str.contains("past the deadline")
    over = dropped["reason"].str.contains("over the budget")
    assert (late | over).all() and late.any() and over.any()
    keys = ["gpu", "precision", "batch_size", "n_gpus"]
    back = dropped.merge(free, on=keys, how="left")
    assert (back.loc[late.to_numpy(), "time_s"] > deadline).all()
    assert (back.loc[over.to_numpy(), "cost_usd"] > budget).all()
    risky = df[df["at_risk"].str.contains("deadline")]
    assert (risky["time_high_s"] > deadline).all() and (df.loc[df["at_risk"] == "", "time_high_s"] <= deadline).all()


def test_every_option_is_priced_from_the_snapshot_at_its_cheapest_instance(limited):
    _, df, _, _ = limited
    table = price_table()
    joined = df.merge(table, on=["cloud", "instance_type"], suffixes=("", "_snap"))
    assert len(joined) == len(df)  # every option's instance is a snapshot row
    assert np.allclose(joined["price_usd_per_hour"], joined["price_usd_per_hour_snap"])
    assert (joined["gpu"] == joined["gpu_snap"]).all()
    for (gpu, n), part in df.groupby(["gpu", "n_gpus"]):
        offers = table[(table["gpu"] == gpu) & (table["gpus_per_instance"] >= n)]
        assert part["price_usd_per_hour"].iloc[0] == pytest.approx(offers["price_usd_per_hour"].min())
    assert np.allclose(df["cost_usd"], df["price_usd_per_hour"] * df["time_s"] / 3600)
    assert "SkyPilot" in df.attrs["price_source"]


def test_cheapest_option_recomputed_by_hand():
    """Two GPUs x two precisions x one batch, priced with predict() and the cheapest offer, by hand."""
    df = advise(RESNET, **JOB, gpus=["L4", "RTX 4090"], precisions=["fp32", "bf16"], batch_sizes=[64])
    table = price_table()
    by_hand = []
    for gpu in ("L4", "RTX-4090"):
        rate = table.loc[table["gpu"] == gpu, "price_usd_per_hour"].min()
        for prec in ("fp32", "bf16"):
            p = predict(RESNET, gpu=gpu, batch_size=64, precision=prec, **JOB)
            by_hand.append((rate * p.time_s / 3600, gpu, prec, p.time_s, p.energy_j, p.interval_j))
    by_hand.sort()
    cost, gpu, prec, time_s, energy_j, interval = by_hand[0]
    top = df.iloc[0]
    assert (top["gpu"], top["precision"], int(top["batch_size"])) == (gpu, prec, 64)
    assert top["cost_usd"] == pytest.approx(cost, rel=1e-9)
    assert top["time_s"] == pytest.approx(time_s, rel=1e-9) and top["energy_j"] == pytest.approx(energy_j, rel=1e-9)
    assert (top["energy_low_j"], top["energy_high_j"]) == pytest.approx(interval, rel=1e-9)
    assert list(df["cost_usd"]) == sorted(df["cost_usd"]) and len(df) == 4


def test_objectives_rank_and_the_front_is_not_dominated():
    for objective, col in (("energy", "energy_j"), ("time", "time_s"), ("co2", "co2_kg")):
        df = advise(RESNET, **JOB, gpus=["L4", "H100"], batch_sizes=[32, 128], objective=objective)
        assert list(df[col]) == sorted(df[col]) and list(df["rank"]) == list(range(1, len(df) + 1))
    x, y = df["time_s"].to_numpy(), df["cost_usd"].to_numpy()
    for i in range(len(df)):
        dominated = np.any((x <= x[i]) & (y <= y[i]) & ((x < x[i]) | (y < y[i])))
        assert df["pareto"].iloc[i] == (not dominated)


def test_pareto_mask_by_hand():
    assert list(pareto_mask(np.array([1, 2, 3, 2]), np.array([3, 2, 1, 3]))) == [True, True, True, False]


def test_tie_is_stated_only_when_the_runner_up_is_inside_the_interval():
    base = dict(gpu=["A", "B"], n_gpus=[1, 1], precision=["bf16"] * 2, batch_size=[8, 8])
    tied = pd.DataFrame({**base, "cost_usd": [10.0, 12.0], "cost_high_usd": [13.0, 15.0]})
    apart = pd.DataFrame({**base, "cost_usd": [10.0, 14.0], "cost_high_usd": [13.0, 18.0]})
    assert tie_note(tied, "cost").startswith("tie: #2 (B x1")
    assert tie_note(apart, "cost") == ""


def test_one_gpu_on_an_eight_gpu_only_offer_is_billed_whole():
    df = advise(RESNET, **JOB, gpus=["B200"], cloud="nebius", batch_sizes=[64])
    r = df.iloc[0]
    assert r["gpus_per_instance"] == 8 and r["price_usd_per_hour"] == pytest.approx(44.0)
    assert "whole 8-GPU instance billed (7 idle)" in r["note"]


def test_own_prices_add_gpu_hours_and_electricity():
    df = advise(RESNET, **JOB, gpus=["RTX 3090"], batch_sizes=[64], price_per_gpu_hour=0.5, price_per_kwh=0.3,
                pue=1.2)
    r = df.iloc[0]
    kwh = r["energy_j"] / 3.6e6
    assert r["rental_usd"] == pytest.approx(0.5 * r["time_s"] / 3600)
    assert r["electricity_usd"] == pytest.approx(0.3 * 1.2 * kwh)
    assert r["cost_usd"] == pytest.approx(r["rental_usd"] + r["electricity_usd"])
    assert r["co2_kg"] == pytest.approx(kwh * 1.2 * 481 / 1000)  # world average grid
    assert "your prices" in df.attrs["price_source"] and pd.isna(r["cloud"])


def test_tokens_give_samples_from_the_sequence_length(tmp_path):
    path = tmp_path / "gpt.onnx"
    path.write_bytes(gpt_onnx(layers=2, d_model=128, heads=4, seq=256, batch=4).SerializeToString())
    kw = dict(gpus=["H100"], precisions=["bf16"], batch_sizes=[4])
    by_tokens = advise(str(path), tokens=256_000, **kw)
    by_samples = advise(str(path), samples_per_epoch=1000, **kw)
    assert by_tokens["energy_j"].iloc[0] == pytest.approx(by_samples["energy_j"].iloc[0], rel=1e-12)
    assert any("sequence length 256 = 1,000 samples" in n for n in by_tokens.attrs["notes"])
    with pytest.raises(InvalidInputError, match="sequence model"):
        advise(RESNET, tokens=1e6, gpus=["H100"])


def test_clear_errors_and_an_empty_answer_with_reasons():
    with pytest.raises(InvalidInputError, match="objective"):
        advise(RESNET, **JOB, objective="speed")
    with pytest.raises(InvalidInputError, match="samples_per_epoch"):
        advise(RESNET, epochs=3)
    with pytest.raises(InvalidInputError, match="known clouds"):
        advise(RESNET, **JOB, cloud="aws")
    with pytest.raises(InvalidInputError, match="budget_usd"):
        advise(RESNET, **JOB, budget_usd=-1)
    df = advise(RESNET, **JOB, gpus=["L4"], batch_sizes=[2**20], precisions=["fp32"])
    assert df.empty and df.attrs["dropped"]["reason"].str.contains("does not fit").all()
    # frameworks refuse only fp8 without FP8 tensor cores; bf16 on a V100 runs emulated (FP32 arithmetic)
    bad = advise(RESNET, **JOB, gpus=["V100"], precisions=["fp8", "bf16", "fp16"], batch_sizes=[32])
    assert set(bad["precision"]) == {"bf16", "fp16"}
    assert bad.attrs["dropped"]["reason"].str.contains("cannot run fp8").any()
    by = bad.set_index("precision")["time_s"]
    assert by["bf16"] > by["fp16"]  # emulated bf16 has no tensor-core path


def test_result_renders_as_a_notebook_table():
    df = advise(RESNET, **JOB, gpus=["L4"], batch_sizes=[32])
    assert "<table" in df._repr_html_()
    assert not math.isnan(df["energy_low_j"].iloc[0])


def test_cli_advise_json_text_plot_and_verbatim_paths(tmp_path, capsys):
    from predictor.cli import main

    weird = tmp_path / "[bold]net.onnx"
    weird.write_bytes(open(RESNET, "rb").read())
    png = tmp_path / "p.png"
    args = [str(weird), "-n", "50000", "-e", "10", "-g", "L4", "-g", "H100", "-b", "64", "--deadline", "2h"]
    assert main(["advise", *args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["options"] and all(o["time_s"] <= 7200 for o in out["options"])
    assert main(["advise", *args, "--pareto", str(png)]) == 0
    text = capsys.readouterr().out
    assert "[bold]net.onnx" in text and "Prices: indicative" in text and "Time vs cost" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["advise", *args, "--deadline", "soon"]) == 1
    assert "--deadline 'soon'" in capsys.readouterr().err


def test_parse_duration():
    from predictor.cli.advise import parse_duration

    assert [parse_duration(t) for t in ("24h", "90min", "2d", "3600", "1.5 h", "45s")] == [
        86400, 5400, 172800, 3600, 5400, 45]


def test_precisions_of_one_element_size_featurize_identically():
    """advise featurizes once per (batch, element size); this holds while featurize takes only the element size
    from the precision. If a precision ever changes more than that, this fails and the sharing must go."""
    from featurize import featurize

    for src in (RESNET, gpt_onnx(layers=2, d_model=128, heads=4, seq=256, batch=4)):
        for a, b in (("fp32", "tf32"), ("bf16", "fp16")):
            fa = featurize(src, batch_size=16, precision=a, with_nodes=False).to_dict()
            assert fa == featurize(src, batch_size=16, precision=b, with_nodes=False).to_dict()
