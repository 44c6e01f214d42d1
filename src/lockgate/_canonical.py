"""Canonical JSON: one byte string per value, whatever key order or formatting it came in.

Version identities and audit hashes are sha256 over these bytes, so the encoding is fixed:
sorted keys, no insignificant whitespace, UTF-8, and no NaN or infinity (they have no
JSON spelling and would make two different documents hash alike).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """The canonical JSON text of `value`.

    Raises:
        ValueError: `value` holds NaN/infinity or something JSON cannot represent.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical_hash(value: Any) -> str:
    """sha256 (hex) of the canonical JSON of `value`."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
