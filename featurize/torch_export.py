"""Export a ``torch.nn.Module`` to ONNX so one set of op handlers serves torch and ONNX inputs.

Public entry point: :func:`export_module` (module + example inputs -> ``onnx.ModelProto``). Uses the
dynamo exporter (``torch.onnx.export(..., dynamo=True)``) at :data:`EXPORT_OPSET`, in eval mode,
without the exporter's graph optimizer so initializer names stay the module's parameter names
(``frozen=`` prefixes match them). torch is imported lazily (extra ``joulecast[torch]``).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import onnx

from featurize.errors import GraphLoadError, InvalidInputError, require

__all__ = ["export_module", "EXPORT_OPSET"]

EXPORT_OPSET = 18


def export_module(module: Any, example_inputs: Any) -> onnx.ModelProto:
    """Trace ``module`` on ``example_inputs`` (a tensor or tuple of tensors) into an ONNX ModelProto."""
    torch = require("torch", extra="torch", purpose="featurizing a torch.nn.Module")
    require("onnxscript", extra="torch", purpose="exporting a torch.nn.Module to ONNX")
    if example_inputs is None:
        raise InvalidInputError(
            "a torch.nn.Module needs example_inputs= (a tensor or tuple of tensors shaped like one batch), "
            "e.g. featurize(model, example_inputs=torch.randn(1, 3, 224, 224))."
        )
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                opset_version=EXPORT_OPSET,
                external_data=False,
                optimize=False,
                verbose=False,
            )
    except Exception as err:  # noqa: BLE001 - exporter errors are many and varied
        raise GraphLoadError(
            f"torch.onnx export of {type(module).__name__} failed: {type(err).__name__}: {err}. "
            "Check example_inputs match forward(), or export to .onnx yourself and pass the file."
        ) from err
    finally:
        module.train(was_training)
    return program.model_proto
