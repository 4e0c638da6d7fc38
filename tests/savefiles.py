"""Taking a save file apart and putting it back together, for tests that forge or compare saves.

A save is a JSON header line and a zlib payload: an 8-byte length, the JSON
object graph and the raw blob area (``docs/save-format.md``).
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from typing import Any


def split(data: bytes) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """Header, payload document and blob area of a save."""
    nl = data.index(b"\n")
    raw = zlib.decompress(data[nl + 1:])
    (n,) = struct.unpack_from("<Q", raw)
    return json.loads(data[:nl]), json.loads(raw[8:8 + n]), raw[8 + n:]


def join(head: dict[str, Any], doc: dict[str, Any], blobs: bytes) -> bytes:
    """A save with a consistent header over whatever payload we built (a forger's file)."""
    text = json.dumps(doc).encode()
    raw = struct.pack("<Q", len(text)) + text + blobs
    payload = zlib.compress(raw)
    head = dict(head, payload_bytes=len(payload), raw_bytes=len(raw),
                payload_sha256=hashlib.sha256(payload).hexdigest())
    return json.dumps(head).encode() + b"\n" + payload


def canonical(data: bytes) -> Any:
    """A save's document with set items sorted (set iteration order is not state) and the
    hash of its blobs."""
    _, doc, blobs = split(data)
    for e in doc["objects"]:
        if e["t"] in ("set", "frozenset"):
            e["v"] = sorted(e["v"], key=repr)
    return doc, hashlib.sha256(blobs).hexdigest()
