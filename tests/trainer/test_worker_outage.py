"""A short registry outage ends neither the worker nor its job, and the job trains once."""

from __future__ import annotations

import socket
import threading
import time

from partsbin import Registry
from partsbin.trainer.worker import Worker
from tests.trainer.test_worker import tiny_spec


class FlakyProxy:
    """A loopback TCP proxy to the registry that can drop every connection for a while
    (the network going away and coming back), or swallow the answer to one request
    after the registry has acted on it (a reply lost on the way back)."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.up = threading.Event()
        self.up.set()
        self.open: list[socket.socket] = []
        self.swallow: bytes | None = None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()  # refused while the outage lasts
                continue
            upstream = socket.create_connection(self.target)
            self.open += [client, upstream]
            lost = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, lost), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client, lost), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, lost: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                if self.swallow is not None and self.swallow in data:
                    self.swallow = None
                    lost.set()
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    @staticmethod
    def _answers(upstream: socket.socket, client: socket.socket, lost: threading.Event) -> None:
        try:
            while data := upstream.recv(65536):
                if lost.is_set():
                    break  # the registry answered; the answer never arrives
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def outage(self, seconds: float) -> None:
        self.up.clear()
        _close(*self.open)
        self.open.clear()
        time.sleep(seconds)
        self.up.set()

    def close(self) -> None:
        self.listener.close()
        _close(*self.open)


def _close(*sockets: socket.socket) -> None:
    for s in sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def test_worker_rides_out_a_registry_outage(live, client_for):
    admin = client_for(live, live.token("admin"))
    # Long enough (a few seconds) that the outage starts while it trains, even when a
    # loaded machine delays the first heartbeat.
    job = admin.jobs.submit(tiny_spec("blip", settings={"steps": 1000, "batch_size": 16, "threads": 1}))
    proxy = FlakyProxy(live.url)
    try:
        through_proxy = Registry(url=proxy.url, token=live.token("publish", ["jobs"]))
        worker = Worker(through_proxy, name="w", lease_seconds=6, poll_seconds=0.2)
        thread = threading.Thread(target=worker.run, kwargs={"max_jobs": 1})
        thread.start()
        deadline = time.monotonic() + 60
        while not (admin.jobs.get(job["id"])["progress"] or {}).get("step"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # The answer to the worker's complete is lost once: it asks again, and the
        # registry (which had already finished the job) answers the same.
        proxy.swallow = b"/complete"
        proxy.outage(1.5)  # heartbeats fail meanwhile, and are retried within the lease
        during = admin.jobs.get(job["id"])
        assert thread.is_alive() and during["status"] == "running", during
        thread.join(120)
        assert not thread.is_alive(), "the worker finished its job and stopped"
    finally:
        proxy.close()
        through_proxy.close()
    done = admin.jobs.get(job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 1, done
    assert all(ref.endswith("@1") for ref in done["result_refs"])
