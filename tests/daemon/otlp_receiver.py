"""A minimal OTLP/HTTP backend for the outbox tests: POST /v1/traces, protobuf.

It decodes each request with OpenTelemetry's own protobuf classes and keeps
the spans' (trace ID, span ID, name); ``status`` sets the HTTP status it
answers (400 is one the exporter does not retry, so a send fails at once).
``stop``/``start`` take it away and bring it back on the same port.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.status = 200
        self.spans: list[tuple[str, str, str]] = []  # (trace id hex, span id hex, name)
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver._received(self.path, dict(self.headers), body)
                self.send_response(receiver.status if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _received(self, path: str, headers: dict[str, str], body: bytes) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        with self._lock:
            self.requests += 1
            self.headers.append({k.lower(): v for k, v in headers.items()})
            if path != "/v1/traces" or self.status != 200:
                return
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        self.spans.append((span.trace_id.hex(), span.span_id.hex(), span.name))

    def traces(self) -> set[str]:
        with self._lock:
            return {trace for trace, _, _ in self.spans}

    def spans_of(self, trace: str) -> set[tuple[str, str]]:
        """The trace's distinct (span ID, name): a span sent twice counts once."""
        with self._lock:
            return {(span, name) for t, span, name in self.spans if t == trace}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
