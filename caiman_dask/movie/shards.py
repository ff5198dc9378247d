"""Whole-shard writes of uncompressed local zarr v3 arrays, without zarr's copies.

Motion correction writes float32 blocks of whole shards into an uncompressed store. zarr
builds each shard by allocating a fill-value buffer per inner chunk, copying the data in,
encoding it and concatenating the chunks and the index: four copies of every byte before
the file write, which on two cores cost as much as registering the frames. For the layout
zarr itself would produce with ``compressors=None`` — one ``sharding_indexed`` codec, inner
``bytes`` (little endian), index ``bytes`` + ``crc32c`` at the end — the shard file is
simple enough to lay out directly (zarr v3 sharding specification): the inner chunks'
C-order bytes one after the other, then the index of ``(offset, nbytes)`` uint64 pairs in
C order of the inner grid (``2**64 - 1`` for chunks outside the array), then the CRC-32C of
the index. :func:`write_region` does that with one copy into a reused buffer, writing a
temporary file (with ``O_DIRECT`` where the filesystem allows) that replaces the shard
atomically; any other array or region goes through zarr unchanged.
"""

from __future__ import annotations

import errno
import itertools
import os
import sys
import threading
import uuid
from collections.abc import Iterator

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec
from zarr.storage import LocalStore

EMPTY = np.uint64(2**64 - 1)  # the index entry of an inner chunk that holds nothing
ALIGN = 4096  # O_DIRECT alignment of buffer address, length and file offset

_buffer_lock = threading.Lock()
_buffer: list[np.ndarray] = []  # one reused shard buffer per process


def write_region(array: zarr.Array, start: int, stop: int, data: np.ndarray) -> None:
    """``array[start:stop] = data`` for a (T, ...) array, directly when the layout allows.

    Parameters
    ----------
    array : zarr.Array
        Opened for writing.
    start, stop : int
        Frames written; every axis but the first is written whole.
    data : ndarray
        ``(stop - start, *array.shape[1:])`` values of ``array.dtype``.
    """
    if not _direct_possible(array, start, stop, data):
        array[start:stop] = data
        return
    outer = tuple(int(s) for s in array.metadata.chunk_grid.chunk_shape)  # the shards
    for coords in _shard_coords(array.shape, outer, start, stop):
        _write_shard(array, outer, coords, start, data)


def _sharding(array: zarr.Array) -> ShardingCodec:
    return array.metadata.codecs[0]


def _direct_possible(array: zarr.Array, start: int, stop: int, data: np.ndarray) -> bool:
    """True for the uncompressed local v3 sharded layout and a region of whole shards."""
    meta = array.metadata
    if getattr(meta, "zarr_format", 2) != 3 or sys.byteorder != "little":
        return False
    if not isinstance(array.store_path.store, LocalStore) or len(meta.codecs) != 1:
        return False
    codec = meta.codecs[0]
    if not isinstance(codec, ShardingCodec) or codec.index_location.value != "end":
        return False
    if [type(c) for c in codec.codecs] != [BytesCodec] or [
            type(c) for c in codec.index_codecs] != [BytesCodec, Crc32cCodec]:
        return False
    if any(c.endian is not None and c.endian.value != "little"
           for c in (*codec.codecs, codec.index_codecs[0])):
        return False
    if data.dtype != array.dtype or data.shape != (stop - start, *array.shape[1:]):
        return False
    outer_t = int(meta.chunk_grid.chunk_shape[0])
    return start % outer_t == 0 and (stop % outer_t == 0 or stop == array.shape[0])


def _shard_coords(shape: tuple[int, ...], outer: tuple[int, ...], start: int,
                  stop: int) -> Iterator[tuple[int, ...]]:
    rows = range(start // outer[0], -(-stop // outer[0]))
    rest = [range(-(-n // s)) for n, s in zip(shape[1:], outer[1:], strict=True)]
    yield from itertools.product(rows, *rest)


def _shard_path(array: zarr.Array, coords: tuple[int, ...]) -> str:
    store: LocalStore = array.store_path.store
    key = array.metadata.encode_chunk_key(coords)
    return os.path.join(str(store.root), array.store_path.path, key)


def _take_buffer(nbytes: int) -> np.ndarray:
    """The process's page-aligned shard buffer, grown when needed (callers hold
    ``_buffer_lock``); aligned so that it can be written with ``O_DIRECT``."""
    if not _buffer or _buffer[0].nbytes < nbytes:
        raw = np.empty(nbytes + ALIGN, np.uint8)
        skip = -raw.ctypes.data % ALIGN
        _buffer[:] = [raw[skip:skip + nbytes]]
    return _buffer[0][:nbytes]


def _write_shard(array: zarr.Array, outer: tuple[int, ...], coords: tuple[int, ...],
                 start: int, data: np.ndarray) -> None:
    inner = tuple(int(c) for c in _sharding(array).chunk_shape)
    grid = tuple(o // i for o, i in zip(outer, inner, strict=True))
    itemsize = array.dtype.itemsize
    chunk_bytes = int(np.prod(inner)) * itemsize
    index = np.full((*grid, 2), EMPTY, dtype="<u8")
    origin = [c * o for c, o in zip(coords, outer, strict=True)]
    fill = array.metadata.fill_value
    with _buffer_lock:
        body = _take_buffer(int(np.prod(grid)) * chunk_bytes)
        offset = 0
        for cell in itertools.product(*(range(g) for g in grid)):
            lo = [o + c * i for o, c, i in zip(origin, cell, inner, strict=True)]
            if any(a >= n for a, n in zip(lo, array.shape, strict=True)):
                continue  # beyond the array: zarr never writes it
            hi = [min(a + i, n) for a, i, n in zip(lo, inner, array.shape, strict=True)]
            chunk = body[offset:offset + chunk_bytes].view(array.dtype).reshape(inner)
            part = tuple(slice(0, b - a) for a, b in zip(lo, hi, strict=True))
            if any(b - a < i for a, b, i in zip(lo, hi, inner, strict=True)):
                chunk[...] = fill
            src = (slice(lo[0] - start, hi[0] - start),
                   *(slice(a, b) for a, b in zip(lo[1:], hi[1:], strict=True)))
            np.copyto(chunk[part], data[src])
            index[cell] = (offset, chunk_bytes)
            offset += chunk_bytes
        _replace(_shard_path(array, coords), body[:offset], index)


def _replace(path: str, body: np.ndarray, index: np.ndarray) -> None:
    """Write body + index + CRC-32C(index) to a temporary file, then rename it over path."""
    raw = index.tobytes()
    tail = raw + np.uint32(google_crc32c.value(raw)).astype("<u4").tobytes()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = f"{path}.{uuid.uuid4().hex[:12]}.partial"
    try:
        done = _write_direct(temp, body)
        with open(temp, "ab" if done else "wb") as out:
            out.write(memoryview(body).cast("B")[done:])  # what O_DIRECT could not take
            out.write(tail)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def _write_direct(path: str, body: np.ndarray) -> int:
    """Write the longest ``ALIGN``-multiple prefix of ``body`` to a new file with
    ``O_DIRECT``; return its length (0 where that is not possible: nothing written).

    The shard's last partial page and its index are appended normally by the caller
    (a shard's body is rarely a whole number of pages: edge chunks are padded).

    Written around the page cache: a corrected movie is far larger than memory and is read
    back once, by the CNMF stage, so caching it only evicts what the machine still needs,
    and filling new page-cache pages costs as much CPU as the registration on some virtual
    machines (docs/motion.md). Filesystems without O_DIRECT (tmpfs) refuse it (EINVAL):
    the caller then writes normally.
    """
    flag = getattr(os, "O_DIRECT", 0)
    size = body.nbytes - body.nbytes % ALIGN
    if not flag or not size or body.ctypes.data % ALIGN:
        return 0
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | flag, 0o666)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return 0
        raise
    try:
        view, done = memoryview(body).cast("B")[:size], 0
        while done < size:
            done += os.write(fd, view[done:done + (1 << 30)])
    except OSError as exc:
        os.close(fd)
        os.unlink(path)
        if exc.errno == errno.EINVAL:  # a filesystem that accepts the flag, not the write
            return 0
        raise
    os.close(fd)
    return size
