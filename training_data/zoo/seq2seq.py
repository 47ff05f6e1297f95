"""Recurrent sequence-to-sequence models behind the throughput sources (NVIDIA DeepLearningExamples, PyTorch).

Entry points:

* :func:`gnmt_v2` -- ``PyTorch/Translation/GNMT`` (seq2seq/models/gnmt.py): shared 32,320 x 1024 embedding; encoder =
  bidirectional LSTM(1024) + LSTM(2048 -> 1024) + 2 x LSTM(1024) (residual from the third layer); decoder = LSTM(1024)
  + normalized Bahdanau attention (query/key projections 1024, score vector 1024) + 3 x LSTM(2048 -> 1024) reading the
  attention context (residual from the second) + classifier 1024 -> 32,320. One sample = one WMT16 en-de sentence pair
  of :data:`GNMT_TOKENS` source + target BPE tokens (a stated mean: ~23 words per sentence plus the BPE split, after
  the 50-token training cap; not logged). The logged tokens/s count source + target tokens.
* :func:`tacotron2` -- ``PyTorch/SpeechSynthesis/Tacotron2`` (tacotron2/model.py): 148-symbol embedding (512), 3 x
  conv5 + BN encoder, bidirectional LSTM(256); decoder prenet 80-256-256, attention LSTM(768 -> 1024), location-
  sensitive attention (128 units, 32 filters of width 31), decoder LSTM(1536 -> 1024), 80-mel projection + gate; 5-layer
  conv postnet (512). One sample = one LJSpeech utterance of the dataset's means (:data:`TACO_FRAMES` mel frames =
  6.57 s at 22,050 Hz / hop 256, :data:`TACO_SYMBOLS` characters; LJSpeech README): mel frames/s / 566 = samples/s.
  The decoder recursion is written MAC-equivalently over the whole utterance (teacher forcing; the previous context
  and attention weights are stand-ins of their shapes), so the graph has every per-step matrix product once per frame.

Both take one flat integer input (token / symbol ids; Tacotron2's teacher-forcing mel frames are a zero stand-in).
Bidirectional LSTMs are two one-direction LSTMs (the same parameters): the exporter leaves the merged form unshaped.
"""

from __future__ import annotations

import torch
from torch import nn

GNMT_VOCAB, GNMT_TOKENS = 32320, 25
TACO_SYMBOLS, TACO_FRAMES, TACO_MELS = 100, 566, 80


class BiLSTM(nn.Module):
    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.fwd, self.bwd = nn.LSTM(n_in, hidden, batch_first=True), nn.LSTM(n_in, hidden, batch_first=True)

    def forward(self, x):
        a, _ = self.fwd(x)
        b, _ = self.bwd(torch.flip(x, dims=[1]))
        return torch.cat([a, torch.flip(b, dims=[1])], dim=-1)


def _lstm(n_in: int, hidden: int) -> nn.LSTM:
    return nn.LSTM(n_in, hidden, batch_first=True)


def _run(lstm: nn.LSTM, x):
    return lstm(x)[0]


class GNMT(nn.Module):
    def __init__(self, vocab: int = GNMT_VOCAB, h: int = 1024, tokens: int = GNMT_TOKENS):
        super().__init__()
        self.tokens = tokens
        self.embed = nn.Embedding(vocab, h)
        self.enc = nn.ModuleList([BiLSTM(h, h), _lstm(2 * h, h), _lstm(h, h), _lstm(h, h)])
        self.att_rnn = _lstm(h, h)
        self.q, self.k = nn.Linear(h, h, bias=False), nn.Linear(h, h, bias=False)
        self.v = nn.Parameter(torch.empty(h))
        self.norm_bias, self.norm_scale = nn.Parameter(torch.empty(h)), nn.Parameter(torch.empty(1))
        self.dec = nn.ModuleList([_lstm(2 * h, h) for _ in range(3)])
        self.classifier = nn.Linear(h, vocab)

    def forward(self, ids):
        src, tgt = self.embed(ids[:, : self.tokens]), self.embed(ids[:, self.tokens:])
        x = self.enc[0](src)
        for i, layer in enumerate(self.enc[1:], start=1):
            y = _run(layer, x)
            x = y + x if i >= 2 else y
        q = _run(self.att_rnn, tgt)
        v = self.v / self.v.norm() * self.norm_scale
        scores = (torch.tanh(self.q(q)[:, :, None] + self.k(x)[:, None] + self.norm_bias) * v).sum(-1)
        ctx = torch.softmax(scores, dim=-1) @ x
        h = q
        for i, layer in enumerate(self.dec):
            y = _run(layer, torch.cat([h, ctx], dim=-1))
            h = y + h if i >= 1 else y
        return self.classifier(h)


def _conv_bn(cin: int, cout: int, act):
    return nn.Sequential(nn.Conv1d(cin, cout, 5, padding=2), nn.BatchNorm1d(cout), *([act] if act else []))


class Tacotron2(nn.Module):
    def __init__(self, symbols: int = 148, emb: int = 512, rnn: int = 1024, att: int = 128):
        super().__init__()
        self.embed = nn.Embedding(symbols, emb)
        self.convs = nn.Sequential(*[_conv_bn(emb, emb, nn.ReLU()) for _ in range(3)])
        self.enc_rnn = BiLSTM(emb, emb // 2)
        self.prenet = nn.Sequential(nn.Linear(TACO_MELS, 256, bias=False), nn.ReLU(), nn.Linear(256, 256, bias=False),
                                    nn.ReLU())
        self.att_rnn = _lstm(256 + emb, rnn)
        self.query, self.memory = nn.Linear(rnn, att, bias=False), nn.Linear(emb, att, bias=False)
        self.loc_conv, self.loc_dense = nn.Conv1d(2, 32, 31, padding=15, bias=False), nn.Linear(32, att, bias=False)
        self.v = nn.Linear(att, 1, bias=False)
        self.dec_rnn = _lstm(rnn + emb, rnn)
        self.proj, self.gate = nn.Linear(rnn + emb, TACO_MELS), nn.Linear(rnn + emb, 1)
        self.postnet = nn.Sequential(_conv_bn(TACO_MELS, 512, nn.Tanh()), *[_conv_bn(512, 512, nn.Tanh()) for _ in range(3)],
                                     _conv_bn(512, TACO_MELS, None))

    def forward(self, ids):
        n, frames = ids.shape[0], TACO_FRAMES
        mem = self.enc_rnn(self.convs(self.embed(ids).transpose(1, 2)).transpose(1, 2))  # (n, L, 512)
        prev = torch.zeros(n, frames, TACO_MELS, device=ids.device)  # teacher-forced previous frames (stand-in)
        ctx0 = mem.mean(dim=1, keepdim=True).expand(n, frames, mem.shape[-1])  # previous contexts (stand-in)
        h_att = _run(self.att_rnn, torch.cat([self.prenet(prev), ctx0], dim=-1))
        weights = torch.zeros(n * frames, 2, mem.shape[1], device=ids.device)  # previous + cumulative weights
        loc = self.loc_dense(self.loc_conv(weights).transpose(1, 2)).reshape(n, frames, mem.shape[1], -1)
        energy = self.v(torch.tanh(self.query(h_att)[:, :, None] + self.memory(mem)[:, None] + loc)).squeeze(-1)
        ctx = torch.softmax(energy, dim=-1) @ mem
        h = torch.cat([_run(self.dec_rnn, torch.cat([h_att, ctx], dim=-1)), ctx], dim=-1)
        mel = self.proj(h).transpose(1, 2)
        return mel + self.postnet(mel), self.gate(h)


def gnmt_v2() -> nn.Module:
    return GNMT()


def tacotron2() -> nn.Module:
    return Tacotron2()
