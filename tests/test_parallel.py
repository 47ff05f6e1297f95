"""N GPUs on one node (issue 29): ring path, collective bytes, sharded memory, wall-clock scaling, energy of every
GPU, token budgets and argument validation. Graphs are real ONNX graphs built here (never executed)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from featurize import lookup_gpu
from featurize.errors import InvalidInputError
from featurize.parallel import (
    PCIE_EFFICIENCY,
    collective_bytes,
    comm_time_s,
    data_parallel_memory_bytes,
    pcie_bidir_bytes_per_s,
    ring_path,
)
from predictor import predict

from _graphs import gpt_onnx


def _gpu(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lookup_gpu(name)


def _external(name: str, *shape: int) -> onnx.TensorProto:
    """A float initializer whose data lives in an absent external file (shape only: weights are never read)."""
    t = onnx.TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "weights.bin"), ("offset", "0"), ("length", str(4 * int(np.prod(shape))))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def llama7b_like(seq: int = 2048, layers: int = 35, d: int = 4096, ff: int = 11008, vocab: int = 32000):
    """Token ids -> embedding -> ``layers`` x (d->3d, 3d->d, d->ff, ff->d MatMuls) -> LM head: 6.94 B params."""
    inits = [_external("emb", vocab, d), _external("head", d, vocab)]
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["h0"])]
    x = "h0"
    for i in range(layers):
        for j, (a, b) in enumerate(((d, 3 * d), (3 * d, d), (d, ff), (ff, d))):
            inits.append(_external(f"w{i}_{j}", a, b))
            nodes.append(helper.make_node("MatMul", [x, f"w{i}_{j}"], [f"h{i}_{j}"]))
            x = f"h{i}_{j}"
    nodes.append(helper.make_node("MatMul", [x, "head"], ["logits"]))
    graph = helper.make_graph(nodes, "llama7b_like", [helper.make_tensor_value_info("ids", TensorProto.INT64,
                                                                                     ["batch", seq])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def token_graph(seq: int | str = 1024, d: int = 256, vocab: int = 1000) -> onnx.ModelProto:
    emb = numpy_helper.from_array(np.zeros((vocab, d), np.float32), "emb")
    w = numpy_helper.from_array(np.zeros((d, d), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["emb", "ids"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["y"])], "tok",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", seq])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[emb, w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


GPT = gpt_onnx(layers=12)  # GPT-2-small blocks, 85.0 M parameters


def _run(model=GPT, **kw):
    args = dict(gpu="H100-SXM5-80GB", batch_size=8, samples_per_epoch=100_000, precision="bf16")
    args.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return predict(model, **args)


# ---- the communication term, against hand counts --------------------------------------------------------------

def test_ddp_ring_volume_and_time_by_hand():
    p = 85e6
    assert collective_bytes(p, p, 8, "ddp") == pytest.approx(2 * 7 / 8 * 4 * p)
    assert collective_bytes(p, p, 1, "ddp") == 0
    # H100 SXM5: 900 GB/s both directions summed -> 450 per direction, x 0.8 NCCL efficiency = 360 GB/s
    assert comm_time_s(p, p, _gpu("H100-SXM5-80GB"), 8, "ddp") == pytest.approx(2 * 7 / 8 * 4 * p / 360e9)


def test_fsdp_moves_gathers_plus_reduce_scatter():
    # all-gather fwd + bwd of fp32 params (frozen ones too) and reduce-scatter of the trainable grads
    assert collective_bytes(100.0, 60.0, 4, "fsdp") == pytest.approx(3 / 4 * (2 * 4 * 100 + 4 * 60))
    assert collective_bytes(100.0, 100.0, 4, "fsdp") == pytest.approx(1.5 * collective_bytes(100, 100, 4, "ddp"))


def test_paths_by_topology():
    h100, a100_pcie, rtx3090, rtx4090 = (_gpu(n) for n in ("H100-SXM5-80GB", "A100-PCIE-80GB", "RTX-3090",
                                                            "RTX-4090"))
    assert ring_path(h100, 8).kind == "NVSwitch"
    assert ring_path(a100_pcie, 2).kind == "NVLink bridge"
    assert ring_path(a100_pcie, 4).kind == "PCIe"  # bridges pair two cards; a ring of 4 crosses PCIe
    assert ring_path(rtx3090, 2).bytes_per_s > ring_path(rtx3090, 4).bytes_per_s
    assert ring_path(rtx4090, 2).kind == "PCIe"
    assert ring_path(rtx4090, 2).bytes_per_s == pytest.approx(64e9 / 2 * PCIE_EFFICIENCY)


def test_pcie_by_generation_when_the_table_has_no_figure():
    assert pcie_bidir_bytes_per_s(_gpu("B200")) == 128e9  # no table figure; compute capability 10.0 -> Gen5
    blank = dataclasses.replace(_gpu("RTX-4090"), pcie_bidir_bytes_per_s=None)
    assert pcie_bidir_bytes_per_s(blank) == 64e9  # compute capability 8.9 -> Gen4
    hopper = dataclasses.replace(_gpu("H100-PCIE-80GB"), pcie_bidir_bytes_per_s=None)
    assert pcie_bidir_bytes_per_s(hopper) == 128e9
    old = dataclasses.replace(_gpu("GTX-1080-Ti"), pcie_bidir_bytes_per_s=None, compute_capability=None)
    assert pcie_bidir_bytes_per_s(old) == 32e9  # launched before 2020


# ---- memory --------------------------------------------------------------------------------------------------

def test_fsdp_fits_a_7b_model_on_8x80gb_where_ddp_does_not():
    model = llama7b_like()
    ddp = _run(model, batch_size=1, n_gpus=8, parallelism="ddp", samples_per_epoch=1000)
    fsdp = _run(model, batch_size=1, n_gpus=8, parallelism="fsdp", samples_per_epoch=1000)
    params = ddp.features["params"]
    assert params == 35 * 2 * (4096 * 12288 + 4096 * 11008) + 2 * 32000 * 4096  # 6,941,573,120
    assert not ddp.fits and fsdp.fits
    assert ddp.memory_bytes > 16 * params  # fp32 weights + grads + Adam m, v, + DDP buckets
    assert fsdp.memory_bytes < ddp.memory_bytes / 4
    assert any("parallelism='fsdp'" in w for w in ddp.warnings)


def test_fsdp_shards_states_and_raises_the_largest_batch():
    one = data_parallel_memory_bytes(1e9, 1e9, 1e8, 4, 1, "ddp")
    eight = data_parallel_memory_bytes(1e9, 1e9, 1e8, 4, 8, "fsdp", largest_layer_params=1e8)
    assert eight["optimizer_bytes"] == pytest.approx(one["optimizer_bytes"] / 8)
    assert eight["weights_bytes"] == pytest.approx(one["weights_bytes"] / 8)
    assert eight["activations_bytes"] == one["activations_bytes"]  # batch is per GPU
    assert eight["gathered_bytes"] == pytest.approx(2 * 4 * 1e8)
    from featurize.parallel import largest_batch_data_parallel

    mem = 40 * 2**30
    assert largest_batch_data_parallel(1e9, 1e9, 1e8, mem, 8, "fsdp", 1e8) > \
        largest_batch_data_parallel(1e9, 1e9, 1e8, mem, 8, "ddp")


# ---- time and energy ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gpu", ["H100-SXM5-80GB", "RTX-4090", "A100-PCIE-40GB", "V100-SXM2-16GB"])
@pytest.mark.parametrize("parallelism", ["ddp", "fsdp"])
def test_speedup_never_above_n_and_energy_never_below_one_gpu(gpu, parallelism):
    precision = "fp16"
    one = _run(gpu=gpu, precision=precision)
    last = 1.0
    for n in (2, 4, 8):
        p = _run(gpu=gpu, precision=precision, n_gpus=n, parallelism=parallelism)
        speedup = one.time_s / p.time_s
        assert 1.0 < speedup <= n + 1e-9
        assert speedup == pytest.approx(p.features["speedup"], rel=1e-9)
        assert speedup > last  # more GPUs still help at this batch
        assert p.energy_j >= one.energy_j  # the same work, plus waiting on the links
        last = speedup


def test_nvlink_boards_scale_better_than_pcie_only_cards_at_equal_compute():
    nvlink = _gpu("H100-SXM5-80GB")
    pcie = dataclasses.replace(nvlink, name="H100-SXM5-80GB", link_type="none", link_topology="none",
                               link_bidir_bytes_per_s=0.0)
    for n in (2, 4, 8):
        fast = _run(gpu=nvlink, n_gpus=n)
        slow = _run(gpu=pcie, n_gpus=n)
        assert fast.features["speedup"] > slow.features["speedup"]
        assert fast.time_s < slow.time_s and fast.energy_j < slow.energy_j


def test_wall_clock_and_whole_job_energy_are_consistent():
    p = _run(n_gpus=4)
    assert p.n_gpus == 4 and p.parallelism == "ddp"
    assert p.avg_power_w * p.time_s * 4 == pytest.approx(p.energy_j, rel=1e-9)
    assert any("global batch is 32" in w for w in p.warnings)
    comm = p.layers[p.layers["op_class"] == "communication"]
    assert len(comm) == 1 and comm["time_s"].iloc[0] > 0
    assert p.layers["energy_j"].sum() == pytest.approx(p.energy_j, rel=1e-9)
    assert p.layers["time_s"].sum() == pytest.approx(p.time_s, rel=1e-9)


def test_one_gpu_is_unchanged_by_the_parallel_arguments():
    base = _run()
    for kw in ({"n_gpus": 1}, {"n_gpus": 1, "parallelism": "fsdp"}):
        p = _run(**kw)
        assert (p.energy_j, p.time_s, p.memory_bytes) == (base.energy_j, base.time_s, base.memory_bytes)


# ---- tokens -----------------------------------------------------------------------------------------------------

def test_tokens_on_a_1024_token_graph_equal_the_samples():
    model = token_graph(1024)
    by_tokens = _run(model, tokens=2e9, samples_per_epoch=None)
    by_samples = _run(model, samples_per_epoch=1_953_125)
    assert by_tokens.samples_per_epoch == 1_953_125
    assert by_tokens.energy_j == by_samples.energy_j and by_tokens.time_s == by_samples.time_s


def test_tokens_take_a_symbolic_sequence_axis_from_dims():
    p = _run(token_graph("seq_len"), tokens=1e6, samples_per_epoch=None, dims={"seq_len": 500})
    assert p.samples_per_epoch == 2000


def test_tokens_on_a_graph_without_sequence_axis_is_one_clear_error():
    with pytest.raises(InvalidInputError, match=r"no sequence axis.*samples_per_epoch=.*dims=\{'seq': N\}"):
        _run(GPT, tokens=1e9, samples_per_epoch=None)
    p = _run(GPT, tokens=1e6, samples_per_epoch=None, dims={"seq": 1000})  # the named fix works
    assert p.samples_per_epoch == 1000


# ---- validation -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [
    ({"n_gpus": 0}, r"n_gpus=0 is out of range.*\[1, 16\].*multi-node"),
    ({"n_gpus": 17}, r"n_gpus=17 is out of range"),
    ({"n_gpus": 2.5}, r"n_gpus=2.5 is out of range.*whole number"),
    ({"n_gpus": True}, r"n_gpus=True"),
    ({"n_gpus": "8"}, r"n_gpus='8'"),
    ({"n_gpus": 2, "parallelism": "tp"}, r"parallelism='tp' is not supported.*'ddp', 'fsdp'"),
    ({"parallelism": None}, r"parallelism=None is not supported"),
    ({"tokens": 1e9}, r"tokens=1000000000.0 and samples_per_epoch=100000 both"),
    ({"tokens": -5, "samples_per_epoch": None}, r"tokens=-5 is out of range"),
    ({"tokens": float("nan"), "samples_per_epoch": None}, r"tokens=nan is out of range"),
])
def test_bad_parallel_arguments_are_refused_before_any_work(kw, match):
    with pytest.raises(InvalidInputError, match=match):
        _run("/nonexistent.onnx", **kw)  # the argument is refused before the graph is read


def test_a_slow_loader_idles_every_gpu():
    free = _run(n_gpus=4)
    capped = _run(n_gpus=4, input_samples_per_s=free.samples_per_epoch / free.time_per_epoch_s / 2)
    assert capped.time_s == pytest.approx(2 * free.time_s, rel=1e-6)
    from featurize.physics import idle_power_w

    idle_w = idle_power_w(_gpu("H100-SXM5-80GB"))  # 70 W
    assert capped.energy_j == pytest.approx(free.energy_j + 4 * idle_w * free.time_s, rel=1e-3)
    assert capped.avg_power_w * capped.time_s * 4 == pytest.approx(capped.energy_j, rel=1e-9)
    assert any("all 4 GPUs together" in w for w in capped.warnings)
