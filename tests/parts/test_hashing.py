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


def test_write_without_blocking_while_the_threads_are_behind(tmp_path):
    """The registry hands chunks over from its event loop: when the disk is slow it must
    not wait there, but learn that a batch is waiting and drain it from a thread."""
    import threading
    import time

    # A pipe nobody reads is a disk that has stalled: the writer thread blocks on it.
    slow = tmp_path / "slow"
    os.mkfifo(slow)
    reader = os.open(slow, os.O_RDONLY | os.O_NONBLOCK)
    writer = HashingWriter(slow, max_pending=1)
    chunk = b"x" * HashingWriter.BATCH_BYTES
    started = time.monotonic()
    for _ in range(4):
        writer.write(chunk, block=False)
    assert time.monotonic() - started < 1, "write(block=False) waited for the stalled disk"
    assert writer.backlogged
    drained = threading.Thread(target=writer.drain)
    drained.start()
    time.sleep(0.2)
    assert drained.is_alive(), "drain() waits for room, in its own thread"
    os.set_blocking(reader, True)
    received = bytearray()

    def read_all() -> None:
        while data := os.read(reader, 1 << 20):
            received.extend(data)

    consumer = threading.Thread(target=read_all)
    consumer.start()
    drained.join(10)
    assert writer.close() == hashlib.sha256(chunk * 4).hexdigest()
    consumer.join(10)
    os.close(reader)
    assert bytes(received) == chunk * 4
