"""Reader/writer for the "CLLM tensor file" format.

The C++ test suite implements the same format, so this module is the
Python half of a byte-level contract. Layout (all integers little-endian,
no padding or alignment anywhere):

    magic    8 bytes   b"CLLMTNS1"
    count    u32       number of records
    count x record:
        name_len  u32
        name      name_len bytes, UTF-8, no terminating NUL
        dtype     u32       0 = float32, 1 = int32
        ndim      u32
        dims      ndim x u64
        data      prod(dims) elements of dtype, little-endian, row-major
                  (prod of an empty dims list is 1, i.e. a scalar)

The writer is deliberately strict: it accepts only float32 and int32
arrays, so a float64 tensor can never be silently narrowed (or an int64
silently truncated) behind the caller's back; the caller decides.
"""

import struct
from collections import OrderedDict

import numpy as np

MAGIC = b"CLLMTNS1"

DTYPE_FLOAT32 = 0
DTYPE_INT32 = 1

# Explicit little-endian dtypes so the file is identical on any host.
_CODE_TO_NP = {DTYPE_FLOAT32: np.dtype("<f4"), DTYPE_INT32: np.dtype("<i4")}


def _dtype_code(arr):
    if arr.dtype == np.float32:
        return DTYPE_FLOAT32
    if arr.dtype == np.int32:
        return DTYPE_INT32
    raise TypeError(
        f"tensor file supports only float32 and int32, got {arr.dtype}; "
        "convert explicitly before writing")


def encode(records):
    """Serialise records to bytes.

    records: iterable of (name, numpy array) pairs, or a mapping; order is
    preserved and is part of the file (the C++ side may rely on it).
    """
    items = list(records.items()) if hasattr(records, "items") else list(records)
    seen = set()
    out = [MAGIC, struct.pack("<I", len(items))]
    for name, arr in items:
        if name in seen:
            raise ValueError(f"duplicate record name {name!r}")
        seen.add(name)
        arr = np.asarray(arr)
        code = _dtype_code(arr)
        name_b = name.encode("utf-8")
        if b"\0" in name_b:
            raise ValueError(f"record name {name!r} contains NUL")
        out.append(struct.pack("<I", len(name_b)))
        out.append(name_b)
        out.append(struct.pack("<II", code, arr.ndim))
        out.append(struct.pack(f"<{arr.ndim}Q", *arr.shape))
        # ascontiguousarray gives row-major order; astype fixes endianness.
        out.append(np.ascontiguousarray(arr).astype(_CODE_TO_NP[code], copy=False).tobytes())
    return b"".join(out)


def decode(buf):
    """Parse bytes into an OrderedDict name -> numpy array (file order)."""
    buf = memoryview(buf)
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > len(buf):
            raise ValueError(f"truncated tensor file at byte {pos} (need {n} more)")
        chunk = buf[pos:pos + n]
        pos += n
        return chunk

    if bytes(take(len(MAGIC))) != MAGIC:
        raise ValueError("bad magic: not a CLLM tensor file")
    (count,) = struct.unpack("<I", take(4))
    records = OrderedDict()
    for _ in range(count):
        (name_len,) = struct.unpack("<I", take(4))
        name = bytes(take(name_len)).decode("utf-8")
        code, ndim = struct.unpack("<II", take(8))
        if code not in _CODE_TO_NP:
            raise ValueError(f"record {name!r}: unknown dtype code {code}")
        dims = struct.unpack(f"<{ndim}Q", take(8 * ndim))
        dt = _CODE_TO_NP[code]
        n = int(np.prod(dims, dtype=np.uint64)) if ndim else 1
        data = np.frombuffer(take(n * dt.itemsize), dtype=dt).reshape(dims)
        if name in records:
            raise ValueError(f"duplicate record name {name!r}")
        # Copy so the result does not pin the whole input buffer.
        records[name] = data.copy()
    if pos != len(buf):
        raise ValueError(f"{len(buf) - pos} trailing bytes after last record")
    return records


def write(path, records):
    with open(path, "wb") as f:
        f.write(encode(records))


def read(path):
    with open(path, "rb") as f:
        return decode(f.read())


if __name__ == "__main__":
    # `python3 tensorfile.py FILE` lists the records: handy when a C++ test
    # complains about a name or a shape.
    import sys

    for path in sys.argv[1:]:
        for name, arr in read(path).items():
            print(f"{name:45s} {str(arr.dtype):8s} {list(arr.shape)}")
