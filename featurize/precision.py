"""Precision as training frameworks run it: which arithmetic path each op class takes on a GPU.

Public entry points:

* :data:`PRECISION_SEMANTICS` -- what each precision name means (saved in the model's spec, checked at load).
* :func:`supported_precisions` -- the precisions a GPU can run, in :data:`featurize.types.PRECISIONS` order.
* :func:`precision_paths` -- (requested precision, GPU) -> :class:`PrecisionPaths`: the path GEMMs (matmul,
  attention, recurrent) and convolutions take, or :class:`~featurize.errors.UnsupportedPrecisionError`.
* :func:`peak_flops` -- (GPU, precision, op class) -> the datasheet peak FLOP/s of the path that op class takes.
  The ONLY place that maps a precision to a peak rate: the prior (:func:`featurize.physics.gpu_columns`), the
  per-layer prior and the training table's physical check (``training_data.build_table``) all call it.

A GPU *can run* a precision when it has its own path for it that is faster than its FP32 cores:

* ``fp32`` always; ``tf32`` with TF32 tensor cores (Ampere and later, CDNA3);
* ``fp16`` where the table's FP16 rate (tensor cores with FP32 accumulate, or packed half2 on P100 / GTX 1660)
  beats FP32 -- not on GP102/GP104/GM107 (GTX 1080 Ti, P40, GTX 750 Ti: native FP16 at 1/64 rate);
* ``bf16`` with BF16 tensor cores (Ampere and later, CDNA2/3) -- not V100, T4 or Turing;
* ``fp8`` with FP8 tensor cores (Ada, Hopper, Blackwell, CDNA3) -- not A100.

With ``fallback=True`` an unsupported precision runs as the framework would fall back (stated in ``note``):
tf32 / bf16 / fp16 as FP32 arithmetic (no-op TF32 flag; emulated BF16; FP16 GEMMs computed in FP32 on
Pascal), keeping the requested storage size; fp8 as the best 16-bit path the GPU has.
"""

from __future__ import annotations

from dataclasses import dataclass

from featurize.errors import InvalidInputError, UnsupportedPrecisionError
from featurize.types import PRECISIONS, GPUSpec

PRECISION_SEMANTICS: dict[str, str] = {
    "fp32": "PyTorch defaults: matmuls in FP32 on CUDA cores; convolutions take TF32 tensor cores where the "
            "GPU has them and they are faster (cuDNN allow_tf32 defaults to True)",
    "tf32": "TF32 everywhere (torch.backends.cuda.matmul.allow_tf32=True, NGC containers)",
    "fp16": "automatic mixed precision: FP16 GEMMs/convolutions with FP32 accumulate, FP32 master weights "
            "and optimizer state",
    "bf16": "automatic mixed precision: BF16 GEMMs/convolutions with FP32 accumulate, FP32 master weights "
            "and optimizer state",
    "fp8": "FP8 GEMMs (Transformer Engine style) where the hardware has FP8 tensor cores, FP32 master weights",
}
"""What each precision name means; part of the model's saved prior (a change is a model incompatibility)."""

_TENSOR_FIELD = {"tf32": "peak_tf32_tensor_flops", "fp16": "peak_fp16_tensor_flops",
                 "bf16": "peak_bf16_tensor_flops", "fp8": "peak_fp8_tensor_flops"}


@dataclass(frozen=True)
class PrecisionPaths:
    """The arithmetic path of each op class: ``"fp32"`` (CUDA cores) or a reduced-precision path name."""

    requested: str
    gemm: str
    """Path of matmul / attention / recurrent GEMMs (and everything that is not a convolution)."""
    conv: str
    """Path of convolutions."""
    note: str = ""
    """Set when an unsupported precision ran on its fallback (``fallback=True``)."""

    @property
    def key(self) -> str:
        """One name for the configuration the prior prices (the seen-configuration stage's pair key)."""
        return self.gemm if self.gemm == self.conv else f"{self.gemm}+{self.conv}conv"


def path_peak(gpu: GPUSpec, path: str) -> float | None:
    """Peak FLOP/s of ``path`` on ``gpu`` (None when the GPU has no such path)."""
    if path == "fp32":
        return float(gpu.peak_fp32_flops)
    value = getattr(gpu, _TENSOR_FIELD[path])
    return float(value) if value else None


OP_CLASSES: tuple[str, ...] = ("gemm", "conv", "vector")
"""Op classes a precision routes: GEMMs (matmul, attention, recurrent), convolutions, and everything else (the
FP32 vector units: elementwise, normalisation, reductions -- frameworks keep them in FP32 or run them at the FP32
rate)."""


def peak_flops(gpu: GPUSpec, precision: str, op_class: str = "gemm", *, fallback: bool = False) -> float:
    """Datasheet peak FLOP/s of the path ``op_class`` takes when a framework trains at ``precision`` on ``gpu``
    (:func:`precision_paths`; no sustained-clock factor).

    Raises:
        InvalidInputError: unknown precision or op class.
        UnsupportedPrecisionError: the GPU cannot run ``precision`` and ``fallback`` is False.
    """
    if op_class not in OP_CLASSES:
        raise InvalidInputError(f"op_class={op_class!r} is not one of {', '.join(OP_CLASSES)}.")
    paths = precision_paths(gpu, precision, fallback=fallback)
    path = {"gemm": paths.gemm, "conv": paths.conv, "vector": "fp32"}[op_class]
    peak = path_peak(gpu, path)
    if not peak or peak <= 0:  # pragma: no cover - precision_paths only returns paths the GPU has
        raise InvalidInputError(f"GPU {gpu.name} has no peak FLOP/s for the {path} path; use fp32.")
    return float(peak)


def can_run(gpu: GPUSpec, precision: str) -> bool:
    """Whether ``gpu`` has its own path for ``precision`` (see the module docstring)."""
    if precision == "fp32":
        return True
    peak = path_peak(gpu, precision)
    if precision == "fp16":  # a "path" no faster than FP32 is FP16 at 1/64 rate emulated at FP32 speed at best
        return peak is not None and peak > gpu.peak_fp32_flops
    return peak is not None


def supported_precisions(gpu: GPUSpec) -> tuple[str, ...]:
    """The precisions ``gpu`` can run, in :data:`PRECISIONS` order."""
    return tuple(p for p in PRECISIONS if can_run(gpu, p))


def _fallback(gpu: GPUSpec, precision: str) -> str:
    if precision == "fp8":
        return next((p for p in ("bf16", "fp16") if can_run(gpu, p)), "fp32")
    return "fp32"


def precision_paths(gpu: GPUSpec, precision: str, *, fallback: bool = False) -> PrecisionPaths:
    """The arithmetic paths of ``precision`` on ``gpu``.

    Args:
        gpu: the GPU.
        precision: one of :data:`PRECISIONS`.
        fallback: run an unsupported precision as the framework falls back (with a note) instead of raising.

    Raises:
        InvalidInputError: unknown precision name.
        UnsupportedPrecisionError: the GPU cannot run ``precision`` and ``fallback`` is False.
    """
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}.")
    if precision == "fp32":
        tf32 = path_peak(gpu, "tf32")
        # cuDNN takes TF32 for convolutions where the GPU has TF32 tensor cores above its FP32 rate (not
        # GeForce Ampere/Ada, whose dense TF32-with-FP32-accumulate rate equals FP32)
        return PrecisionPaths("fp32", "fp32", "tf32" if tf32 and tf32 > gpu.peak_fp32_flops else "fp32")
    if can_run(gpu, precision):
        return PrecisionPaths(precision, precision, precision)
    ok = supported_precisions(gpu)
    if not fallback:
        raise UnsupportedPrecisionError(
            f"{gpu.name} cannot run precision {precision!r} (no {precision} arithmetic path faster than FP32); "
            f"it runs: {', '.join(ok)}. Pick one of those, or pass precision_fallback=True "
            f"(CLI: --precision-fallback) to predict what a framework does instead "
            f"({precision} as {_fallback(gpu, precision)}).")
    path = _fallback(gpu, precision)
    note = (f"{gpu.name} cannot run {precision} (it runs {', '.join(ok)}); predicted as a framework falls back: "
            f"{precision} arithmetic on the {path} path" + (", storage kept at the requested size" if path == "fp32"
                                                             else "") + ".")
    return PrecisionPaths(precision, path, path, note)
