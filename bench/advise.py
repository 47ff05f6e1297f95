"""Latency of ``advise`` on the two jobs of issue 34 (goal: <= 10 s each on 2 cores).

Run: ``python bench/advise.py``. Both models are built from ``transformers`` configs on the meta device (no weights):

* BERT-base (``BertForMaskedLM``, sequence 128), 100,000 samples x 3 epochs;
* a 1.1B Llama-style decoder (hidden 2048, 16 layers, 32 heads / 8 KV heads, MLP 8192, vocab 32,000, sequence 2048)
  with ``tokens=2e9``.

For each it prints: the export of the module to ONNX (once per input shape, cached by the featurizer), ``advise`` on
the exported ``ModelProto`` (what a user with a ``.onnx`` file pays), ``advise`` on the module with the export
cached (a second call), and the option count, the (batch, precision) featurizations and the top options.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _models():
    import torch
    from transformers import BertConfig, BertForMaskedLM, LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        bert = BertForMaskedLM(BertConfig())
        llama = LlamaForCausalLM(LlamaConfig(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                                             num_key_value_heads=8, intermediate_size=8192, vocab_size=32000))
    ids = lambda n: {"input_ids": torch.ones(1, n, dtype=torch.long)}  # noqa: E731
    return [("BERT-base, 100k samples x 3 epochs", bert, ids(128), dict(samples_per_epoch=100_000, epochs=3)),
            ("Llama-style 1.1B, tokens=2e9", llama, ids(2048), dict(tokens=2e9))]


def main() -> int:
    warnings.simplefilter("ignore")
    import predictor.advise_options as opts
    from featurize.torch_export import export_module
    from predictor import advise

    calls = []
    real = opts._featurize
    opts._featurize = lambda *a, **k: (calls.append(a[1:3]), real(*a, **k))[1]
    advise("models/examples/resnet18.onnx", samples_per_epoch=10, gpus=["L4"], batch_sizes=[8])  # imports, model load
    for label, module, inputs, job in _models():
        t = time.perf_counter()
        proto = export_module(module, inputs)
        export_s = time.perf_counter() - t
        calls.clear()
        t = time.perf_counter()
        df = advise(proto, **job)
        onnx_s = time.perf_counter() - t
        n_calls = len(calls)
        t = time.perf_counter()
        advise(module, example_inputs=inputs, **job)
        module_s = time.perf_counter() - t
        print(f"{label}: export {export_s:.1f} s (once per input shape); advise on the exported graph "
              f"{onnx_s:.2f} s, on the module (export cached) {module_s:.2f} s  (goal <= 10 s)")
        print(f"  {len(df)} options, {len(df.attrs['dropped'])} dropped, {n_calls} featurizations (one per "
              "batch x element size, a batch-1 probe included)")
        for _, r in df.head(3).iterrows():
            print(f"  #{r['rank']} {r['gpu']} x{r['n_gpus']} {r['precision']} batch {r['batch_size']}: "
                  f"${r['cost_usd']:,.2f} [{r['cost_low_usd']:,.2f}-{r['cost_high_usd']:,.2f}], "
                  f"{r['time_s'] / 3600:,.2f} h, {r['energy_j'] / 3.6e6:,.2f} kWh ({r['cloud']} {r['instance_type']})")
        if df.attrs["tie"]:
            print(f"  {df.attrs['tie']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
