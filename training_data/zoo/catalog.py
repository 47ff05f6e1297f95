"""Zoo entries for the workloads behind the throughput sources (lambda_dlbench, nvidia_dle, mlperf_training).

Merged into :data:`training_data.zoo.ZOO` on import. Each entry's ``note`` cites the reference configuration it
follows; params and MACs are pinned in ``tests/test_data_zoo_catalog.py`` against published figures or
``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

from training_data.zoo import ZooEntry, _lazy

_LLAMA_NOTE = ("decoder (RMSNorm, RoPE, GQA, SwiGLU, fused QKV), config as Hugging Face {hf} (ZOO_REFERENCES 9); "
               "{params} params; ?lora_rank=16 adds MLPerf LoRA adapters (frozen='base'); ?layers=N truncates")


def _llama(size: str, hf: str, params: str, seq: str) -> ZooEntry:
    return ZooEntry(_lazy("llama", "llama", size=size), seq, input_kind="tokens", dynamic_seq=True, meta=True,
                    note=_LLAMA_NOTE.format(hf=hf, params=params))

ENTRIES: dict[str, ZooEntry] = {
    "resnet50_v15": ZooEntry(_lazy("resnets", "resnet_v15", depth=50), "3x224x224",
                             reference_gflops={"3x224x224": 8.18},
                             note="ResNet-50 v1.5, DLE PyTorch ConvNets resnet50 / torchvision (25.56 M, 4.09 GMACs)"),
    "resnext101_32x4d": ZooEntry(_lazy("resnets", "resnet_v15", depth=101, groups=32, width_per_group=4),
                                 "3x224x224", note="DLE PyTorch ConvNets resnext101-32x4d (44.18 M params)"),
    "se_resnext101_32x4d": ZooEntry(_lazy("resnets", "resnet_v15", depth=101, groups=32, width_per_group=4, se=1),
                                    "3x224x224", note="DLE PyTorch ConvNets se-resnext101-32x4d (48.96 M params)"),
    "bert_large_qa": ZooEntry(_lazy("seq", "bert", size="large", task="qa"), "seq384", input_kind="tokens",
                              dynamic_seq=True, note="BERT-Large uncased + SQuAD span head (google-research/bert)"),
    "bert_large_pretrain": ZooEntry(_lazy("seq", "bert", size="large", task="pretrain"), "seq512",
                                    input_kind="tokens", dynamic_seq=True,
                                    note="BERT-Large uncased pre-training heads (MLM + NSP), MLPerf bert / DLE"),
    "bert_base_pretrain": ZooEntry(_lazy("seq", "bert", size="base", task="pretrain"), "seq128",
                                   input_kind="tokens", dynamic_seq=True,
                                   note="BERT-Base uncased pre-training heads (MLM + NSP)"),
    "unet3d_kits19": ZooEntry(_lazy("medical", "unet3d_kits19"), "1x128x128x128", input_kind="volume",
                              note="MLPerf Training 3D U-Net (KiTS19), 31.19 M params, 477.3 GMACs per 128^3 crop"),
    "ssd300": ZooEntry(_lazy("detection", "ssd300"), "3x300x300",
                       note="SSD300 v1.1, DLE PyTorch/Detection/SSD (ResNet-50 to conv4_x, 81 COCO classes), "
                            "22.89 M params, 20.15 GMACs"),
    "retinanet_resnext50": ZooEntry(_lazy("detection", "retinanet_resnext50"), "3x800x800",
                                    note="MLPerf single_stage_detector: RetinaNet ResNeXt-50 32x4d FPN, 264 classes, "
                                         "800 px; 37.13 M params, 201.2 GMACs"),
    "efficientnet": ZooEntry(_lazy("efficientnet", "efficientnet"), "3x224x224",
                             note="EfficientNet-B<variant> (?variant=0..7, &widese=1 for DLE WideSE); B0 5.29 M params "
                                  "0.39 GMACs at 224, B4 19.34 M 4.39 GMACs at 380"),
    "waveglow": ZooEntry(_lazy("speech", "waveglow"), "10560", input_kind="flat",
                         note="WaveGlow 256-channel (DLE Tacotron2/WaveGlow), 8,000-sample segment + 32 mel frames; "
                              "87.73 M params, 81.24 GMACs per segment"),
    "transformer_xl_base": ZooEntry(_lazy("txl", "transformer_xl", size="base"), "seq192", input_kind="tokens",
                                    dynamic_seq=False, note="DLE Transformer-XL base (WT103), 191.7 M params"),
    "transformer_xl_large": ZooEntry(_lazy("txl", "transformer_xl", size="large"), "seq256", input_kind="tokens",
                                     dynamic_seq=False, note="DLE Transformer-XL large (WT103, div_val 4), 282.8 M params"),
    "electra_base_qa": ZooEntry(_lazy("seq", "electra_base_qa"), "seq384", input_kind="tokens", dynamic_seq=True,
                                note="ELECTRA-Base discriminator + SQuAD head (google-research/electra base config)"),
    "bart_large": ZooEntry(_lazy("seq", "bart_large"), "seq512", input_kind="tokens", dynamic_seq=True,
                           note="BART-Large (facebook/bart-large config) denoising LM, DLE PyTorch BART"),
    "vae_cf": ZooEntry(_lazy("seq", "vae_cf"), "20108", input_kind="flat",
                       note="Mult-VAE 20108-600-200 (Liang et al. 2018), DLE TensorFlow VAE-CF, MovieLens-20M"),
    "ncf_dle": ZooEntry(_lazy("seq", "ncf_dle"), "2", input_kind="ids",
                        note="NeuMF, DLE PyTorch NCF (factors 64, layers 256-256-128-64), MovieLens-20M"),
    # issue 30: the modern MLPerf and LLM workloads (meta-device graphs: no weight is allocated)
    "llama3_1b": _llama("llama3_1b", "meta-llama/Llama-3.2-1B", "1,235,814,400", "seq2048"),
    "llama2_7b": _llama("llama2_7b", "meta-llama/Llama-2-7b-hf", "6,738,415,616", "seq4096"),
    "llama3_8b": _llama("llama3_8b", "meta-llama/Meta-Llama-3-8B", "8,030,261,248", "seq8192"),
    "llama2_70b": _llama("llama2_70b", "meta-llama/Llama-2-70b-hf (MLPerf llama2_70b_lora base)", "68,976,648,192",
                         "seq8192"),
    "llama3_70b": _llama("llama3_70b", "meta-llama/Meta-Llama-3-70B", "70,553,706,496", "seq8192"),
    "sd2_unet": ZooEntry(_lazy("diffusion", "sd2_unet"), "95233", input_kind="flat", meta=True,
                         note="MLPerf Stable Diffusion v2 UNet (mlcommons/training train_32x08x04.yaml, diffusers "
                              "layout), 865,910,724 params; one sample = latent 4x64x64 + 77x1024 text states + t"),
    "maskrcnn_r50_fpn": ZooEntry(_lazy("maskrcnn", "maskrcnn_r50_fpn"), "3x800x1344", meta=True,
                                 frozen_prefix="backbone.stem;backbone.layer1",
                                 note="Mask R-CNN R50-FPN, MLPerf maskrcnn-benchmark e2e_mask_rcnn_R_50_FPN_1x / DLE; "
                                      "81 classes, 44,347,573 params; 512 box RoIs + 128 mask RoIs per image"),
    "rnnt": ZooEntry(_lazy("rnnt", "rnnt"), "98443", input_kind="flat", meta=True,
                     note="MLPerf RNN-T (baseline_v3-1023sp.yaml), 49,006,080 params; one 12.3 s LibriSpeech "
                          "utterance = 205 encoder steps x 44 label steps (mean length; stated)"),
    "dlrm_dcnv2": ZooEntry(_lazy("recsys", "dlrm_dcnv2"), "227", input_kind="flat", meta=True,
                           note="MLPerf DLRM-DCNv2 (torchrec_dlrm, Criteo 1TB multi-hot): 26 tables x 128, 214 "
                                "lookups, DCNv2 3 x rank 512; 26,151,671,809 params; ?rows=N caps the tables"),
    "rgat": ZooEntry(_lazy("gnn", "rgat"), "937984", input_kind="flat", meta=True,
                     note="MLPerf R-GAT on IGBH-Full (3 relation-wise GAT layers, 4 x 128, 11 relations), "
                          "13,115,303 params; one seed node with a 15-10-5 sampled tree (916 nodes; stated)"),
    "gnmt_v2": ZooEntry(_lazy("seq2seq", "gnmt_v2"), "50", input_kind="ids", meta=True,
                        note="GNMT v2, DLE PyTorch/Translation/GNMT (4+4 LSTM 1024, Bahdanau attention, vocab 32,320), "
                             "160,671,297 params; one WMT16 sentence pair of the stated mean 25 + 25 tokens"),
    "tacotron2": ZooEntry(_lazy("seq2seq", "tacotron2"), "100", input_kind="ids", meta=True,
                          note="Tacotron 2, DLE PyTorch/SpeechSynthesis/Tacotron2, 28,193,153 params; one LJSpeech "
                               "utterance of the mean 100 characters / 566 mel frames (stated)"),
    "jasper": ZooEntry(_lazy("speech", "jasper"), "64x1230", input_kind="spectrogram", meta=True,
                       note="Jasper 10x5 dense-residual (Li et al. 2019: 333 M), DLE PyTorch/SpeechRecognition/Jasper, "
                            "332,632,349 params; one LibriSpeech utterance of the mean 12.3 s = 1,230 frames (stated)"),
    "gpt3": ZooEntry(_lazy("perseus", "gpt3"), "seq1024", input_kind="tokens", dynamic_seq=True, meta=True,
                     note="Perseus/Merak GPT-3 as GPT2LMHeadModel: ?size=1 XL 1,313.63 M, 2 = 2.7B 2,648.93 M, "
                          "6 = 6.7B 6,654.21 M params (published, artifact README)"),
    "bert_huge": ZooEntry(_lazy("perseus", "bert_huge"), "seq512", input_kind="tokens", dynamic_seq=True, meta=True,
                          note="Perseus/Merak BERT-huge (BertForMaskedLM, hidden 2048, FFN 8192, 24 layers), "
                               "1,276.40 M params (published)"),
    "t5_3b": ZooEntry(_lazy("perseus", "t5_3b"), "1024", input_kind="ids", meta=True,
                      note="Perseus/Merak T5-3B (T5ForConditionalGeneration, hub t5-3b config), 2,851.6 M params; "
                           "512 input + 512 target tokens per sample"),
    "bloom_3b": ZooEntry(_lazy("perseus", "bloom_3b"), "seq1024", input_kind="tokens", dynamic_seq=True, meta=True,
                         note="Perseus/Merak BLOOM-3B (BloomForCausalLM, hub bigscience/bloom-3b config), "
                              "3,002.56 M params"),
    "wide_resnet101_8": ZooEntry(_lazy("perseus", "wide_resnet101_8"), "3x224x224", meta=True,
                                 note="Perseus/Merak Wide-ResNet-101 (torchvision layout, width_per_group 512), "
                                      "1,517.37 M params (published)"),
}
