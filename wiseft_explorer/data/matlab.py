"""A small reader of MATLAB's level-5 MAT-files, enough for Stanford Cars' devkit (`cars_meta.mat`, the annotations).

torchvision's `StanfordCars` reads those files with `scipy.io.loadmat`, and scipy is not a dependency of this
project; these files hold only numbers, strings, cells and structs, which this reader turns into numpy arrays,
`str`, lists and lists of dicts (nothing is unpickled or executed). Format: MathWorks, "MAT-File Format" (level 5):
a 128-byte header, then tagged data elements, 8-byte aligned, optionally zlib-compressed (miCOMPRESSED).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

# Data types of tagged elements (miINT8 ... miUTF32); 14 is a matrix, 15 a compressed element.
_NUMBER = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8",
           16: "u1", 17: "u2", 18: "u4"}
MATRIX, COMPRESSED = 14, 15
CELL, STRUCT, CHAR = 1, 2, 4  # array classes (mxCELL_CLASS ...); 6 ... 15 are the numeric classes
_NUMERIC_CLASSES = range(6, 16)


class MatFileError(ValueError):
    """A file that is not a level-5 MAT-file, or that holds something this reader does not read."""


class _Reader:
    def __init__(self, data: bytes, endian: str) -> None:
        self.data, self.endian, self.pos = data, endian, 0

    def element(self) -> tuple[int, bytes]:
        """The next tagged element: (type, payload); the position moves past it and its padding."""
        first, second = np.frombuffer(self.data, self.endian + "u4", 2, self.pos)
        if first >> 16:  # small data element: type and size in the first 4 bytes, data in the next 4
            kind, size = int(first & 0xFFFF), int(first >> 16)
            payload = self.data[self.pos + 4:self.pos + 4 + size]
            self.pos += 8
            return kind, payload
        kind, size = int(first), int(second)
        start = self.pos + 8
        if start + size > len(self.data):
            raise MatFileError(f"an element of {size} bytes runs past the end of the data")
        self.pos = start + (size if kind == COMPRESSED else (size + 7) // 8 * 8)
        return kind, self.data[start:start + size]

    def numbers(self, kind: int, payload: bytes) -> np.ndarray:
        if kind not in _NUMBER:
            raise MatFileError(f"data type {kind} where numbers were expected")
        return np.frombuffer(payload, self.endian + _NUMBER[kind])


def _value(reader: _Reader, kind: int, payload: bytes) -> Any:
    if kind == COMPRESSED:
        inner = _Reader(zlib.decompress(payload), reader.endian)
        return _value(inner, *inner.element())
    if kind != MATRIX:
        raise MatFileError(f"data type {kind} where a matrix was expected")
    if not payload:  # an empty matrix inside a cell or a struct
        return np.zeros((0, 0))
    sub = _Reader(payload, reader.endian)
    flags = sub.numbers(*sub.element())
    dims = tuple(int(d) for d in sub.numbers(*sub.element()))
    sub.element()  # the array's name (empty inside cells and structs; the variable's name is read by the caller)
    cls, count = int(flags[0] & 0xFF), int(np.prod(dims))
    if cls in _NUMERIC_CLASSES:
        return sub.numbers(*sub.element()).reshape(dims, order="F")
    if cls == CHAR:
        kind, payload = sub.element()
        codes = sub.numbers(kind, payload)
        if kind == 16:  # UTF-8 bytes
            return bytes(codes).decode("utf-8")
        chars = codes.reshape(dims, order="F") if codes.size == count else codes.reshape(1, -1)
        rows = ["".join(map(chr, row)) for row in chars.reshape(chars.shape[0], -1)]
        return rows[0] if len(rows) == 1 else rows
    if cls == CELL:
        return [_value(sub, *sub.element()) for _ in range(count)]
    if cls == STRUCT:
        width = int(sub.numbers(*sub.element())[0])
        raw = sub.element()[1]
        names = [raw[i:i + width].split(b"\0")[0].decode("ascii") for i in range(0, len(raw), width)]
        return [{name: _value(sub, *sub.element()) for name in names} for _ in range(count)]
    raise MatFileError(f"array class {cls} (objects, sparse or function handles) is not read")


def read_mat(path: Path) -> dict[str, Any]:
    """The variables of a level-5 MAT-file: numeric arrays (column-major, as MATLAB stores them, shapes kept),
    strings, cells as lists and structs as lists of dicts (one per element, in MATLAB's column-major order)."""
    data = Path(path).read_bytes()
    if len(data) < 128 or data[:6] == b"\x89HDF\r\n" or data[512:520] == b"\x89HDF\r\n\x1a\n":
        raise MatFileError("not a level-5 MAT-file (too short, or MATLAB's v7.3 HDF5 format)")
    endian = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if endian is None:
        raise MatFileError("not a level-5 MAT-file (no endian mark at byte 126)")
    reader = _Reader(data[128:], endian)
    variables: dict[str, Any] = {}
    while reader.pos + 8 <= len(reader.data):
        kind, payload = reader.element()
        element = _Reader(zlib.decompress(payload), endian) if kind == COMPRESSED else None
        kind, payload = element.element() if element else (kind, payload)
        if kind != MATRIX:
            continue
        sub = _Reader(payload, endian)
        sub.element(), sub.element()  # flags and dimensions: read again by _value
        name = sub.element()[1].decode("ascii")
        variables[name] = _value(reader, MATRIX, payload)
    return variables
