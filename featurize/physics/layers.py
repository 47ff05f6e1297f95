"""Per-layer physics prior: each node's training-step time from its op class (NeuSight-style roofline per kernel).

Public entry points:

* :func:`layer_prior` -- a featurized graph's node table on one GPU -> one row per node (plus the optimizer
  update and the per-step overhead): op class, FLOPs and bytes of the training step, compute / memory time,
  wave quantisation, time and power.
* :data:`PRIOR_CLASS` -- featurizer op class -> prior op class; :class:`LayerEfficiencies` -- the per-class
  efficiencies (defaults here; a model may carry learned ones in its spec).

Per node, for one optimizer step of ``batch_size`` samples::

    flops = node flops per sample x batch x (1 + backward/forward FLOPs of the graph)
    bytes = node bytes per sample x batch x (1 + backward/forward FLOPs of the graph)
    t_compute = flops / (rate(class path) x efficiency[class] x wave_efficiency)
    t_memory  = bytes / (bandwidth x MEMORY efficiency[class])
    t_node    = max(t_compute, t_memory) + KERNELS_PER_NODE x LAUNCH_S            (nodes that launch kernels)
    wave_efficiency = tiles / (ceil(tiles / SMs) x SMs),  tiles = ceil(output elements / TILE_ELEMENTS)

``rate(path)`` is :func:`featurize.physics.prior.path_rate` on the path :mod:`featurize.hardware.precision` gives the class
(convolutions on the convolution path, GEMMs -- matmul, attention, recurrent -- on the GEMM path, everything else
on the FP32 vector units). The optimizer update streams ``OPT_BYTES_PER_PARAM`` bytes per trainable parameter;
the step overhead is ``STEP_OVERHEAD_S``. Power per node: ``idle + (cap - idle) x sqrt(busy)`` with busy the
node's non-launch share, as in the whole-graph prior.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from featurize.errors import InvalidInputError

from featurize.layer_profile import (
    PRIOR_CLASSES, LayerEfficiencies, node_classes,
    node_times)


def layer_prior(nodes: pd.DataFrame, gpu: Mapping[str, float], *, batch_size: int, backward_ratio: float,
                trainable_params: float, eval_batch: float = 1.0, power_limit_w: float | None = None,
                efficiencies: LayerEfficiencies | None = None) -> pd.DataFrame:
    """Per-node training-step time and power on one GPU (see the module docstring).

    Args:
        nodes: ``GraphFeatures.nodes`` (``flops``, ``bytes_read``, ``bytes_written``, ``op_class`` at the
            evaluated batch ``eval_batch``: :func:`evaluated_batch`).
        gpu: :func:`featurize.physics.prior.gpu_columns` of the GPU and precision.
        batch_size: samples per optimizer step.
        backward_ratio: the graph's backward / forward FLOPs (0 for a fully frozen graph).
        trainable_params: parameters the optimizer updates.
        power_limit_w: enforced power limit (None = TDP).
        efficiencies: per-class efficiencies (None = :class:`LayerEfficiencies` defaults).

    Returns:
        DataFrame: ``node, module, op_type, op_class, flops, bytes, t_compute_s, t_memory_s, wave_efficiency,
        time_s, power_w, energy_j, bound`` per optimizer step; the last two rows are ``optimizer update`` and
        ``step overhead``.
    """
    from featurize.physics.prior import KERNELS_PER_NODE, LAUNCH_S, OPT_BYTES_PER_PARAM, STEP_OVERHEAD_S

    if batch_size < 1:
        raise InvalidInputError(f"batch_size={batch_size!r} must be >= 1")
    eff = efficiencies or LayerEfficiencies()
    cls = node_classes(nodes)
    keep = cls != ""
    n, cls = nodes[keep], cls[keep]
    code = np.array([PRIOR_CLASSES.index(c) for c in cls], np.int8)
    scale = batch_size / max(eval_batch, 1.0) * (1.0 + max(backward_ratio, 0.0))
    nbytes = n["bytes_read"].to_numpy(float) + n["bytes_written"].to_numpy(float)
    t_c, t_m, waves = node_times(code, n["flops"].to_numpy(float), nbytes, n["bytes_written"].to_numpy(float), gpu,
                                 batch_size=batch_size, eval_batch=eval_batch, backward_ratio=backward_ratio,
                                 efficiencies=eff)
    bw = float(gpu["mem_bw_bytes_per_s"])
    launch = KERNELS_PER_NODE * LAUNCH_S
    opt_bytes = OPT_BYTES_PER_PARAM * max(trainable_params, 0.0)
    t_opt = opt_bytes / (bw * eff.memory.get("optimizer", 0.8))
    frame = pd.DataFrame({
        "node": [*n["name"].astype(str), "optimizer update", "step overhead"],
        "module": [*(n["module"].astype(str) if "module" in n else [""] * len(n)), "", ""],
        "op_type": [*n["op_type"].astype(str), "Adam", ""],
        "op_class": [*cls, "optimizer", "overhead"],
        "flops": [*(n["flops"].to_numpy(float) * scale), 0.0, 0.0],
        "bytes": [*(nbytes * scale), opt_bytes, 0.0],
        "t_compute_s": [*t_c, 0.0, 0.0],
        "t_memory_s": [*t_m, t_opt, 0.0],
        "wave_efficiency": [*waves, 1.0, 1.0],
    })
    busy = np.maximum(frame["t_compute_s"], frame["t_memory_s"]).to_numpy()
    overhead = np.r_[np.full(len(n), launch), launch if trainable_params > 0 else 0.0, STEP_OVERHEAD_S]
    frame["time_s"] = busy + overhead
    frame["bound"] = np.where(busy <= overhead, "overhead",
                              np.where(frame["t_compute_s"] >= frame["t_memory_s"], "compute", "memory"))
    tdp = float(gpu["tdp_w"])
    cap = min(power_limit_w, 1.5 * tdp) if power_limit_w and power_limit_w > 0 else tdp
    idle = min(float(gpu["idle_power_w"]), cap)
    frame["power_w"] = idle + (cap - idle) * np.sqrt(busy / frame["time_s"].to_numpy())
    frame["energy_j"] = frame["power_w"] * frame["time_s"]
    return frame
