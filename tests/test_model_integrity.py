"""Artifact integrity (issue 19): SHA256SUMS over every file of a model directory (the manifest included),
unknown files refused, the manifest validated by a typed schema naming the file and key."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from featurize.errors import ModelArtifactError
from predictor.model.artifact import CHECKSUMS, _files, seal, validate_manifest, verify
from predictor.model.loaded import MANIFEST, load_model, shipped_model_dir


@pytest.fixture()
def shipped_copy(tmp_path):
    dest = tmp_path / "model"
    shutil.copytree(shipped_model_dir(), dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_shipped_checksums_cover_every_file_and_the_manifest():
    d = shipped_model_dir()
    listed = verify(d)
    on_disk = {str(p.relative_to(d).as_posix()) for p in d.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert set(listed) == on_disk - {CHECKSUMS}
    assert MANIFEST in listed and "examples/resnet18.onnx" in listed
    assert load_model(None).manifest["design"] in ("time_power", "energy")


def test_one_byte_in_the_manifest_is_caught(shipped_copy):
    """The issue's reproducer: shrink 1.0 -> 9.0 (one byte) multiplied every forecast by 131."""
    text = (shipped_copy / MANIFEST).read_text()
    assert '"shrink": 1.0' in text
    (shipped_copy / MANIFEST).write_text(text.replace('"shrink": 1.0', '"shrink": 9.0'))
    with pytest.raises(ModelArtifactError, match=r"manifest\.json: sha256 .* does not match SHA256SUMS"):
        load_model(shipped_copy)
    seal(shipped_copy)  # even re-sealed, the schema's range refuses it and names the key
    with pytest.raises(ModelArtifactError, match=r"manifest\.json: invalid manifest: key 'shrink'.*less than or equal"):
        load_model(shipped_copy)


def test_every_byte_of_the_checksum_list_is_covered(tmp_path):
    d = tmp_path / "m"
    (d / "sub").mkdir(parents=True)
    for name, data in (("a.txt", b"alpha"), ("manifest.json", b"{}"), ("sub/b.csv", b"1,2\n")):
        (d / name).write_bytes(data)
    seal(d)
    original = (d / CHECKSUMS).read_bytes()
    assert original.count(b"\n") == 3
    for i in range(len(original)):
        for flip in (0x01, 0x20):
            changed = bytearray(original)
            changed[i] ^= flip
            (d / CHECKSUMS).write_bytes(bytes(changed))
            with pytest.raises(ModelArtifactError):
                verify(d)
    (d / CHECKSUMS).write_bytes(original)
    assert set(verify(d)) == {"a.txt", "manifest.json", "sub/b.csv"}


@pytest.mark.parametrize("where", ["evil.pkl", "examples/evil.pkl", "__pycache__/evil.pkl"])
def test_unknown_files_are_refused_by_name(shipped_copy, where):
    (shipped_copy / where).parent.mkdir(exist_ok=True)
    (shipped_copy / where).write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(ModelArtifactError, match=f"{where}.*not in SHA256SUMS"):
        load_model(shipped_copy)


def test_bytecode_cache_is_ignored_and_links_are_refused(shipped_copy, tmp_path):
    (shipped_copy / "__pycache__").mkdir(exist_ok=True)
    (shipped_copy / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\x00" * 16)
    assert load_model(shipped_copy).manifest["model_name"]
    (tmp_path / "outside.txt").write_text("x")
    os.symlink(tmp_path / "outside.txt", shipped_copy / "link.txt")
    with pytest.raises(ModelArtifactError, match="link.txt"):
        load_model(shipped_copy)


def test_missing_checksum_list_is_refused(shipped_copy):
    (shipped_copy / CHECKSUMS).unlink()
    with pytest.raises(ModelArtifactError, match="no SHA256SUMS.*seal"):
        load_model(shipped_copy)


@pytest.mark.parametrize("edit,key", [
    (lambda m: m.update(shrink="1.0"), "shrink"),
    (lambda m: m["intervals"].update(log_halfwidth=-1.0), "intervals.log_halfwidth"),
    (lambda m: m["intervals"].update(level=1.5), "intervals.level"),
    (lambda m: m["boosters"]["time"].update(file="../../etc/passwd"), "boosters.time.file"),
    (lambda m: m.update(gpu_offsets={"A100": {"time": 50.0}}), "gpu_offsets"),
    (lambda m: m.update(features="log_kernel_time_s"), "features"),
    (lambda m: m.update(schema_version=2), "schema_version"),
    (lambda m: m.update(design=["time_power"]), "design"),
    (lambda m: m.update(unexpected_key=1), "unexpected_key"),
    (lambda m: m.pop("intervals"), "intervals"),
])
def test_manifest_schema_names_file_and_key(edit, key):
    man = json.loads((shipped_model_dir() / MANIFEST).read_text())
    edit(man)
    with pytest.raises(ModelArtifactError, match=rf"where\.json: invalid manifest: key '{key}"):
        validate_manifest(json.dumps(man), shipped_model_dir() / "where.json")


def test_shipped_manifest_passes_the_schema_unchanged():
    text = (shipped_model_dir() / MANIFEST).read_text()
    assert validate_manifest(text, shipped_model_dir() / MANIFEST) == json.loads(text)


def test_files_walk_lists_nested_files(tmp_path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "x" / "y" / "z.bin").write_bytes(b"1")
    (tmp_path / "top.txt").write_bytes(b"2")
    assert _files(tmp_path) == ["top.txt", "x/y/z.bin"]
