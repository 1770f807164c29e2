"""Small HTTP pieces shared by the local servers (the API gateway and the AWS endpoint)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["HttpResponse", "LocalHttpService", "TrackingHTTPServer"]

log = logging.getLogger(__name__)


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


class TrackingHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so a stop can close them and join their threads."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    thread_name = "sklambda-http-conn"

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=self.thread_name,
            daemon=True,
        )
        with self._lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._connections.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self, timeout: float) -> None:
        with self._lock:
            connections = dict(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in connections.values():
            thread.join(max(deadline - time.monotonic(), 0))


class LocalHttpService:
    """A TrackingHTTPServer served on its own thread: start, port/url, stop accepting, close.

    Subclasses build their server in ``_make_server`` and call ``_serve()`` from ``start``.
    """

    thread_name = "sklambda-http"

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self._requested_port = port
        self._server: TrackingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _make_server(self) -> TrackingHTTPServer:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _serve(self) -> None:
        self._server = self._make_server()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name=self.thread_name
        )
        self._thread.start()

    def stop_accepting(self) -> None:
        """Stop accepting new connections (in-flight requests carry on)."""
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, close open connections, wait for their threads, release the port. Idempotent."""
        self.stop_accepting()
        if self._server is not None:
            self._server.close_connections(timeout)
            self._server.server_close()
            self._server = None
