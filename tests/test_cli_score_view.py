"""`joulecast score`'s table and Pareto plot (issue 32 items 9 and 10): the `!` flag, per-GPU ranking with --top,
exit status 1 when any input failed (every row still written), 80-column output that never splits a number, one
notation; the plot of energy vs time (or accuracy) with its front labelled and zeros drawn."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import pytest

from predictor.cli import main
from predictor.cli.pareto import pareto_figure
from predictor.cli.score import rank
from predictor.cli.score_view import plain, print_table
from test_batch_graphs import write_variants

SHARED = "GPU name 'A100' is ambiguous (SXM4 or PCIe; default SXM4); resolved to A100-SXM4-80GB"


def frame(rows) -> pd.DataFrame:
    """A predict_many-like frame: (name, gpu, energy_kwh, time_s, warnings, error)."""
    recs = []
    for name, gpu, kwh, t, warn, err in rows:
        e = kwh * 3.6e6
        recs.append(dict(model=f"/c/{name}.onnx", name=name, gpu=gpu, energy_j=e if not err else float("nan"),
                         energy_kwh=kwh if not err else float("nan"), energy_per_epoch_j=e, time_s=t,
                         avg_power_w=e / t if t else 0.0, interval_low_j=0.7 * e, interval_high_j=1.4 * e,
                         params=1e6, flops_train=1e9, warnings=warn, error=err))
    return pd.DataFrame(recs)


def render(ranked, top=None, width=80) -> str:
    from predictor.cli._common import console

    buf = io.StringIO()
    print_table(ranked, top, "caption", [], console(file=buf, width=width))
    return buf.getvalue()


def test_the_flag_marks_only_rows_with_a_warning_of_their_own():
    ranked = rank(frame([
        ("a", "A100", 1.0, 100, SHARED, ""),
        ("b", "A100", 2.0, 200, SHARED + "; extrapolation: params far outside the training range", ""),
        ("c", "A100", 3.0, 300, SHARED, ""),
    ]))
    text = render(ranked)
    rows = {line.split()[1]: line for line in text.splitlines() if re.match(r"^\d+\s", line)}
    assert rows["b"].rstrip().endswith("!") and not rows["a"].rstrip().endswith("!")
    assert not rows["c"].rstrip().endswith("!")
    assert text.count("ambiguous") == 1  # the shared warning, once


def test_top_with_several_gpus_ranks_and_shows_each_gpu_in_its_own_order():
    ranked = rank(frame([(f"m{i}", g, kwh, 100, "", "") for i, kwh in enumerate((5.0, 1.0, 3.0, 2.0))
                         for g in ("A100", "L4")]))
    for g in ("A100", "L4"):  # the files too: GPU blocks, each lowest energy first
        block = ranked[ranked["gpu"] == g]
        assert list(block["rank"]) == [1, 2, 3, 4] and list(block["name"]) == ["m1", "m3", "m2", "m0"]
    assert list(ranked["gpu"]) == ["A100"] * 4 + ["L4"] * 4
    text = render(ranked, top=2)
    sections = text.split("L4: lowest")
    assert len(sections) == 2
    for part in sections:
        shown = [line.split()[:2] for line in part.splitlines() if re.match(r"^\d+\s", line)]
        assert shown == [["1", "m1"], ["2", "m3"]]


def test_80_columns_never_split_a_number_and_use_one_notation():
    ranked = rank(frame([("tiny", "A100-SXM4-80GB", 1.2e-4, 0.5, "", ""),
                         ("a-rather-long-candidate-name-v2", "A100-SXM4-80GB", 27.0, 3.1e5, "", ""),
                         ("huge", "A100-SXM4-80GB", 1234.5, 9.9e6, "", "")]))
    text = render(ranked, width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert not re.search(r"\d[eE][+-]?\d", text)  # no exponent anywhere
    div = 3.6e6  # kWh: the largest row is above 0.1 kWh
    for r in ranked.itertuples():
        assert plain(r.energy_j / div) in text  # each number whole, on one line
    assert plain(1234.5) == "1,230" and plain(1.2e-4) == "0.000120" and plain(0) == "0"


@pytest.fixture()
def mixed_dir(tmp_path):
    d = tmp_path / "cands"
    write_variants(d, 3, seed=11, prefix="cand")
    (d / "broken.onnx").write_bytes(b"not an onnx graph")
    return d


def test_exit_1_when_any_input_failed_with_every_row_written(mixed_dir, synthetic_model, tmp_path, capsys):
    out = tmp_path / "ranked.csv"
    argv = ["score", str(mixed_dir), "-g", "L4", "-g", "T4", "-n", "5000", "--model-dir", str(synthetic_model[0]),
            "-j", "1"]
    assert main([*argv, "--out", str(out)]) == 1
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 8 and (table["error"] != "").sum() == 2  # 4 inputs x 2 GPUs, the broken one with its error
    capsys.readouterr()
    assert main([*argv, "--json"]) == 1
    assert len(json.loads(capsys.readouterr().out)) == 8
    assert main(["score", "--help"]) == 0
    assert "1 when any input failed" in " ".join(capsys.readouterr().out.split())


def test_pareto_plot_is_energy_vs_time_with_the_front_labelled_and_zero_drawn():
    ranked = rank(frame([("fast", "A100", 4.0, 100, "", ""), ("lean", "A100", 1.0, 400, "", ""),
                         ("worse", "A100", 5.0, 500, "", ""), ("free", "L4", 0.0, 300, "", ""),
                         ("slow", "L4", 2.0, 600, "", "")]))
    fig, fronts = pareto_figure(ranked)
    assert fronts == {"A100": ["fast", "lean"], "L4": ["free"]}
    ax = fig.axes[0]
    assert "time" in ax.get_xlabel() and "energy" in ax.get_ylabel()
    assert sorted(t.get_text() for t in ax.texts) == ["fast", "free", "lean"]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 5  # the zero-energy graph is drawn
    assert ax.get_yscale() == "linear"  # a zero cannot sit on a log axis


def test_pareto_plot_with_accuracy_maximises_it():
    ranked = frame([("a", "A100", 1.0, 100, "", ""), ("b", "A100", 2.0, 100, "", ""), ("c", "A100", 3.0, 100, "", "")])
    ranked["top1"] = [0.70, 0.80, 0.75]
    fig, fronts = pareto_figure(rank(ranked), accuracy_name="top1")
    assert fronts == {"A100": ["a", "b"]}  # c costs more than b for less accuracy
    assert fig.axes[0].get_xlabel() == "top1"
