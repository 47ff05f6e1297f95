"""RNN-T (MLPerf Training speech recognition, v1.0-v3.1) as our own PyTorch definition.

Entry point: :func:`rnnt`. Reference (``../shared/docs/ZOO_REFERENCES.md`` section 3; mlcommons/training
``rnn_speech_recognition/pytorch/configs/baseline_v3-1023sp.yaml``): 80 log-mel features, frame stacking 3 + subsampling
3 (240 features per 30 ms step), encoder pre-RNN 2 x LSTM(1024), time stacking x2 (2048 features), post-RNN 3 x
LSTM(1024); prediction network Embedding(1023, 512; the 1023 SentencePiece units, the
start step reads zeros) + 2 x LSTM(512); joint network
Linear(1024 -> 512) on the encoder, Linear(512 -> 512) on the prediction, sum over every (time, label) pair, ReLU,
Linear(512 -> 1024). 49,006,080 parameters (computed in ZOO_REFERENCES; no published count).

One sample = one LibriSpeech utterance of the stated mean size (the lengths vary and are not logged per run):
12.3 s of audio (LibriSpeech train-960: 960.9 h over 281,241 utterances, Panayotov et al. 2015) = 1,230 frames of 10 ms
-> :data:`ENC_STEPS_IN` = 410 stacked steps -> 205 encoder steps; :data:`LABELS` = 43 SentencePiece units (estimated:
~33 words at ~2.7 words/s, ~1.3 units per word; unverified) + the start blank. The joint network's (205 x 44) grid
is computed densely, as the reference does. The graph takes one flat input ``features (410*240) | labels (43)``.
"""

from __future__ import annotations

import torch
from torch import nn

ENC_STEPS_IN, FEATURES, LABELS, VOCAB = 410, 240, 43, 1024
FLAT = ENC_STEPS_IN * FEATURES + LABELS


def _lstms(n_in: int, hidden: int, layers: int) -> nn.ModuleList:
    """Stacked one-layer LSTMs (the parameters of ``nn.LSTM(num_layers=layers)``; the exporter leaves the inner
    layers of a multi-layer LSTM without shapes)."""
    return nn.ModuleList(nn.LSTM(n_in if i == 0 else hidden, hidden, batch_first=True) for i in range(layers))


def _run(stack: nn.ModuleList, x):
    for lstm in stack:
        x, _ = lstm(x)
    return x


class RNNT(nn.Module):
    def __init__(self, hidden: int = 1024, pred: int = 512, joint: int = 512, vocab: int = VOCAB):
        super().__init__()
        self.pre, self.post = _lstms(FEATURES, hidden, 2), _lstms(2 * hidden, hidden, 3)
        self.embed = nn.Embedding(vocab - 1, pred)  # the blank has no row: the start step reads zeros
        self.pred = _lstms(pred, pred, 2)
        self.joint_enc, self.joint_pred = nn.Linear(hidden, joint), nn.Linear(pred, joint)
        self.joint_out = nn.Linear(joint, vocab)

    def forward(self, flat):
        n = flat.shape[0]
        x = flat[:, : ENC_STEPS_IN * FEATURES].reshape(n, ENC_STEPS_IN, FEATURES)
        labels = flat[:, ENC_STEPS_IN * FEATURES:].to(torch.long)
        enc = _run(self.pre, x).reshape(n, ENC_STEPS_IN // 2, -1)  # StackTime(2): two steps side by side
        enc = _run(self.post, enc)
        emb = self.embed(labels)
        g = _run(self.pred, torch.cat([torch.zeros_like(emb[:, :1]), emb], dim=1))
        joint = self.joint_enc(enc)[:, :, None, :] + self.joint_pred(g)[:, None, :, :]
        return self.joint_out(torch.relu(joint))


def rnnt() -> nn.Module:
    return RNNT()
