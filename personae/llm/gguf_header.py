"""A few metadata values from a GGUF file's header, read without loading the model.

`personae models` shows a GGUF's name, architecture and trained context length. The header is a
list of key/value pairs at the start of the file (https://github.com/ggml-org/ggml/blob/master/
docs/gguf.md); the `gguf` package parses all of it, the tokenizer's 49,152 strings included,
which takes seconds and pulls in numpy. This reader walks the pairs with a buffered file, skips
the values it does not want, and stops as soon as it has the ones it does: milliseconds.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

MAGIC = b"GGUF"
MAX_STRING = 1 << 20  # a key or text value longer than 1 MiB means the file is not what it says
MAX_PAIRS = 1 << 16
MAX_COUNT = 1 << 40  # an array or a skip longer than any real file
MAX_DEPTH = 3  # arrays of arrays: none in real files, and a crafted nest must not recurse deep

# value type -> struct format of one scalar (GGUF is little-endian)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class NotGGUF(ValueError):
    """The file does not start with a readable GGUF header."""


def read_metadata(path: Path, wanted: Iterable[str] | None = None) -> dict[str, Any]:
    """The header's key/value pairs (scalars and texts; arrays are skipped), only ``wanted``
    ones when given (reading stops once all are found). Raises NotGGUF or OSError."""
    want = set(wanted) if wanted is not None else None
    found: dict[str, Any] = {}
    with path.open("rb") as handle:
        if handle.read(4) != MAGIC:
            raise NotGGUF(f"{path} does not start with the GGUF signature")
        version = _unpack(handle, "<I")
        if version < 2:  # version 1 used 32-bit counts; llama.cpp no longer reads it either
            raise NotGGUF(f"{path} is GGUF version {version}, too old to read")
        _unpack(handle, "<Q")  # tensor count
        pairs = _unpack(handle, "<Q")
        if pairs > MAX_PAIRS:
            raise NotGGUF(f"{path} claims {pairs} metadata pairs")
        for _ in range(pairs):
            key = _string(handle)
            kind = _unpack(handle, "<I")
            keep = want is None or key in want
            value = _value(handle, kind, keep)
            if keep and value is not None:
                found[key] = value
            if want is not None and want <= found.keys():
                break
    return found


def _value(handle: IO[bytes], kind: int, keep: bool, depth: int = 0) -> Any:
    if kind in _SCALARS:
        return _unpack(handle, _SCALARS[kind])
    if kind == _STRING:
        return _string(handle) if keep else _skip_string(handle)
    if kind == _ARRAY:
        item, count = _unpack(handle, "<I"), _unpack(handle, "<Q")
        if count > MAX_COUNT or depth >= MAX_DEPTH:
            raise NotGGUF("an array too long or too deeply nested")
        if item in _SCALARS:
            handle.seek(struct.calcsize(_SCALARS[item]) * count, 1)
        elif item == _STRING:
            for _ in range(count):
                _skip_string(handle)
        else:  # arrays of arrays: no key we read has one
            for _ in range(count):
                _value(handle, item, False, depth + 1)
        return None
    raise NotGGUF(f"unknown GGUF value type {kind}")


def _string(handle: IO[bytes]) -> str:
    length = _unpack(handle, "<Q")
    if length > MAX_STRING:
        raise NotGGUF(f"a header string of {length} bytes")
    raw = handle.read(length)
    if len(raw) != length:
        raise NotGGUF("the header ends in the middle of a string")
    return raw.decode("utf-8", errors="replace")


def _skip_string(handle: IO[bytes]) -> None:
    length = _unpack(handle, "<Q")
    if length > MAX_COUNT:
        raise NotGGUF(f"a header string of {length} bytes")
    handle.seek(length, 1)


def _unpack(handle: IO[bytes], fmt: str) -> Any:
    size = struct.calcsize(fmt)
    raw = handle.read(size)
    if len(raw) != size:
        raise NotGGUF("the header ends early")
    return struct.unpack(fmt, raw)[0]
