"""The content-addressed blob store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockgate.errors import BlobCorrupted, NotFound
from lockgate.store import BlobStore


def test_put_and_read_round_trip(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    ref = blobs.put_bytes(b"hello")
    assert ref.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert blobs.path_for(ref.sha256).parts[-2:] == (ref.sha256[:2], ref.sha256)
    assert blobs.read_bytes(ref.sha256) == b"hello"
    assert blobs.verify(ref.sha256)
    assert not any((tmp_path / "blobs" / "tmp").iterdir())


def test_put_file_streams_large_files(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    data = bytes(range(256)) * 20_000  # 5 MB, several read chunks
    source.write_bytes(data)
    blobs = BlobStore(tmp_path / "blobs")
    ref = blobs.put_file(source)
    assert (ref.sha256, ref.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert blobs.put_file(source) == ref  # idempotent


def test_corruption_is_detected_on_read(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    ref = blobs.put_bytes(b"model weights")
    blobs.path_for(ref.sha256).write_bytes(b"tampered")
    assert not blobs.verify(ref.sha256)
    with pytest.raises(BlobCorrupted, match="corrupted"):
        blobs.read_bytes(ref.sha256)


def test_missing_blob_and_bad_digest(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    with pytest.raises(NotFound):
        blobs.read_bytes("0" * 64)
    with pytest.raises(ValueError, match="not a sha256"):
        blobs.path_for("../../etc/passwd")


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=4096))
def test_any_bytes_round_trip(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    blobs = BlobStore(tmp_path_factory.mktemp("b"))
    assert blobs.read_bytes(blobs.put_bytes(data).sha256) == data
