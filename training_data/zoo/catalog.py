"""Zoo entries for the workloads behind the throughput sources (lambda_dlbench, nvidia_dle, mlperf_training).

Merged into :data:`training_data.zoo.ZOO` on import. Each entry's ``note`` cites the reference configuration it
follows; params and MACs are pinned in ``tests/test_data_zoo_catalog.py`` against published figures or
``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

from training_data.zoo import ZooEntry, _lazy

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
}
