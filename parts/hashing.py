"""A file writer that hashes with sha256 and writes on worker threads.

Receiving bytes (HTTP parsing, in Python), hashing them and writing them (both in C,
without the GIL) then overlap instead of taking turns: the content-addressed
transfers of the registry and the client spend their time in exactly these steps.
Hashing and writing get a thread each, so neither waits for the other.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

__all__ = ["HashingWriter"]

_STOP = object()


class _Worker:
    """Applies ``fn`` to each queued chunk on its own thread; remembers the first error."""

    def __init__(self, fn: Callable[[bytes], object], name: str, max_pending: int) -> None:
        self.fn = fn
        self.queue: queue.Queue[object] = queue.Queue(max_pending)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (batch := self.queue.get()) is not _STOP:
            if self.error is None:
                try:
                    for chunk in batch:  # type: ignore[attr-defined]
                        self.fn(chunk)
                except BaseException as exc:  # noqa: BLE001 — re-raised in the caller's thread
                    self.error = exc

    def stop(self) -> None:
        self.queue.put(_STOP)
        self.thread.join()


class HashingWriter:
    """``write()`` queues a chunk; ``close()`` waits for the workers and returns the hex digest.

    The queues are bounded, so a slow disk slows the sender rather than filling memory.
    Chunks must not be mutated after ``write()`` (bytes, or views of bytes, are fine).
    """

    # Chunks are handed over in batches of about this many bytes: one queue handoff per
    # 64 KiB socket read costs more than the hashing it moves off the thread.
    BATCH_BYTES = 1 << 20

    def __init__(self, path: Path | str, max_pending: int = 16) -> None:
        self.path = Path(path)
        self.size = 0
        self._batch: list[bytes | memoryview] = []
        self._batch_bytes = 0
        self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115 — closed in close()/abort()
        self._hasher = hashlib.sha256()
        self._workers = (
            _Worker(self._hasher.update, "partsbin-sha256", max_pending),
            _Worker(self._file.write, "partsbin-write", max_pending),
        )
        self._digest: str | None = None

    def _raise(self) -> None:
        for w in self._workers:
            if w.error is not None:
                raise w.error

    def write(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        self._batch.append(chunk)
        self._batch_bytes += len(chunk)
        if self._batch_bytes >= self.BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        self._raise()
        if self._batch:
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            for w in self._workers:
                w.queue.put(batch)

    def close(self) -> str:
        if self._digest is None:
            self._flush()
            for w in self._workers:
                w.stop()
            self._file.close()
            self._raise()
            self._digest = self._hasher.hexdigest()
        return self._digest

    def abort(self) -> None:
        """Stop and delete the partial file."""
        for w in self._workers:
            if w.thread.is_alive():
                w.stop()
        self._file.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "HashingWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
