"""One validation of the numeric run arguments for every entry point: non-finite or out-of-range values raise the
project's error naming the argument and the allowed range (Python predict / predict_many, CLI predict / score)."""

from __future__ import annotations

import math

import pytest

from conftest import RESNET18 as _RESNET18
from featurize import lookup_gpu
from featurize.errors import InvalidInputError
from featurize.physics import power_limit_range_w
from predictor import predict, predict_many
from predictor.cli import main

RESNET18 = str(_RESNET18)
RUN = dict(gpu="H100-SXM5-80GB", batch_size=64, samples_per_epoch=50_000, epochs=10)
NAN, INF = float("nan"), float("inf")

BAD = [
    ("epochs", NAN, r"epochs=nan .*finite number in \(0, "),
    ("epochs", INF, r"epochs=inf .*finite number in \(0, "),
    ("epochs", 0, r"epochs=0 .*\(0, "),
    ("samples_per_epoch", NAN, r"samples_per_epoch=nan .*whole number in \[1, "),
    ("samples_per_epoch", 2.5, r"samples_per_epoch=2.5 .*whole number"),
    ("batch_size", INF, r"batch_size=inf .*whole number in \[1, "),
    ("batch_size", True, r"batch_size=True"),
    ("val_samples", -1, r"val_samples=-1 .*\[0, "),
    ("val_samples", NAN, r"val_samples=nan"),
    ("power_limit_w", NAN, r"power_limit_w=nan .*\[200, 700\].*H100-SXM5-80GB"),
    ("power_limit_w", 100, r"power_limit_w=100 .*\[200, 700\]"),   # below any H100's minimum
    ("power_limit_w", 2000, r"power_limit_w=2000 .*\[200, 700\]"),
    ("power_limit_w", -INF, r"power_limit_w=-inf"),
]


@pytest.mark.parametrize("name, value, says", BAD)
def test_predict_refuses(name, value, says):
    with pytest.raises(InvalidInputError, match=says):
        predict(RESNET18, **{**RUN, name: value})


@pytest.mark.parametrize("name, value, says", BAD)
def test_predict_many_refuses_with_the_same_message(name, value, says):
    with pytest.raises(InvalidInputError, match=says):
        predict_many([RESNET18], **{**RUN, name: value})


def test_settable_power_limit_range_is_accepted_and_moves_the_forecast():
    spec = lookup_gpu("H100-SXM5-80GB")
    lo, hi = power_limit_range_w(spec)
    assert (lo, hi) == pytest.approx((200.0, 700.0))  # nvidia-smi Min/Max Power Limit (GPU table)
    capped = predict(RESNET18, **{**RUN, "power_limit_w": 300})
    default = predict(RESNET18, **RUN)
    assert math.isfinite(capped.energy_j) and capped.avg_power_w <= 300.0 + 1e-9
    assert capped.avg_power_w < default.avg_power_w
    many = predict_many([RESNET18], **{**RUN, "power_limit_w": 300})
    assert many["energy_j"].iloc[0] == pytest.approx(capped.energy_j, rel=1e-9)


@pytest.mark.parametrize("flag, value, says", [
    ("--epochs", "nan", "epochs=nan"), ("--epochs", "inf", "epochs=inf"),
    ("--power-limit-w", "nan", "power_limit_w=nan"), ("--power-limit-w", "100", "power_limit_w=100.0"),
    ("--samples-per-epoch", "0", "samples_per_epoch=0"),
])
def test_cli_predict_refuses_with_exit_1_and_no_nan_printed(flag, value, says, capsys):
    argv = ["predict", RESNET18, "--gpu", "H100-SXM5-80GB", "--batch-size", "64", "--samples-per-epoch", "50000",
            flag, value]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and says in err and "nan J" not in out


@pytest.mark.parametrize("flag, value, says", [("--epochs", "nan", "epochs=nan"),
                                               ("--power-limit-w", "100", "power_limit_w=100.0")])
def test_cli_score_refuses_with_exit_1(flag, value, says, capsys):
    argv = ["score", RESNET18, "--gpu", "H100-SXM5-80GB", "-n", "50000", flag, value]
    assert main(argv) == 1
    assert says in capsys.readouterr().err
