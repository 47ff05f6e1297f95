"""Argument helpers shared by the CLI commands."""

import pytest

from featurize.errors import InvalidInputError
from predictor.cli._common import parse_dims


def test_parse_dims_reads_name_value_pairs():
    assert parse_dims(["seq=512", " batch = 8"]) == {"seq": 512, "batch": 8}
    assert parse_dims([]) is None
    assert parse_dims(None) is None


@pytest.mark.parametrize("bad", ["seq", "seq=", "=512", "seq=abc"])
def test_parse_dims_rejects_malformed_items(bad):
    with pytest.raises(InvalidInputError, match="name=value"):
        parse_dims([bad])
