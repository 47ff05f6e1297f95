"""Non-CNN architectures of the data: DeepSpeech2, NCF, BERT-base (transformers, random init, no download) and the
reconstructed Mayaki BERT/GPT configurations.

Entry points: :func:`deepspeech2`, :func:`ncf`, :func:`bert_base`, :func:`mayaki_transformer`,
:func:`mayaki_params`.

Mayaki reconstruction (from ``params`` / ``d_model`` / ``num_layers``; solved exactly, see README): each layer is a
``torch.nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=2048)`` (PyTorch's default FFN width, *not* 4 x
d_model), token embedding ``Embedding(1000, d)``, LM head ``Linear(d, 1000)`` (untied). BERT adds a learned position
embedding ``Embedding(seq, d)``; GPT has none (fixed/sinusoidal) and a causal mask. This reproduces ``params`` exactly
for all GPT rows and BERT rows with seq >= 512; the 75 BERT rows at seq 256 do not fit any structure we found (their
params are 1.3-2.9x larger) -- see ``mayaki_params`` and the README for the error.
"""

from __future__ import annotations

import torch
from torch import nn

MAYAKI_VOCAB = 1000
MAYAKI_FFN = 2048


class DeepSpeech2(nn.Module):
    """deepspeech.pytorch's DeepSpeech2 (Zeus' LibriSpeech workload): 2 conv2d (32 ch) + 5 bi-LSTM(1024) + FC(29).

    As deepspeech.pytorch's ``BatchRNN``: the two directions' outputs are SUMMED (each layer after the first reads
    ``hidden`` features, not ``2 x hidden``), layers 2-5 and the classifier are preceded by a sequence-wise
    BatchNorm1d, and the classifier has no bias. Input: ``(batch, 161, frames)`` spectrogram (161 frequency bins,
    10 ms hop)."""

    def __init__(self, n_freq: int = 161, hidden: int = 1024, layers: int = 5, classes: int = 29):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 32, (41, 11), (2, 2), (20, 5)), nn.BatchNorm2d(32), nn.Hardtanh(0, 20),
                                  nn.Conv2d(32, 32, (21, 11), (2, 1), (10, 5)), nn.BatchNorm2d(32),
                                  nn.Hardtanh(0, 20))
        f = (n_freq + 2 * 20 - 41) // 2 + 1
        f = (f + 2 * 10 - 21) // 2 + 1
        # Bidirectional layers as two one-direction LSTMs (same parameters as nn.LSTM(bidirectional=True)): the
        # exporter's direction-merging Reshape has a dynamic target that ONNX shape inference cannot resolve.
        ins = [32 * f] + [hidden] * (layers - 1)
        self.norms = nn.ModuleList([nn.Identity()] + [nn.BatchNorm1d(hidden) for _ in range(layers - 1)])
        self.fwd = nn.ModuleList(nn.LSTM(i, hidden, batch_first=True) for i in ins)
        self.bwd = nn.ModuleList(nn.LSTM(i, hidden, batch_first=True) for i in ins)
        self.fc_norm = nn.BatchNorm1d(hidden)
        self.fc = nn.Linear(hidden, classes, bias=False)

    def forward(self, x):
        y = self.conv(x.unsqueeze(1))
        n, c, f, t = y.shape
        y = y.reshape(n, c * f, t).transpose(1, 2)
        for norm, fwd, bwd in zip(self.norms, self.fwd, self.bwd):
            y = norm(y.transpose(1, 2)).transpose(1, 2)
            a, _ = fwd(y)
            b, _ = bwd(torch.flip(y, dims=[1]))
            y = a + torch.flip(b, dims=[1])
        return self.fc(self.fc_norm(y.transpose(1, 2)).transpose(1, 2))


class NCF(nn.Module):
    """NeuMF (He et al. 2017) as in the PyTorch NCF reference Zeus uses: GMF + MLP, factor 32, 3 MLP layers.

    Input: ``(batch, 2)`` int64 (user id, item id); MovieLens-1M: 6,040 users, 3,706 items."""

    def __init__(self, users: int = 6040, items: int = 3706, factor: int = 32, layers: int = 3,
                 sizes: tuple[int, ...] = ()):
        super().__init__()
        mlp_dim = sizes[0] // 2 if sizes else factor * 2 ** (layers - 1)
        sizes = sizes or tuple(mlp_dim * 2 // 2**k for k in range(layers + 1))
        self.gmf_u, self.gmf_i = nn.Embedding(users, factor), nn.Embedding(items, factor)
        self.mlp_u, self.mlp_i = nn.Embedding(users, mlp_dim), nn.Embedding(items, mlp_dim)
        mlp, c = [], sizes[0]
        for h in sizes[1:]:
            mlp += [nn.Linear(c, h), nn.ReLU()]
            c = h
        self.mlp = nn.Sequential(*mlp)
        self.out = nn.Linear(factor + c, 1)

    def forward(self, x):
        u, i = x[:, 0], x[:, 1]
        gmf = self.gmf_u(u) * self.gmf_i(i)
        mlp = self.mlp(torch.cat([self.mlp_u(u), self.mlp_i(i)], dim=-1))
        return self.out(torch.cat([gmf, mlp], dim=-1))


class _HFWrap(nn.Module):
    """Take token ids only and return the logits tensor(s) (keeps the exported graph signature simple)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        out = self.model(input_ids=input_ids, return_dict=True)
        return out.start_logits if hasattr(out, "start_logits") and out.start_logits is not None else out.logits


def bert_base(task: str = "qa") -> nn.Module:
    """bert-base-uncased shape (transformers.BertConfig defaults, random init): ``qa`` or ``cls`` (2 labels)."""
    from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

    cfg = BertConfig(attn_implementation="eager")
    model = BertForQuestionAnswering(cfg) if task == "qa" else BertForSequenceClassification(cfg)
    return _HFWrap(model)


BERT_SIZES = {"base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
              "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)}
"""google-research/bert BERT-Base / BERT-Large (uncased, vocab 30,522, 512 positions)."""


class _PretrainWrap(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        out = self.model(input_ids=input_ids, return_dict=True)
        return out.prediction_logits, out.seq_relationship_logits


def bert(size: str = "base", task: str = "qa") -> nn.Module:
    """BERT from :data:`BERT_SIZES` (transformers ``BertConfig``, random init): ``qa`` (SQuAD span head) or
    ``pretrain`` (masked-LM over every position + next-sentence heads, ``BertForPreTraining``)."""
    from transformers import BertConfig, BertForPreTraining, BertForQuestionAnswering

    cfg = BertConfig(attn_implementation="eager", **BERT_SIZES[size])
    if task == "pretrain":
        return _PretrainWrap(BertForPreTraining(cfg))
    return _HFWrap(BertForQuestionAnswering(cfg))


def electra_base_qa() -> nn.Module:
    """ELECTRA-Base discriminator + SQuAD span head (google-research/electra base: embedding 768, hidden 768, 12 layers,
    12 heads, FFN 3072, vocab 30,522) -- DLE TensorFlow2 ELECTRA fine-tuning."""
    from transformers import ElectraConfig, ElectraForQuestionAnswering

    cfg = ElectraConfig(embedding_size=768, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, attn_implementation="eager")
    return _HFWrap(ElectraForQuestionAnswering(cfg))


class _Seq2SeqWrap(nn.Module):
    """Denoising pre-training step: the decoder reads the input shifted right (transformers does this when only
    ``input_ids`` is given); returns the LM logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids, use_cache=False, return_dict=True).logits


def bart_large() -> nn.Module:
    """BART-Large (facebook/bart-large: 12+12 layers, d_model 1024, 16 heads, FFN 4096, vocab 50,265) with its LM head
    -- DLE PyTorch BART pre-training."""
    from transformers import BartConfig, BartForConditionalGeneration

    cfg = BartConfig(vocab_size=50265, d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                     decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096, max_position_embeddings=1024,
                     attn_implementation="eager")
    return _Seq2SeqWrap(BartForConditionalGeneration(cfg))


class VAECF(nn.Module):
    """Mult-VAE (Liang et al. 2018) as in DLE TensorFlow VAE-CF: items -> 600 -> 2 x 200 (mean, log-variance), sample,
    200 -> 600 -> items; MovieLens-20M 20,108 items. One sample = one user's click vector."""

    def __init__(self, items: int = 20108, hidden: int = 600, latent: int = 200):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(items, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, items))
        self.latent = latent

    def forward(self, x):
        h = self.enc(nn.functional.normalize(x, dim=1))
        mu, logvar = h[:, : self.latent], h[:, self.latent:]
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return torch.log_softmax(self.dec(z), dim=1)


def vae_cf() -> nn.Module:
    return VAECF()


class MayakiTransformer(nn.Module):
    """Reconstructed Mayaki BERT (learned positions, bidirectional) or GPT (causal, no learned positions)."""

    def __init__(self, kind: str, layers: int, d_model: int, heads: int, positions: int = 1280):
        super().__init__()
        self.kind = kind
        self.tok = nn.Embedding(MAYAKI_VOCAB, d_model)
        self.pos = nn.Embedding(positions, d_model) if kind == "bert" else None
        self.encoder = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, heads, MAYAKI_FFN, dropout=0.1, batch_first=True) for _ in range(layers))
        self.lm_head = nn.Linear(d_model, MAYAKI_VOCAB)

    def forward(self, input_ids):
        s = input_ids.shape[1]
        h = self.tok(input_ids)
        if self.pos is not None:
            h = h + self.pos.weight[:s].unsqueeze(0)
        mask = None
        if self.kind == "gpt":
            mask = torch.triu(torch.full((s, s), float("-inf")), diagonal=1)
        for layer in self.encoder:
            h = layer(h, src_mask=mask)
        return self.lm_head(h)


def mayaki_params(kind: str, layers: int, d_model: int, seq: int) -> int:
    """Parameter count of the reconstruction (BERT position table sized ``seq``)."""
    d = d_model
    layer = 4 * d * d + 4 * d + 2 * d * MAYAKI_FFN + MAYAKI_FFN + d + 4 * d
    return MAYAKI_VOCAB * d + layers * layer + d * MAYAKI_VOCAB + MAYAKI_VOCAB + (seq * d if kind == "bert" else 0)


def deepspeech2() -> nn.Module:
    return DeepSpeech2()


def ncf_dle(users: int = 138493, items: int = 26744) -> nn.Module:
    """NeuMF as in NVIDIA DLE ``PyTorch/Recommendation/NCF`` (``--factors 64 --layers 256 256 128 64``; MovieLens-20M
    138,493 users x 26,744 items)."""
    return NCF(users, items, factor=64, sizes=(256, 256, 128, 64))


def ncf() -> nn.Module:
    return NCF()


def mayaki_transformer(kind: str, layers: int, d_model: int, heads: int, positions: int = 1280) -> nn.Module:
    return MayakiTransformer(kind, int(layers), int(d_model), int(heads), int(positions))
