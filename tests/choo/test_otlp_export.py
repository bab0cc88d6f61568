"""``choo history export --otlp``: where it sends (the URL, or the standard
OTEL_EXPORTER_OTLP_* variables), its option errors, and what it says when the
backend is not there, through the installed executable and a real daemon.
(The round trip through a real backend: tests/otlp/test_phoenix.py.)"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from choo.otlp_export import OtlpExportError, target
from protocol.home import Home
from tests.choo.seed import seed, simple_run
from tests.choo.support import choo_env, run_choo


def test_the_url_or_the_traces_variable_or_the_base_variable_gives_the_endpoint() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318/",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/v1/traces",
    }
    assert target("http://given:6006", [], env).url == "http://given:6006/v1/traces"
    assert target(None, [], env).url == "http://traces:4318/v1/traces"
    chosen = target(None, [], {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318/"})
    assert (chosen.url, chosen.source) == (
        "http://base:4318/v1/traces",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    )


def test_headers_and_the_timeout_in_milliseconds() -> None:
    env = {"OTEL_EXPORTER_OTLP_TIMEOUT": "2500", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": ""}
    given = target("http://h", ["authorization=Bearer a=b", " x-k = v "], env)
    assert given.headers == {"authorization": "Bearer a=b", "x-k": "v"}
    assert given.timeout == 2.5
    assert target("http://h", [], {}).timeout == 10.0
    with pytest.raises(OtlpExportError, match="--header 'novalue': must be KEY=VALUE"):
        target("http://h", ["novalue"], {})
    with pytest.raises(OtlpExportError, match="OTEL_EXPORTER_OTLP_TIMEOUT='soon'"):
        target("http://h", [], {"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"})
    with pytest.raises(OtlpExportError, match="must be an http:// or https:// URL"):
        target("localhost:4318", [], {})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def export(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    plain = {k: v for k, v in choo_env(**env).items() if k not in _UNSET or k in env}
    return run_choo("history", "export", *args, cwd=Path.cwd(), env=plain)


_UNSET = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}


def test_option_errors_say_what_to_give(daemon_process: Home) -> None:
    no_env = export("run_x", "--otlp", "env")
    assert no_env.returncode == 1
    assert "neither OTEL_EXPORTER_OTLP_TRACES_ENDPOINT nor OTEL_EXPORTER_OTLP_ENDPOINT" in (
        no_env.stderr
    )
    both = export("run_x", "--otlp", "http://h", "-o", "f.ndjson")
    assert both.returncode == 2 and "not both" in both.stderr
    stray = export("run_x", "--header", "a=b")
    assert stray.returncode == 2 and "go with --otlp URL" in stray.stderr


def test_a_backend_that_is_not_there_is_named_with_a_next_step(
    daemon_process: Home, tmp_path: Path
) -> None:
    seed(daemon_process, simple_run("run_otlp1", str(tmp_path)))
    port = closed_port()
    result = export(
        "run_otlp1", "--otlp", "env", OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}"
    )
    assert result.returncode == 1
    assert "sending run run_otlp1 (" in result.stderr
    assert f"to http://127.0.0.1:{port}/v1/traces: connection refused" in result.stderr
    assert "Check that the backend runs" in result.stderr
    unknown = export("run_nope", "--otlp", "http://127.0.0.1:1")
    assert unknown.returncode == 1 and "run_nope" in unknown.stderr
