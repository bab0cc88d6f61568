"""Sending a run of the history to an OpenTelemetry backend: ``choo history export --otlp``.

The run and its events are read through the daemon's HTTP API, as for a file
export (``choo.export``), then mapped to spans and sent by
``protocol.otlp.send_run`` (docs/otlp.md). What the command leaves out, the
standard variables give: the endpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
then OTEL_EXPORTER_OTLP_ENDPOINT) and the timeout (…_TRACES_TIMEOUT, then
OTEL_EXPORTER_OTLP_TIMEOUT, in milliseconds); the exporter itself adds
OTEL_EXPORTER_OTLP_[TRACES_]HEADERS, _CERTIFICATE and _COMPRESSION.

    OtlpExportError   no endpoint, a header or timeout that cannot be used, or
                      the backend did not take the run
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from choo.api import HistoryAPI
from choo.errors import ChooError
from choo.export import recorded_run
from choo.history import iter_events
from protocol.otlp import OtlpError, send_run, trace_id, traces_url

ENV_TRACES_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_TRACES_TIMEOUT: Final = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
ENV_TIMEOUT: Final = "OTEL_EXPORTER_OTLP_TIMEOUT"
DEFAULT_TIMEOUT_S: Final = 10.0  # the OTLP specification's default (10,000 ms)


class OtlpExportError(ChooError):
    """A run could not be sent to an OTLP endpoint; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    """Where and how a run is sent."""

    url: str  # the traces URL the spans are posted to
    source: str  # where the endpoint came from: "--otlp" or a variable's name
    headers: dict[str, str]
    timeout: float  # seconds


def target(url: str | None, header_args: Sequence[str], environ: Mapping[str, str]) -> Target:
    """The target of an export: ``url`` (a base URL or a /v1/traces URL), else
    the environment's endpoint; headers from ``K=V`` arguments."""
    source = "--otlp"
    if not url:
        source = next((n for n in (ENV_TRACES_ENDPOINT, ENV_ENDPOINT) if environ.get(n)), "")
        if not source:
            raise OtlpExportError(
                f"--otlp env, but neither {ENV_TRACES_ENDPOINT} nor {ENV_ENDPOINT} is set: "
                "set one, or give the endpoint with --otlp URL (e.g. http://localhost:6006 "
                "for Phoenix, http://localhost:4318 for a collector)"
            )
        url = environ[source]
    url = url.strip()
    if not url.startswith(("http://", "https://")):
        raise OtlpExportError(
            f"{source} {url!r}: the OTLP endpoint must be an http:// or https:// URL, "
            "e.g. http://localhost:6006"
        )
    headers = dict(parse_header(h) for h in header_args)
    return Target(traces_url(url), source, headers, env_timeout(environ))


def parse_header(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise OtlpExportError(
            f"--header {text!r}: must be KEY=VALUE, e.g. --header 'authorization=Bearer TOKEN'"
        )
    return key.strip(), value.strip()


def env_timeout(environ: Mapping[str, str]) -> float:
    """The export timeout in seconds: the variables give milliseconds, as the
    OTLP exporter specification says."""
    for name in (ENV_TRACES_TIMEOUT, ENV_TIMEOUT):
        raw = environ.get(name, "").strip()
        if not raw:
            continue
        try:
            millis = float(raw)
        except ValueError:
            millis = -1.0
        if not millis > 0:
            raise OtlpExportError(
                f"{name}={raw!r}: must be a positive number of milliseconds, e.g. 10000"
            )
        return millis / 1000
    return DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class OtlpSent:
    run_id: str
    url: str
    trace_id: str  # 32 hex digits, as backends show it
    events: int
    spans: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "url": self.url,
            "trace_id": self.trace_id,
            "events": self.events,
            "spans": self.spans,
        }


def read_run(api: HistoryAPI, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run (RunDetail) and its events up to its last seq, as an export reads them."""
    run = recorded_run(api, run_id)
    return run, list(iter_events(api, run["id"], up_to=run["last_seq"]))


def send(run: dict[str, Any], events: list[dict[str, Any]], to: Target) -> OtlpSent:
    """Send the run as one trace (blocking); OtlpExportError if the backend did not take it."""
    try:
        spans = send_run(run, events, endpoint=to.url, headers=to.headers, timeout=to.timeout)
    except OtlpError as exc:
        raise OtlpExportError(
            f"{exc}. Check that the backend runs and takes OTLP/HTTP there (Phoenix: its "
            "port, e.g. http://localhost:6006; a collector: port 4318), and any --header "
            "it needs"
        ) from None
    return OtlpSent(run["id"], to.url, f"{trace_id(run['id']):032x}", len(events), spans)
