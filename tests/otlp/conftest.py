"""A real OTLP backend for the tests: Arize Phoenix, in a virtual environment of its own.

``arize-phoenix`` is about 850 MB installed, so it never goes into the
project's environment: the first test session that needs it builds
``~/.cache/choo-tests/phoenix-<version>/venv`` (override the folder with
CHOO_TEST_CACHE), under a file lock so that parallel pytest-xdist workers
build it once, and later sessions reuse it. ``phoenix`` (session-scoped)
serves it on free ports with a temporary working directory (its SQLite
database); ``Phoenix.stop()``/``start()`` take it down and bring it back
on the same ports, for tests of an exporter facing a backend that is away.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

PHOENIX_VERSION = "20.26.1"
INSTALL_TIMEOUT_S = 1800  # pip on a slow network; the usual is 1-2 minutes
READY_TIMEOUT_S = 180  # a safety net: readiness is polled, never slept for


def cache_dir() -> Path:
    root = Path(os.environ.get("CHOO_TEST_CACHE") or Path.home() / ".cache" / "choo-tests")
    return root / f"phoenix-{PHOENIX_VERSION}"


def phoenix_venv() -> Path:
    """The ``phoenix`` executable of the cached venv, built first if need be."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    venv, done = folder / "venv", folder / "venv.complete"
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other xdist worker waits here
        if not done.exists():
            shutil.rmtree(venv, ignore_errors=True)  # a build that was interrupted
            started = time.monotonic()
            _run([sys.executable, "-m", "venv", str(venv)])
            _run([str(venv / "bin" / "pip"), "install", "-q", f"arize-phoenix=={PHOENIX_VERSION}"])
            done.write_text(f"installed in {time.monotonic() - started:.0f} s\n")
    return venv / "bin" / "phoenix"


def _run(argv: list[str]) -> None:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        pytest.fail(
            f"building Phoenix's venv in {cache_dir()} failed: {' '.join(argv)} exited "
            f"{result.returncode}:\n{result.stderr[-3000:]}\n(it needs PyPI; remove the folder "
            "to start again)"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Phoenix:
    """A ``phoenix serve`` process; ``url`` is its base URL (UI, REST API and OTLP/HTTP)."""

    exe: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir.with_name(self.workdir.name + ".log")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))}
        env.update(
            PHOENIX_HOST="127.0.0.1",
            PHOENIX_PORT=str(self.port),
            PHOENIX_GRPC_PORT=str(self.grpc_port),
            PHOENIX_WORKING_DIR=str(self.workdir),
            PHOENIX_TELEMETRY_ENABLED="false",
        )
        return env

    def start(self) -> None:
        """Start it (again, on the same ports and database) and wait until it answers."""
        assert self.proc is None, "Phoenix is running already"
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.exe), "serve"],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"phoenix serve exited {self.proc.returncode}: {self._log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)  # polling interval, not a wait for a duration
        pytest.fail(f"phoenix serve did not answer in {READY_TIMEOUT_S} s: {self._log_tail()}")

    def stop(self) -> None:
        """Stop it (the database stays for the next start)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    # -- reading back through Phoenix's REST API ----------------------------------

    def spans(self, trace_id: str, project: str = "default") -> list[dict[str, Any]]:
        """Every span of a trace as Phoenix serves it (OTLP JSON shape), flattened
        attributes in ``attrs``."""
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"trace_id": trace_id, "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            response = httpx.get(
                f"{self.url}/v1/projects/{project}/spans/otlpv1", params=params, timeout=30
            )
            if response.status_code == 404:
                return []  # no project yet: nothing arrived
            response.raise_for_status()
            body = response.json()
            for span in body["data"]:
                span["attrs"] = {a["key"]: _value(a["value"]) for a in span["attributes"]}
                found.append(span)
            cursor = body.get("next_cursor")
            if not cursor:
                return found

    def wait_spans(
        self, trace_id: str, count: int, project: str = "default"
    ) -> list[dict[str, Any]]:
        """The trace's spans once Phoenix has stored ``count`` of them (it stores in
        batches, after the export's response)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            spans = self.spans(trace_id, project)
            if len(spans) >= count or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)


def _value(value: dict[str, Any]) -> Any:
    return next((v for v in value.values() if v is not None), None)


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    """Phoenix serving on free ports for the whole session (stop/start it as needed:
    it must be running again when a test ends)."""
    server = Phoenix(phoenix_venv(), tmp_path_factory.mktemp("phoenix") / "work")
    server.start()
    try:
        yield server
    finally:
        server.stop()
