"""Prediction.to_hf_model_card (the Hugging Face model card's co2_eq_emissions block) and Prediction._repr_html_."""

from __future__ import annotations

from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from featurize.errors import InvalidInputError
from predictor.prediction import Prediction

# The block as the Hugging Face hub documents it (huggingface.co/docs/hub/model-cards-co2, hub-docs modelcard.md):
# emissions (grams of CO2eq), source, training_type ("pre-training" or "fine-tuning"), geographical_location,
# hardware_used.
HUB_CO2_KEYS = {"emissions", "source", "training_type", "geographical_location", "hardware_used"}


def _pred(**kw) -> Prediction:
    base = dict(energy_j=7.2e8, energy_per_epoch_j=2.4e8, energy_per_sample_j=2.4e3, time_s=7200.0,
                time_per_epoch_s=2400.0, avg_power_w=1e5, interval_j=(5e8, 1e9), gpu="H100-SXM5-80GB",
                epochs=3.0, batch_size=32, samples_per_epoch=100_000, precision="bf16", memory_bytes=2.0 * 2**30,
                fits=True, model_name="pre", model_version="1.0")
    base.update(kw)
    return Prediction(**base)


def test_block_has_exactly_the_hub_fields_and_grams_from_the_grid():
    p = _pred()  # 200 kWh
    block = p.to_hf_model_card(region="fr", training_type="fine-tuning")
    assert set(block) == HUB_CO2_KEYS
    assert block["emissions"] == pytest.approx(200.0 * 56.0, abs=0.01)  # France: 56 g CO2e/kWh (Ember 2023)
    assert block["source"] == "joulecast forecast"
    assert block["training_type"] == "fine-tuning"
    assert block["geographical_location"] == "France"
    assert block["hardware_used"] == "1 x H100-SXM5-80GB GPU"
    assert p.to_hf_model_card(pue=1.5, grid_g_per_kwh=100)["emissions"] == pytest.approx(200 * 1.5 * 100)
    assert "world-average" in p.to_hf_model_card()["geographical_location"]


def test_block_round_trips_through_a_huggingface_model_card_and_the_hubs_own_reader():
    hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.utils import endpoint_helpers

    p = _pred(energy_j=36.0)  # 1e-5 kWh: 0.0048 g at the world average -> must still read as a plain number
    for pred, lo, hi in ((_pred(), 90_000, 100_000), (p, 0.0, 0.01)):
        data = hub.ModelCardData(co2_eq_emissions=pred.to_hf_model_card(), license="apache-2.0")
        card = hub.ModelCard(f"---\n{data.to_yaml()}\n---\n\n# A model\n")
        block = card.data.co2_eq_emissions
        assert block == pred.to_hf_model_card()
        reader = getattr(endpoint_helpers, "_is_emission_within_threshold", None)
        if reader is not None:  # what the hub's model search filters on
            info = SimpleNamespace(card_data=card.data)
            assert reader(info, lo, hi) is (block["emissions"] > 0)
            assert not reader(info, hi + 1, hi + 2)


def test_bad_training_type_is_refused():
    with pytest.raises(InvalidInputError, match="pre-training, fine-tuning"):
        _pred().to_hf_model_card(training_type="training")


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_repr_html_is_a_table_with_escaped_text():
    p = _pred(warnings=["shape of <input> unknown & guessed", "<script>alert(1)</script>"])
    out = p._repr_html_()
    parser = _Collect()
    parser.feed(out)
    assert "table" in parser.tags and "script" not in parser.tags
    text = "".join(parser.text)
    assert "200 kWh" in text and "H100-SXM5-80GB" in text and "90% interval 500 MJ - 1 GJ" in text
    assert "shape of <input> unknown & guessed" in text  # shown verbatim, after unescaping
    assert "2 warnings" in text
