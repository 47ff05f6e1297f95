"""Precision as training frameworks run it: which arithmetic path each op class takes on a GPU.

Public entry points:

* :data:`PRECISION_SEMANTICS` -- what each precision name means (saved in the model's spec, checked at load).
* :func:`supported_precisions` -- the precisions frameworks run on a GPU, in :data:`featurize.types.PRECISIONS` order.
* :func:`precision_paths` -- (requested precision, GPU) -> :class:`PrecisionPaths`: the path GEMMs (matmul,
  attention, recurrent) and convolutions take, or :class:`~featurize.errors.UnsupportedPrecisionError`.
* :func:`peak_flops` -- (GPU, precision, op class) -> the datasheet peak FLOP/s of the path that op class takes.
  The ONLY place that maps a precision to a peak rate: the prior (:func:`featurize.physics.prior.gpu_columns`), the
  per-layer prior and the training table's physical check (``training_data.build_table``) all call it.

Only what the framework itself refuses is refused: ``fp8`` without FP8 tensor cores (Transformer Engine raises).
PyTorch runs every other precision on every GPU; where the GPU has no path of its own that is faster than its
FP32 cores, it is priced as it runs there, FP32-rate arithmetic with the requested storage size, and ``note``
says so:

* ``tf32`` without TF32 tensor cores (Volta, Turing): the switch is a no-op;
* ``fp16`` where the FP16 rate (tensor cores with FP32 accumulate, or packed half2 on P100 / GTX 1660) does not
  beat FP32 -- GP102/GP104/GM107 (GTX 1080 Ti, P40, GTX 750 Ti: native FP16 at 1/64 rate): AMP runs with FP16
  storage and FP32-rate arithmetic (the public Lambda benchmark measured it on a GTX 1080 Ti);
* ``bf16`` without BF16 tensor cores (V100, T4, Turing): ``torch.cuda.is_bf16_supported()`` counts emulation, so
  AMP runs it with BF16 storage and FP32 arithmetic.

A GPU *has a path* for a precision (:func:`has_path`) when that path is its own and faster than FP32. With
``fallback=True`` a refused precision (fp8) is priced as the nearest precision the framework would pick instead:
the best 16-bit path the GPU has (bf16, else fp16, else fp32), stated in ``note``.

``fp8`` where the GPU has FP8 tensor cores runs only the GEMMs in FP8 (Transformer Engine): convolutions take the
best 16-bit path (bf16, else fp16), element-wise ops the FP32 vector units, activations are stored in BF16.
"""

from __future__ import annotations

from dataclasses import dataclass

from featurize.errors import UnsupportedPrecisionError
from featurize.types import PRECISIONS, GPUSpec, check_precision

PRECISION_SEMANTICS: dict[str, str] = {
    "fp32": "PyTorch defaults: matmuls in FP32 on CUDA cores; convolutions take TF32 tensor cores where the "
            "GPU has them and they are faster (cuDNN allow_tf32 defaults to True)",
    "tf32": "TF32 everywhere (torch.backends.cuda.matmul.allow_tf32=True, NGC containers)",
    "fp16": "automatic mixed precision: FP16 GEMMs/convolutions with FP32 accumulate, FP32 master weights "
            "and optimizer state",
    "bf16": "automatic mixed precision: BF16 GEMMs/convolutions with FP32 accumulate, FP32 master weights "
            "and optimizer state",
    "fp8": "FP8 GEMMs only (matmul, attention, linear; Transformer Engine) where the hardware has FP8 tensor "
           "cores; convolutions, element-wise ops and stored activations in BF16 (FP16 where the GPU has no "
           "BF16), FP32 master weights",
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


def has_path(gpu: GPUSpec, precision: str) -> bool:
    """Whether ``gpu`` has its own path for ``precision``, faster than its FP32 cores for fp16 (module docstring)."""
    if precision == "fp32":
        return True
    peak = path_peak(gpu, precision)
    if precision == "fp16":  # a "path" no faster than FP32 is FP16 at 1/64 rate emulated at FP32 speed at best
        return peak is not None and peak > gpu.peak_fp32_flops
    return peak is not None


def framework_runs(gpu: GPUSpec, precision: str) -> bool:
    """Whether frameworks run ``precision`` on ``gpu`` at all: everything but fp8 without FP8 tensor cores."""
    return precision != "fp8" or has_path(gpu, "fp8")


def supported_precisions(gpu: GPUSpec) -> tuple[str, ...]:
    """The precisions frameworks run on ``gpu``, in :data:`PRECISIONS` order."""
    return tuple(p for p in PRECISIONS if framework_runs(gpu, p))


def _fallback(gpu: GPUSpec, precision: str) -> str:
    """The nearest precision a framework would pick for a refused one: the best 16-bit path the GPU has."""
    return next((p for p in ("bf16", "fp16") if has_path(gpu, p)), "fp32")


_NO_PATH_NOTE = {
    "tf32": "it has no TF32 tensor cores, so the TF32 switch is a no-op: FP32 arithmetic",
    "fp16": "it has no FP16 path faster than its FP32 cores: PyTorch AMP runs there with FP16 storage (half the "
            "memory traffic) and FP32-rate arithmetic, as the public Lambda benchmark measured on a GTX 1080 Ti",
    "bf16": "it has no BF16 tensor cores: PyTorch AMP emulates bf16 (BF16 storage, FP32 arithmetic)",
}


def precision_paths(gpu: GPUSpec, precision: str, *, fallback: bool = False) -> PrecisionPaths:
    """The arithmetic paths of ``precision`` on ``gpu``.

    Args:
        gpu: the GPU.
        precision: one of :data:`PRECISIONS`.
        fallback: price a precision the framework refuses (fp8 without FP8 tensor cores) as the nearest one it
            would pick instead (with a note) rather than raising.

    Raises:
        InvalidInputError: unknown precision name.
        UnsupportedPrecisionError: the framework refuses ``precision`` on ``gpu`` and ``fallback`` is False.
    """
    check_precision(precision)
    if precision == "fp32":
        tf32 = path_peak(gpu, "tf32")
        # cuDNN takes TF32 for convolutions where the GPU has TF32 tensor cores above its FP32 rate (not
        # GeForce Ampere/Ada, whose dense TF32-with-FP32-accumulate rate equals FP32); ROCm's MIOpen does not
        cudnn_tf32 = gpu.vendor == "NVIDIA" and tf32 and tf32 > gpu.peak_fp32_flops
        return PrecisionPaths("fp32", "fp32", "tf32" if cudnn_tf32 else "fp32")
    if precision == "fp8" and has_path(gpu, precision):  # Transformer Engine: FP8 for GEMMs, not convolutions
        return PrecisionPaths("fp8", "fp8", _fallback(gpu, "fp8"))
    if has_path(gpu, precision):
        return PrecisionPaths(precision, precision, precision)
    faster = [p for p in PRECISIONS if p != "fp32" and has_path(gpu, p)]
    if framework_runs(gpu, precision):
        hint = f"; for a speed-up use {' or '.join(faster)}" if faster else ""
        return PrecisionPaths(precision, "fp32", "fp32",
                              f"{precision} on {gpu.name} priced as it runs there: {_NO_PATH_NOTE[precision]}{hint}.")
    path = _fallback(gpu, precision)
    if not fallback:
        raise UnsupportedPrecisionError(
            f"{gpu.name} cannot run precision {precision!r}: it has no {precision} tensor cores and frameworks "
            f"refuse it; it runs: {', '.join(supported_precisions(gpu))}. Pick one of those, or pass "
            f"precision_fallback=True (CLI: --precision-fallback) to price the nearest precision a framework "
            f"would pick ({path}).")
    note = (f"{gpu.name} cannot run {precision} (no {precision} tensor cores); priced as the nearest precision a "
            f"framework would pick: {path} arithmetic (storage at the requested {precision} size).")
    return PrecisionPaths(precision, path, path, note)
