"""The GPU table's interconnect and power-limit columns (issues 29 and 31) against their public source.

Rows taken from ``../shared/data/hardware/gpu_interconnect_power.csv`` name their source row in
``interconnect_power_source``; each is re-read from that file here. The rows the file does not cover follow
the physical rules checked below.
"""

from __future__ import annotations

import csv

import pytest

from featurize import lookup_gpu
from featurize.hardware import gpu_table

SOURCE_FILE = "../shared/data/hardware/gpu_interconnect_power.csv"
TOPOLOGIES = {"switch", "mesh", "bridge", "none"}
PCIE_BY_GEN_BIDIR = {3: 32e9, 4: 64e9, 5: 128e9}


def _num(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def _sourced_rows() -> list[dict]:
    table = gpu_table()
    return [r for r in table.to_dict("records") if str(r["interconnect_power_source"]).startswith(SOURCE_FILE)]


def test_every_curated_gpu_has_interconnect_columns():
    table = gpu_table()
    for row in table.to_dict("records"):
        assert row["link_topology"] in TOPOLOGIES, row["name"]
        assert row["link_type"] in {"nvlink", "xgmi", "none"}, row["name"]
        assert (row["link_type"] == "none") == (row["link_bidir_bytes_per_s"] == 0), row["name"]
        assert (row["link_topology"] == "none") == (row["link_type"] == "none"), row["name"]
        assert row["interconnect_power_source"], row["name"]


def test_sourced_rows_equal_the_public_file(shared_data):
    source = {r["gpu"]: r for r in csv.DictReader(open(shared_data / "hardware" / "gpu_interconnect_power.csv"))}
    rows = _sourced_rows()
    assert len(rows) >= 30
    for row in rows:
        src = source[row["interconnect_power_source"].split(": ", 1)[1]]
        for col in ("power_limit_min_w", "power_limit_max_w", "power_limit_default_w"):
            want = _num(src[col])
            assert (row[col] != row[col] and want is None) or row[col] == want, (row["name"], col)
        link_gbps = _num(src["nvlink_bw_gbps_bidir"]) or _num(src["infinity_fabric_bw_gbps"]) or 0.0
        per_device = 2 if row["name"].startswith("MI250") else 1  # one GCD of a two-die OAM, as PyTorch sees it
        assert row["link_bidir_bytes_per_s"] == pytest.approx(link_gbps * 1e9 / per_device), row["name"]
        if src["pcie_bw_gbps_bidir"]:
            assert row["pcie_bidir_bytes_per_s"] == pytest.approx(float(src["pcie_bw_gbps_bidir"]) * 1e9)
        assert (row["link_topology"] == "switch") == (src["nvswitch_in_hgx"] == "yes" or src["form_factor"] ==
                                                       "superchip"), row["name"]


def test_power_limit_range_is_ordered_and_near_the_board_power():
    for row in gpu_table().to_dict("records"):
        lo, hi, default = row["power_limit_min_w"], row["power_limit_max_w"], row["power_limit_default_w"]
        if lo == lo and hi == hi:  # both known (NaN != NaN)
            assert 0 < lo < hi, row["name"]
            if default == default:
                assert lo <= default <= hi, row["name"]


def test_physical_orderings_of_links():
    """NVSwitch boards out-link bridged PCIe cards of their generation; consumer Ada cards have no peer link."""
    h100_sxm, h100_pcie = lookup_gpu("H100-SXM5-80GB"), lookup_gpu("H100-PCIE-80GB")
    assert h100_sxm.link_topology == "switch" and h100_pcie.link_topology == "bridge"
    assert h100_sxm.link_bidir_bytes_per_s > h100_pcie.link_bidir_bytes_per_s > h100_pcie.pcie_bidir_bytes_per_s
    rtx4090 = lookup_gpu("RTX 4090")
    assert rtx4090.link_type == "none" and rtx4090.pcie_bidir_bytes_per_s == PCIE_BY_GEN_BIDIR[4]
    assert lookup_gpu("B200").link_bidir_bytes_per_s == 2 * h100_sxm.link_bidir_bytes_per_s
    assert lookup_gpu("A100-SXM4-80GB").power_limit_max_w == 400
