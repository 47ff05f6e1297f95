"""The shipped model's regeneration command (build time only; nothing shipped imports it):
``python -m training_data.build_model --table training_data/table/training_table.parquet --out models``
refits the artifact deterministically (fixed seeds, single-threaded LightGBM) with :func:`predictor.fit.write.fit_model`
on the table ``python -m training_data.build_table`` builds from ``../shared/data`` (never committed or shipped)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from predictor.fit.prepare import require_corrected
from predictor.fit.stages import SHIPPED_DESIGN, SHIPPED_FEATURES
from predictor.fit.write import fit_model
from predictor.model.loaded import (
    DESIGNS,
    MANIFEST,
)


def _base_efficiencies(model_dir: Path) -> Any:
    """The per-layer efficiencies a model directory's prior spec carries (None without a readable spec)."""
    from featurize.layer_profile import LayerEfficiencies
    from predictor.model.spec import SPEC_FILE, read_spec

    if not (model_dir / SPEC_FILE).is_file():
        return None
    eff = read_spec(model_dir).layer_efficiencies
    return LayerEfficiencies(dict(eff.compute), dict(eff.memory), eff.source)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training_data.build_model", description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="training_data/table/training_table.parquet")
    ap.add_argument("--out", default="models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--design", default=SHIPPED_DESIGN, choices=sorted(DESIGNS))
    ap.add_argument("--provenance", default=None, help="how the table was built (stated in the model card)")
    ap.add_argument("--with-table", action="store_true",
                    help="also write the training table into --out (never for the shipped model: its rows are "
                         "the public measurements, which stay in ../shared/data)")
    ap.add_argument("--layer-efficiencies", default=None,
                    help="JSON of per-layer efficiencies (python -m training_data.fit_layer_efficiencies); "
                         "default: the base model's, else the defaults")
    ap.add_argument("--shipped-time-params", action="store_true",
                    help="keep the base model's time hyper-parameters (no selection; the card's time figures then "
                         "use them in every fold, not nested, and say so): a quicker refit")
    ap.add_argument("--no-nested", action="store_true",
                    help="choose the time hyper-parameters once on inner grouped folds of every row and use them in "
                         "every outer fold of the reported CV (not nested, ~6x quicker; the card says so)")
    args = ap.parse_args(argv)
    table = pd.read_parquet(args.table)
    require_corrected(table, args.table)
    out = Path(args.out)
    base = None
    if (out / MANIFEST).is_file():
        base = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        base.get("metrics", {}).pop("cv", None)
    eff = None
    if args.layer_efficiencies:
        from featurize.layer_profile import LayerEfficiencies

        eff = LayerEfficiencies(**json.loads(Path(args.layer_efficiencies).read_text(encoding="utf-8")))
    elif base is not None:
        eff = _base_efficiencies(out)
    tp = None
    if args.shipped_time_params and not ((base or {}).get("time_model") or {}).get("params"):
        raise SystemExit(f"--shipped-time-params: {out} has no time_model.params to keep; use --no-nested")
    if args.shipped_time_params:
        tp = dict(((base or {}).get("time_model") or {}).get("params") or {}) or None
        if tp is None:
            raise SystemExit(f"--shipped-time-params: {out} has no time_model.params to keep")
    fit_model(table, out, seed=args.seed, base_manifest=base, overwrite=True, design=args.design,
              provenance=args.provenance, features=list(SHIPPED_FEATURES), write_table=args.with_table,
              layer_efficiencies=eff, time_params=tp, nested_cv=not args.no_nested)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
