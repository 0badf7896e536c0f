import hashlib
import os

import pytest

from partsbin.parts.hashing import HashingWriter


@pytest.mark.parametrize("durable", [False, True])
def test_digest_and_bytes_equal_a_plain_write(tmp_path, durable):
    chunks = [os.urandom(n) for n in (1, 65536, 3 << 20, 0, 7, 9 << 20)]
    path = tmp_path / "out.bin"
    with HashingWriter(path, durable=durable) as w:
        for c in chunks:
            w.write(memoryview(c)[: len(c)])
        digest = w.close()
    data = b"".join(chunks)
    assert path.read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()
    assert w.size == len(data)


def test_abort_removes_the_partial_file(tmp_path):
    path = tmp_path / "out.bin"
    w = HashingWriter(path)
    w.write(b"x" * (2 << 20))
    w.abort()
    assert not path.exists()


def test_a_write_error_reaches_the_caller(tmp_path):
    path = tmp_path / "out.bin"
    w = HashingWriter(path)
    os.close(w._sink.fd)  # the disk "fails": every write now raises EBADF
    w._sink.fd = os.open(os.devnull, os.O_RDONLY)
    with pytest.raises(OSError):
        for _ in range(8):
            w.write(b"y" * (1 << 20))
        w.close()
    w.abort()
    assert not path.exists()
