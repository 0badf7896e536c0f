"""A file writer that hashes with sha256 and writes on worker threads.

Receiving bytes (HTTP parsing, in Python), hashing them and writing them (both in C,
without the GIL) then overlap instead of taking turns: the content-addressed
transfers of the registry and the client spend their time in exactly these steps.
Hashing and writing get a thread each, so neither waits for the other.

With ``durable=True`` the file is on disk when :meth:`HashingWriter.close` returns.
The writer asks the kernel to start writing back each few MiB as soon as they are
written (as PostgreSQL's ``*_flush_after`` settings do), so the final ``fsync`` finds
little left to do instead of flushing the whole file after the last byte arrives.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["HashingWriter", "start_writeback"]

_STOP = object()
Chunk = bytes | memoryview


def _sync_file_range() -> Callable[[int, int, int], None] | None:
    # sync_file_range(2) is Linux-only and not in the os module; PostgreSQL uses it for
    # the same purpose (pg_flush_data). Elsewhere the final fsync does all the work.
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    write = 2  # SYNC_FILE_RANGE_WRITE: start writeback of dirty pages, do not wait

    def start(fd: int, offset: int, nbytes: int) -> None:
        fn(fd, offset, nbytes, write)  # advisory: an error only means the fsync does more

    return start


_START_WRITEBACK = _sync_file_range()


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Ask the kernel to begin writing ``nbytes`` at ``offset`` to disk, without waiting."""
    if _START_WRITEBACK is not None:
        _START_WRITEBACK(fd, offset, nbytes)


class _Worker:
    """Applies ``fn`` to each queued batch on its own thread; remembers the first error.

    At most ``max_pending`` batches wait for it: a handoff takes one of its slots, which
    the thread gives back when the batch is done, so a slow disk slows the sender
    rather than filling memory, and a sender that must not block can test for a slot.
    """

    def __init__(self, fn: Callable[[Sequence[Chunk]], object], name: str, max_pending: int) -> None:
        self.fn = fn
        self.queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.slots = threading.BoundedSemaphore(max_pending)
        self.error: BaseException | None = None
        self.cancelled = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (batch := self.queue.get()) is not _STOP:
            try:
                if self.error is None and not self.cancelled:
                    self.fn(batch)  # type: ignore[arg-type]
            except BaseException as exc:  # noqa: BLE001 — re-raised in the caller's thread
                self.error = exc
            finally:
                self.slots.release()

    def stop(self) -> None:
        self.queue.put(_STOP)
        self.thread.join()


class _FileSink:
    """Writes batches with one ``writev`` each and starts their writeback when durable."""

    WRITEBACK_BYTES = 8 << 20

    def __init__(self, path: Path, durable: bool) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
        self.durable = durable
        self.written = 0
        self.flushed = 0

    def write(self, batch: Sequence[Chunk]) -> None:
        views = [memoryview(c) for c in batch]
        while views:
            n = os.writev(self.fd, views)
            self.written += n
            # Short writes are legal; drop what went out and retry the rest.
            while views and n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            if views and n:
                views[0] = views[0][n:]
        if self.durable and self.written - self.flushed >= self.WRITEBACK_BYTES:
            start_writeback(self.fd, self.flushed, self.written - self.flushed)
            self.flushed = self.written

    def finish(self) -> None:
        if self.durable:
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class HashingWriter:
    """``write()`` queues a chunk; ``close()`` waits for the workers and returns the hex digest.

    The queues are bounded (see ``_Worker``), so a slow disk slows the sender rather
    than filling memory.
    Chunks must not be mutated after ``write()`` (bytes, or views of bytes, are fine).
    """

    # Chunks are handed over in batches of about this many bytes: one queue handoff per
    # 64 KiB socket read costs more than the hashing it moves off the thread.
    BATCH_BYTES = 1 << 20

    def __init__(self, path: Path | str, max_pending: int = 16, *, durable: bool = False) -> None:
        self.path = Path(path)
        self.size = 0
        self._batch: list[Chunk] = []
        self._batch_bytes = 0
        self._sink = _FileSink(self.path, durable)
        self._hasher = hashlib.sha256()
        update = self._hasher.update

        def hash_batch(batch: Sequence[Chunk]) -> None:
            for chunk in batch:
                update(chunk)

        self._workers = (
            _Worker(hash_batch, "partsbin-sha256", max_pending),
            _Worker(self._sink.write, "partsbin-write", max_pending),
        )
        self._digest: str | None = None

    def _raise(self) -> None:
        for w in self._workers:
            if w.error is not None:
                raise w.error

    def write(self, chunk: Chunk, *, block: bool = True) -> None:
        """Queue a chunk. With ``block=False`` this never waits: when the threads are
        behind, the batch stays here (see :attr:`backlogged`) until :meth:`drain`."""
        self.size += len(chunk)
        self._batch.append(chunk)
        self._batch_bytes += len(chunk)
        if self._batch_bytes >= self.BATCH_BYTES:
            self._flush(block)

    @property
    def backlogged(self) -> bool:
        """A full batch is waiting for the threads: call :meth:`drain` (from a worker
        thread, in async code) before writing much more."""
        return self._batch_bytes >= self.BATCH_BYTES

    def drain(self) -> None:
        """Hand the waiting batch over, blocking until both threads have room for it."""
        self._flush(True)

    def _flush(self, block: bool = True) -> bool:
        self._raise()
        if not self._batch:
            return True
        taken: list[_Worker] = []
        for w in self._workers:
            if not w.slots.acquire(blocking=block):
                for t in taken:
                    t.slots.release()
                return False
            taken.append(w)
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        for w in self._workers:
            w.queue.put(batch)
        return True

    def close(self) -> str:
        """Wait for hashing and writing (and, when durable, the fsync); return the hex digest.

        This blocks: from async code, call it in a worker thread."""
        if self._digest is None:
            self._flush()
            for w in self._workers:
                w.stop()
            self._raise()
            try:
                self._sink.finish()
            finally:
                self._sink.close()
            self._digest = self._hasher.hexdigest()
        return self._digest

    def abort(self) -> None:
        """Stop and delete the partial file (batches still queued are dropped)."""
        for w in self._workers:
            w.cancelled = True
        for w in self._workers:
            if w.thread.is_alive():
                w.stop()
        self._sink.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
