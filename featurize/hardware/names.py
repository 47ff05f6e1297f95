"""GPU names: the normalised comparison key, the brand words it drops, and the rules every part of the hardware
layer shares (tensor-peak fields, the idle-power rule and :func:`idle_power_w`, the ambiguity warning).

Normalisation (:func:`normalize_gpu_name`): lower case; vendor/brand words (NVIDIA, GeForce, Tesla, Quadro,
AMD, Instinct, Radeon) and filler ("Generation", "Graphics") dropped; letters and digits split apart; the
remaining tokens compared as a sorted multiset, so word order and spaces/hyphens/underscores do not matter
("A100 80GB PCIe" == "A100-PCIE-80GB").
"""

from __future__ import annotations

import re
from typing import Any

IDLE_POWER_FRACTION_OF_TDP = 0.10
"""Rule for ``idle_power_w`` where no measured NVML idle figure is known (see data/GPUS.md)."""

DROP_WORDS = frozenset(
    {"nvidia", "geforce", "tesla", "quadro", "amd", "instinct", "radeon", "generation", "graphics", "gpu"}
)
"""Vendor/brand words and filler that never tell two GPUs apart."""
TENSOR_FIELDS = ("peak_tf32_tensor_flops", "peak_fp16_tensor_flops", "peak_bf16_tensor_flops", "peak_fp8_tensor_flops")


def idle_power_w(gpu: Any) -> float:
    """The GPU's idle power, W: its table value, else :data:`IDLE_POWER_FRACTION_OF_TDP` x TDP."""
    return float(gpu.idle_power_w) if gpu.idle_power_w else IDLE_POWER_FRACTION_OF_TDP * float(gpu.tdp_w)


class AmbiguousGPUWarning(UserWarning):
    """An ambiguous GPU name ("A100") was resolved to its stated default variant."""


def normalize_gpu_name(name: str) -> str:
    """Canonical comparison key of a GPU name: sorted tokens joined by spaces (see module docstring)."""
    text = name.lower().replace("ada lovelace", "ada")
    text = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", text)
    tokens = [t for t in re.split(r"[^a-z0-9.]+|(?<!\d)\.|\.(?!\d)", text) if t and t not in DROP_WORDS]
    return " ".join(sorted("gb" if t == "gib" else t for t in tokens))


def display_key(name: str) -> str:
    """Human-ordered lower-case form used for difflib suggestions."""
    return re.sub(r"[\s_\-]+", " ", name.lower()).strip()


def fold_letter_o(text: str) -> str:
    """The letter o next to a digit read as a zero ("a1oo" -> "a100"), the commonest typo in GPU names."""
    prev = None
    while prev != text:
        prev, text = text, re.sub(r"(?<=\d)o|o(?=\d)", "0", text)
    return text
