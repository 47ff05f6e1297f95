"""The fixed CI subset of the training table: every source, the cheapest graphs, built in about a minute.

Entry point: :func:`ci_subset` ``(runs) -> runs`` (pass as ``build_table(..., subset=ci_subset)``; the test suite's
``built_table`` fixture does, into a temporary folder). The rules, per source (:data:`CI_RULES`):

* seaa2023 and delrey: MobileNetV2 (alpha 0.5) at 128 px -- both phases, so frozen-backbone rows are present;
* zeus: NCF (MovieLens-1M) and ShuffleNetV2 (CIFAR-100); mayaki: the 4-layer, d_model 128 BERT and GPT configurations;
* lambda_dlbench, nvidia_dle: NCF (MovieLens-20M); mlperf_training: ResNet-50 v1.5 on H100 SXM5 and L40S.

Six small exports (MobileNetV2, NCF x 2, ShuffleNetV2, two 4-layer Mayaki transformers) and one ResNet-50.
"""

from __future__ import annotations

import pandas as pd

CI_RULES: dict[str, dict[str, tuple[str, ...]]] = {
    "seaa2023": {"architecture": ("mobilenet_v2",)},
    "delrey": {"architecture": ("mobilenet_v2",), "input_shape": ("3x128x128",)},
    "zeus": {"architecture": ("ncf", "shufflenet_v2")},
    "mayaki": {"model": ("zoo:mayaki_bert?layers=4&d_model=128&heads=4", "zoo:mayaki_gpt?layers=4&d_model=128&heads=4")},
    "lambda_dlbench": {"architecture": ("ncf",)},
    "nvidia_dle": {"architecture": ("ncf",)},
    "mlperf_training": {"architecture": ("resnet50_v15",), "gpu": ("H100-SXM5-80GB", "L40S")},
}


def ci_subset(runs: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``runs`` matching :data:`CI_RULES` (every column condition of their source)."""
    keep = pd.Series(False, index=runs.index)
    for source, rules in CI_RULES.items():
        m = runs["source"] == source
        for column, values in rules.items():
            m &= runs[column].isin(values)
        keep |= m
    return runs[keep]
