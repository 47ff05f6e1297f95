"""The per-layer prior in a form that travels (featurize.layer_profile): one rule with featurize.physics.layers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from featurize import featurize, lookup_gpu
from featurize.errors import InvalidInputError
from featurize.layer_profile import LayerProfile, coarse_profile, layered_arrays, row_profiles, step_times
from featurize.physics.prior import gpu_columns
from predictor.layers import layer_prior_for

from _graphs import RESNET50, conv_stack_onnx, gpt_onnx

CASES = [("H100-SXM5-80GB", "bf16", 64), ("V100-SXM2-32GB", "fp32", 32), ("RTX-4090", "fp16", 128),
         ("A100-PCIE-40GB", "fp32", 8)]


@pytest.fixture(scope="module")
def graphs():
    return {"resnet50": (featurize(str(RESNET50), batch_size=64, precision="fp16"), 64),
            "gpt": (featurize(gpt_onnx(layers=2, seq=128, batch=8), batch_size=8, precision="fp16"), 8),
            "convs": (featurize(conv_stack_onnx(layers=3, channels=64, size=14, batch=16), batch_size=16), 16)}


@pytest.mark.parametrize("name", ["resnet50", "gpt", "convs"])
def test_profile_prices_exactly_what_layer_prior_prices(graphs, name):
    """The featurizer's profile (no node table needed) gives the per-layer prior's step time to 1e-12, on GPUs with
    and without tensor cores, any batch; so does a profile rebuilt from the node table and its text round trip."""
    gf, _ = graphs[name]
    from_nodes = LayerProfile.from_nodes(gf.nodes, gf.flops_forward)
    again = LayerProfile.from_text(gf.layer_profile.to_text())
    bwd = gf.flops_backward / gf.flops_forward
    for gpu, prec, batch in CASES:
        spec = lookup_gpu(gpu)
        expect = float(layer_prior_for(gf, spec, precision=prec, batch_size=batch)["time_s"].sum())
        for prof in (gf.layer_profile, from_nodes, again):
            got = step_times(prof, gpu_columns(spec, prec), batch_size=batch, backward_ratio=bwd,
                             trainable_params=gf.trainable_params)
            assert got["time_s"] == pytest.approx(expect, rel=1e-12)
            parts = got["compute_s"] + got["memory_s"] + got["launch_s"] + got["optimizer_s"] + got["step_s"]
            assert parts == pytest.approx(got["time_s"], rel=1e-12)


def test_profile_without_the_node_table_and_merged_duplicates(graphs):
    gf, batch = graphs["gpt"]
    lean = featurize(gpt_onnx(layers=2, seq=128, batch=8), batch_size=8, precision="fp16", with_nodes=False)
    assert lean.nodes is None and lean.layer_profile.to_text() == gf.layer_profile.to_text()
    # two identical transformer blocks: every block node appears once with count 2
    assert len(gf.layer_profile.code) < gf.layer_profile.count.sum()
    assert (gf.layer_profile.count >= 1).all() and gf.layer_profile.eval_batch == 8
    # the profile's forward FLOPs are the graph's (per sample x evaluated batch)
    flops = float(np.sum(gf.layer_profile.flops * gf.layer_profile.count))
    assert flops == pytest.approx(gf.flops_forward * 8, rel=1e-9)


@pytest.mark.parametrize("text", ["", "lp1:", "lp2:abc", "lp1:!!!", "lp1:" + "A" * 12, 12])
def test_a_damaged_profile_text_is_one_clear_error(text):
    with pytest.raises(InvalidInputError, match="layer profile"):
        LayerProfile.from_text(text)


def test_rows_without_a_profile_are_priced_by_the_stated_coarse_profile(graphs):
    """Hand-made feature rows (no profile column): one node per compute class + n_nodes elementwise nodes carrying
    the bytes; the coarse time is within a factor of a few of the real per-layer prior (it is an approximation)."""
    gf, batch = graphs["resnet50"]
    row = gf.to_dict()
    coarse = coarse_profile(row)
    assert float(np.sum(coarse.flops * coarse.count)) == pytest.approx(gf.flops_forward, rel=1e-9)
    assert float(np.sum(coarse.bytes * coarse.count)) == pytest.approx(gf.bytes_moved_forward, rel=1e-9)
    frame = pd.DataFrame([row, {**row, "layer_profile": gf.layer_profile.to_text()}])
    profs = row_profiles(frame)
    assert profs[1].to_text() == gf.layer_profile.to_text() and profs[0].to_text() == coarse.to_text()
    spec = lookup_gpu("A100-SXM4-80GB")
    out = layered_arrays(profs, gpu_columns(spec, "fp16"), batch_size=batch, backward_ratio=2.0,
                         trainable_params=gf.trainable_params)
    assert 0.2 < out["t_layers_s"][0] / out["t_layers_s"][1] < 5
    fracs = sum(out[k] for k in ("layer_compute_frac", "layer_memory_frac", "layer_launch_frac",
                                 "layer_optimizer_frac", "layer_step_frac"))
    np.testing.assert_allclose(fracs, 1.0, rtol=1e-12)
