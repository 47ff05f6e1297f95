"""Write ``resnet18.onnx``: a weightless ResNet-18 (ImageNet head, 3x224x224, symbolic batch ``batch``).

Self-written torch module (no torchvision), exported **in training mode** (``model.train()``) with the dynamo
exporter and without its graph optimizer (``optimize=False``): the optimizer folds BatchNormalization into the
convolutions even for a module in training mode, which drops the BatchNorm layers, their parameters and the
activations they save for backward from the graph -- a training run would be under-counted. Opset 18, weights as
external data; the external ``.data`` file is then deleted and the exporter's per-node stack traces dropped, so the
shipped file holds the graph and the weight *shapes* only -- all joulecast needs (``export_params=False`` would
leave the weight names dangling, without shapes).
Run: ``python models/examples/make_resnet18.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def main(out: Path = Path(__file__).with_name("resnet18.onnx")) -> Path:
    torch.manual_seed(0)
    model = ResNet18().train()
    x = torch.randn(2, 3, 224, 224)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(model, (x,), input_names=["x"], output_names=["logits"], opset_version=18,
                                dynamo=True, optimize=False, dynamic_shapes={"x": {0: batch}})
    for node in program.model.graph:  # the exporter's stack traces: most of the file, nothing joulecast reads
        node.metadata_props.clear()
    program.save(str(out), external_data=True)
    data = out.with_name(out.name + ".data")
    data.unlink(missing_ok=True)  # weightless: keep only the graph and the initializer shapes
    return out


if __name__ == "__main__":
    print(main())
