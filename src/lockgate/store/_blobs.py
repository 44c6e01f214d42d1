"""Content-addressed blob store on local disk.

A blob lives at ``ROOT/sha256/ab/abcdef…``. Writes go to a temporary file in the same
directory tree, are fsync'ed, then renamed into place, so a crash leaves either the whole
blob or nothing. Reads re-hash the bytes and refuse a blob that no longer matches.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lockgate.errors import BlobCorrupted, NotFound

_CHUNK = 1 << 20


@dataclass(frozen=True)
class BlobRef:
    """A stored blob: its sha256 (hex) and size in bytes."""

    sha256: str
    size: int


def sha256_file(path: Path) -> BlobRef:
    """Hash a file in chunks without loading it whole."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return BlobRef(digest.hexdigest(), size)


class BlobStore:
    """Immutable blobs filed under their sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / "sha256" / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def put_file(self, source: Path) -> BlobRef:
        """Copy `source` into the store (a no-op when already stored)."""
        with source.open("rb") as handle:
            return self._put_stream(handle)

    def put_bytes(self, data: bytes) -> BlobRef:
        return self._put_stream(io.BytesIO(data))

    def read_bytes(self, sha256: str) -> bytes:
        """The blob's bytes, verified against its digest."""
        path = self.path_for(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {sha256} is not in the blob store at {self.root}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise BlobCorrupted(
                f"blob {path} is corrupted: it hashes to {actual}, expected {sha256}; "
                "push the artifact's files again to restore it (lockgate push PATH)"
            )
        return data

    def verify(self, sha256: str) -> bool:
        """True when the blob exists and still matches its digest."""
        path = self.path_for(sha256)
        return path.is_file() and sha256_file(path).sha256 == sha256

    def _put_stream(self, handle: IO[bytes]) -> BlobRef:
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            ref = BlobRef(digest.hexdigest(), size)
            final = self.path_for(ref.sha256)
            if final.is_file() and self.verify(ref.sha256):
                os.unlink(tmp_name)
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_name, final)
                _fsync_dir(final.parent)
            return ref
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
