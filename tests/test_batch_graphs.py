"""Small weightless graphs for the batch/retrain/CLI tests (built with onnx.helper, no torch export).

``bench_graphs()`` loads ``bench/score.py`` (ResNet/MLP/BERT-style generators); the tests here pin their
parameter counts against hand-derived figures so the benchmark's "ResNet-50 scale" claim is checked.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import onnx

REPO = Path(__file__).resolve().parents[1]


def bench_graphs():
    """The generator module ``bench/score.py`` (loaded by path: bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("joulecast_bench_score", REPO / "bench" / "score.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_variants(out_dir: Path, n: int, *, seed: int = 0, prefix: str = "g") -> list[Path]:
    """``n`` distinct small CNN/MLP graphs (alternating), written as .onnx; returns their paths in order."""
    gen = bench_graphs()
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        name = f"{prefix}{i:03d}"
        if i % 2 == 0:
            model = gen.resnet_like(
                name,
                width=rng.choice([0.125, 0.25, 0.375]),
                depths=tuple(rng.randint(1, 2) for _ in range(rng.randint(2, 4))),
                image=rng.choice([32, 48, 64]),
                classes=rng.choice([10, 100]),
            )
        else:
            k = rng.randint(1, 3)
            model = gen.mlp(
                name,
                widths=(
                    rng.choice([256, 784, 1024]),
                    *[rng.choice([128, 256, 512, 1024]) for _ in range(k)],
                    10,
                ),
            )
        path = out_dir / f"{name}.onnx"
        onnx.save(model, path)
        paths.append(path)
    return paths


def test_resnet50_generator_matches_torchvision_parameter_count():
    from featurize import featurize

    feats = featurize(bench_graphs().resnet_like("r50"), batch_size=8)
    assert feats.params == 25_557_032  # torchvision resnet50 trainable parameters
    assert 4.0e9 < feats.macs_forward < 4.2e9  # ~4.1 GMACs at 224 px


def test_mlp_and_bert_generators_exact_params():
    from featurize import featurize

    gen = bench_graphs()
    assert (
        featurize(gen.mlp("m", widths=(784, 256, 10)), batch_size=4).params == 784 * 256 + 256 + 256 * 10 + 10
    )
    # BERT-base encoder: 12 x 7,087,872 = 4 x 768^2 + 2 x 768 x 3072 matrices, 6,912 biases and 3,072 LayerNorm
    # weights per layer. The generator passes every weight as a graph input (an export without parameters): a
    # matrix or LayerNorm weight is recognised by its slot, but a bias added with Add (and the attention scale fed
    # to Mul) cannot be told from a data input, so exactly the 12 x 6,912 biases are not counted.
    full = 12 * 7_087_872
    assert featurize(gen.bert_like("b"), batch_size=2).params == full - 12 * 6_912


def test_write_variants_is_deterministic(tmp_path):
    a = [p.read_bytes() for p in write_variants(tmp_path / "a", 6, seed=3)]
    b = [p.read_bytes() for p in write_variants(tmp_path / "b", 6, seed=3)]
    assert a == b and len(set(a)) == 6
