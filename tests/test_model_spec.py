"""The model owns its prior: prior_spec.json is saved, checksummed and verified against the running code."""

from __future__ import annotations

import json
import shutil

import pytest

import featurize.hardware.precision as precision
import featurize.physics.prior as physics
from featurize.errors import ModelArtifactError
from predictor.model.artifact import hash_file, seal
from predictor.model.loaded import MANIFEST, load_model, shipped_model_dir
from predictor.model.spec import (
    SPEC_FILE,
    PriorSpec,
    current_spec,
    gpu_table_sha256,
    read_spec,
    spec_differences,
)


@pytest.fixture()
def model_copy(tmp_path):
    dest = tmp_path / "model"
    shutil.copytree(shipped_model_dir(), dest)
    return dest


def _rewrite_spec(model_dir, edit):
    data = json.loads((model_dir / SPEC_FILE).read_text())
    edit(data)
    (model_dir / SPEC_FILE).write_text(json.dumps(data))
    man = json.loads((model_dir / MANIFEST).read_text())
    man["files"][SPEC_FILE] = hash_file(model_dir / SPEC_FILE)  # a consistent checksum: only the content is wrong
    (model_dir / MANIFEST).write_text(json.dumps(man))
    seal(model_dir)  # and a consistent SHA256SUMS (issue 19's list over every file)


def test_shipped_model_carries_and_matches_its_prior():
    m = load_model(None)
    assert SPEC_FILE in m.manifest["files"] and isinstance(m.prior, PriorSpec)
    assert m.prior.physics_constants["TENSOR_CORE_EFFICIENCY"] == physics.TENSOR_CORE_EFFICIENCY
    assert m.prior.gpu_table_sha256 == gpu_table_sha256()
    assert set(m.prior.precision_semantics) == {"fp32", "tf32", "fp16", "bf16", "fp8"}
    # the training table's source corrections are recorded with the model (they live in training_data/)
    assert m.prior.source_corrections["precision"] == {"mayaki": "tf32"}
    assert m.layer_efficiencies().memory == m.prior.layer_efficiencies.memory


def test_a_17_percent_change_of_a_physics_constant_is_refused(model_copy, monkeypatch):
    monkeypatch.setattr(physics, "TENSOR_CORE_EFFICIENCY", physics.TENSOR_CORE_EFFICIENCY * 1.17)
    with pytest.raises(ModelArtifactError, match="TENSOR_CORE_EFFICIENCY.*retrain"):
        load_model(model_copy)


def test_a_changed_feature_definition_is_refused(model_copy, monkeypatch):
    monkeypatch.setattr(physics, "OPT_BYTES_PER_PARAM", 16.0)  # a constant the features use
    with pytest.raises(ModelArtifactError, match="feature definitions: probe"):
        load_model(model_copy)


def test_changed_precision_semantics_are_refused(model_copy, monkeypatch):
    monkeypatch.setitem(precision.PRECISION_SEMANTICS, "fp32", "TF32 everywhere")
    with pytest.raises(ModelArtifactError, match="precision semantics of fp32"):
        load_model(model_copy)


def test_the_data_parallel_constants_are_the_models(model_copy, monkeypatch):
    """Issue 29's N-GPU constants live in the shipped spec; code that changes one no longer matches the model."""
    import dataclasses

    import predictor.parallel as parallel

    m = load_model(None)
    assert m.prior.data_parallel["reference"]["overlap"] == parallel.SCALING["reference"].overlap
    assert m.prior.data_parallel["tuned"]["scale"] == parallel.SCALING["tuned"].scale
    changed = {**parallel.SCALING, "tuned": dataclasses.replace(parallel.SCALING["tuned"], overlap=0.2)}
    monkeypatch.setattr(parallel, "SCALING", changed)
    with pytest.raises(ModelArtifactError, match="data-parallel constant tuned.overlap"):
        load_model(model_copy)
    _rewrite_spec(model_copy, lambda d: d.pop("data_parallel"))  # a model written before them: nothing to compare
    assert load_model(model_copy).prior.data_parallel is None


def test_a_model_made_with_another_gpu_table_is_refused(model_copy):
    _rewrite_spec(model_copy, lambda d: d.update(gpu_table_sha256="0" * 64))
    with pytest.raises(ModelArtifactError, match="GPU table sha256"):
        load_model(model_copy)


def test_gpu_table_hash_follows_a_prior_relevant_value(monkeypatch):
    import featurize.hardware.table as hw

    before = gpu_table_sha256()
    table = hw.gpu_table()
    table.loc[table["name"] == "A100-SXM4-80GB", "tdp_w"] = 401
    monkeypatch.setattr(hw, "gpu_table", lambda: table.copy())
    assert gpu_table_sha256() != before


def test_spec_must_be_checksummed_present_and_well_formed(model_copy):
    man = json.loads((model_copy / MANIFEST).read_text())
    spec_hash = man["files"].pop(SPEC_FILE)
    (model_copy / MANIFEST).write_text(json.dumps(man))
    seal(model_copy)
    with pytest.raises(ModelArtifactError, match="not listed in the manifest's checksummed files"):
        load_model(model_copy)
    man["files"][SPEC_FILE] = spec_hash
    (model_copy / MANIFEST).write_text(json.dumps(man))
    seal(model_copy)
    (model_copy / SPEC_FILE).write_text((model_copy / SPEC_FILE).read_text().replace("0.3", "0.35", 1))
    with pytest.raises(ModelArtifactError, match="sha256"):  # tampering is caught by the checksum first
        load_model(model_copy)
    _rewrite_spec(model_copy, lambda d: d.update(unexpected=1))
    with pytest.raises(ModelArtifactError, match="not a valid prior spec"):
        load_model(model_copy)
    (model_copy / SPEC_FILE).unlink()
    seal(model_copy)
    with pytest.raises(ModelArtifactError, match="missing|no prior_spec"):
        load_model(model_copy)


def test_spec_round_trip_and_self_consistency(tmp_path):
    from predictor.model.spec import write_spec

    spec = current_spec(source_corrections={"precision": {"x": "tf32"}}, note="test")
    write_spec(tmp_path, spec)
    back = read_spec(tmp_path)
    assert back == spec and spec_differences(back, current_spec()) == []
    # the probe covers a TF32-convolution fp32 case on a clock-limited PCIe board
    probe = back.features.probe["A100-PCIE-40GB|fp32|64"]
    assert probe["tensor_precision"] == 0.0 and set(probe) >= set(physics.FEATURE_NAMES)
