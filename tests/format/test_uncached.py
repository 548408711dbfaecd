"""Reading a file once past the page cache (``O_DIRECT``): same bytes as ``open``, any size, any filesystem."""

from __future__ import annotations

import errno
import gzip
import hashlib
import os

import numpy as np
import pytest

from mmformat import uncached
from mmformat.hashing import sha256_file
from mmformat.uncached import BLOCK_BYTES, open_uncached
from mmprep.sources.scan import open_gzip_once


def _payload(path, size: int) -> bytes:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, BLOCK_BYTES - 1, BLOCK_BYTES, 3 * BLOCK_BYTES + 12345])
def test_uncached_reads_give_the_bytes_of_open_at_every_size(tmp_path, size):
    path = tmp_path / "data.bin"
    data = _payload(path, size)
    with open_uncached(path, min_bytes=0) as f:  # direct I/O wherever this filesystem allows it
        assert f.read() == data
    with open_uncached(path, min_bytes=0) as f:
        pieces = [bytes(block) for block in f.blocks()]
    assert b"".join(pieces) == data
    assert all(len(p) == BLOCK_BYTES for p in pieces[:-1])
    with open_uncached(path, min_bytes=0) as f:  # odd read sizes across block ends
        got = bytearray()
        while chunk := f.read(1_000_003):
            got += chunk
    assert bytes(got) == data
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_small_files_are_read_the_ordinary_way_and_large_ones_directly_where_supported(tmp_path):
    path = tmp_path / "data.bin"
    _payload(path, 10_000)
    with open_uncached(path) as f:
        assert not f.direct
    probe_fd = None
    try:
        probe_fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
    except OSError:
        pass
    finally:
        if probe_fd is not None:
            os.close(probe_fd)
    with open_uncached(path, min_bytes=0) as f:
        assert f.direct == (probe_fd is not None and hasattr(os, "O_DIRECT"))


def test_a_filesystem_refusing_direct_io_is_read_the_ordinary_way(tmp_path, monkeypatch):
    path = tmp_path / "data.bin"
    data = _payload(path, 2 * BLOCK_BYTES + 7)
    real_open = os.open

    def refuse_direct(p, flags, *args):
        if flags & uncached._O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(p, flags, *args)

    monkeypatch.setattr(uncached, "_O_DIRECT", getattr(os, "O_DIRECT", 0x4000))
    monkeypatch.setattr(os, "open", refuse_direct)
    with open_uncached(path, min_bytes=0) as f:
        assert not f.direct
        assert f.read() == data


def test_a_read_refused_after_a_direct_open_goes_on_the_ordinary_way_from_the_same_offset(
    tmp_path, monkeypatch
):
    path = tmp_path / "data.bin"
    data = _payload(path, 3 * BLOCK_BYTES + 99)
    real_readv = os.readv
    calls = []

    def refuse_second(fd, buffers):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_readv(fd, buffers)

    monkeypatch.setattr(os, "readv", refuse_second)
    with open_uncached(path, min_bytes=0) as f:
        f.direct = True  # as if the open had been direct (the refusal is only honoured then)
        assert f.read() == data
        assert not f.direct


def test_a_read_error_reaches_the_caller_and_close_stops_the_reading_thread(tmp_path, monkeypatch):
    path = tmp_path / "data.bin"
    _payload(path, 4 * BLOCK_BYTES)

    def broken(fd, buffers):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "readv", broken)
    f = open_uncached(path, min_bytes=0)
    with pytest.raises(OSError, match="Input/output error"):
        f.read(10)
    f.close()
    assert not f._thread.is_alive()
    monkeypatch.undo()
    early = open_uncached(path, min_bytes=0)
    early.read(10)  # the thread has read ahead and waits for a free buffer
    early.close()
    assert not early._thread.is_alive()


def test_gzip_inflated_through_the_uncached_reader_equals_gzip_open(tmp_path):
    path = tmp_path / "data.json.gz"
    lines = b"".join(b'{"n": %d}\n' % i for i in range(300_000))
    path.write_bytes(gzip.compress(lines))
    with open_gzip_once(path) as stream:
        assert stream.read() == lines


def test_recorded_digests_are_those_of_files_read_to_the_end_and_unchanged(tmp_path):
    whole, partial, changed = (tmp_path / n for n in ("whole.bin", "partial.bin", "changed.bin"))
    data = _payload(whole, 2 * BLOCK_BYTES + 99)
    # larger than the reader's ring (the block being read and two ahead), so neither can be read to its end
    # by the read-ahead thread before the test acts
    _payload(partial, 10 * BLOCK_BYTES)
    _payload(changed, 10 * BLOCK_BYTES + 5)
    with uncached.record_digests() as digests:
        with open_uncached(whole, min_bytes=0) as f:
            assert f.read() == data
        with open_uncached(partial, min_bytes=0) as f:
            f.read(10)  # closed before its end: no digest
        with open_uncached(changed, min_bytes=0) as f:
            f.read(10)
            with open(changed, "ab") as g:  # grows while it is read
                g.write(b"more")
            f.read()
    assert digests == {uncached.file_key(whole.stat()): hashlib.sha256(data).hexdigest()}
    with open_uncached(whole, min_bytes=0) as f:  # outside the context nothing is hashed or recorded
        f.read()
        with pytest.raises(ValueError, match="no digest"):
            f.hexdigest()
    assert len(digests) == 1
