"""A run as an OpenTelemetry trace, sent over OTLP/HTTP (docs/otlp.md).

``map_run`` turns a run (a RunDetail dict, docs/API.md §2) and its events
(Event dicts, in seq order) into plain ``Span`` records: the run is the
root span, each unit a child, each task attempt an ``invoke_agent`` span,
each tool call and validation command an ``execute_tool`` span; stops and
resumes are span events of the root. IDs are derived from the run ID (the
trace) and the seq of the event that starts a span, so exporting a run
again sends the very same spans.

``send_run`` converts them to the OpenTelemetry SDK's spans and posts them
with its OTLP/HTTP (protobuf) exporter. The SDK is imported there, inside
the function: nothing of OpenTelemetry is loaded unless a run is sent.

    OtlpError   sending failed; names the endpoint and what went wrong
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

TRACES_PATH: Final = "/v1/traces"
SCOPE: Final = "choo"  # the instrumentation scope named in every export
# Spans per request: a run with many tool calls stays well under the request
# size backends accept (the exporter's own limit is 64 MiB).
BATCH: Final = 1000
AttrValue = str | bool | int | float

# Span kinds of OpenInference (Phoenix groups and prices spans by them).
CHAIN: Final = "CHAIN"
AGENT: Final = "AGENT"
TOOL: Final = "TOOL"
LLM: Final = "LLM"
_TOKENS: Final = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")

_PASSED: Final = frozenset({"passed", "passed_after_retry"})
_ATTEMPT_END: Final = frozenset({"task.retry", "task.completed", "task.failed"})
_UNIT_STATUS: Final = {
    "unit.queued": "queued",
    "unit.started": "running",
    "unit.completed": "completed",
    "unit.failed": "failed",
    "unit.blocked": "blocked",
}
_MARKERS: Final = ("run.stopped", "run.resumed")
# One export at a time listens to the exporter's log (see _exporter_log).
_SENDING = threading.Lock()


class OtlpError(Exception):
    """A run could not be sent; the message names the endpoint and the cause."""


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: dict[str, AttrValue]


@dataclass(slots=True)
class Span:
    """One span as choo derives it, before the SDK sees it."""

    span_id: int
    parent_id: int | None
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, AttrValue]
    events: list[SpanEvent] = field(default_factory=list)
    error: str | None = None  # the span's status is ERROR with this description

    def extend(self, time_ns: int) -> None:
        self.end_ns = max(self.end_ns, time_ns)


# -- IDs and times -----------------------------------------------------------------


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def trace_id(run_id: str) -> int:
    """The trace ID of a run: 128 bits of SHA-256 of ``choo.trace:<run ID>``."""
    return int.from_bytes(_digest(f"choo.trace:{run_id}")[:16], "big") or 1


def span_id(run_id: str, seq: int, role: str = "") -> int:
    """The span ID of the span the event ``seq`` starts (0: the run's root span):
    64 bits of SHA-256 of ``choo.span:<run ID>:<seq>``. An event that starts a
    second span, standing in for a missing one (an attempt whose
    ``task.claude.invoke`` or a validation whose ``task.backpressure`` is
    not there), gives that one ``choo.span:<run ID>:<seq>:<role>``."""
    key = f"choo.span:{run_id}:{seq}" + (f":{role}" if role else "")
    return int.from_bytes(_digest(key)[:8], "big") or 1


def time_ns(text: str) -> int:
    """An event time (UTC ISO 8601, protocol/times.py) in ns since the epoch."""
    moment = datetime.fromisoformat(text)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


# -- the mapping -------------------------------------------------------------------


def _attrs(**values: Any) -> dict[str, AttrValue]:
    """Attributes with the None values left out (OTLP has no null)."""
    return {k: v for k, v in values.items() if v is not None}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class _Builder:
    run: Mapping[str, Any]
    spans: list[Span] = field(default_factory=list)
    units: dict[str, Span] = field(default_factory=dict)
    attempts: dict[tuple[str, int], Span] = field(default_factory=dict)
    validations: dict[tuple[str, int], Span] = field(default_factory=dict)
    titles: dict[tuple[str, int], str] = field(default_factory=dict)
    last_ns: dict[int, int] = field(default_factory=dict)  # attempt span -> latest event

    @property
    def run_id(self) -> str:
        return str(self.run["id"])

    def add(
        self,
        seq: int,
        parent: Span | None,
        name: str,
        at: int,
        attrs: Mapping[str, Any],
        *,
        role: str = "",
    ) -> Span:
        span = Span(
            span_id(self.run_id, seq, role),
            parent.span_id if parent else None,
            name,
            at,
            at,
            _attrs(**{"choo.run_id": self.run_id}, **attrs),
        )
        self.spans.append(span)
        return span

    def root(self) -> Span:
        run = self.run
        span = self.add(
            0,
            None,
            f"choo run {self.run_id}",
            time_ns(run["started_at"]),
            {
                "openinference.span.kind": CHAIN,
                "choo.repo": run.get("repo_path"),
                "choo.run.status": run.get("status"),
                "choo.run.dry_run": run.get("dry_run"),
                "choo.run.resume_count": run.get("resume_count"),
                "choo.run.total_units": run.get("total_units"),
                "choo.run.completed_units": run.get("completed_units"),
                "choo.run.failed_units": run.get("failed_units"),
                "choo.run.blocked_units": run.get("blocked_units"),
                "choo.cost_usd": run.get("cost_usd"),
                "choo.cost_estimated": run.get("cost_estimated"),
            },
        )
        if run.get("status") == "failed":
            span.error = str(run.get("error") or "the run failed")
        return span

    def unit(self, event: Mapping[str, Any], root: Span) -> Span:
        name = str(event["unit"])
        span = self.units.get(name)
        if span is None:
            span = self.add(
                event["seq"],
                root,
                f"unit {name}",
                time_ns(event["time"]),
                {"openinference.span.kind": CHAIN, "choo.unit": name},
            )
            self.units[name] = span
        return span

    def attempt(self, event: Mapping[str, Any], unit: Span, role: str = "") -> Span:
        key = (str(event["unit"]), int(event["task"]))
        payload = event.get("payload") or {}
        provider = payload.get("provider")
        span = self.add(
            event["seq"],
            unit,
            f"invoke_agent {provider}" if provider else "invoke_agent",
            time_ns(event["time"]),
            {
                "openinference.span.kind": AGENT,
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": provider,
                "choo.unit": key[0],
                "choo.task": key[1],
                "choo.task.title": self.titles.get(key),
                "choo.attempt": _int(payload.get("attempt")),
                "choo.provider": provider,
            },
            role=role,
        )
        self.attempts[key] = span
        self.last_ns[span.span_id] = span.start_ns
        return span


def map_run(run: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[Span]:
    """The spans of a run, the root first, then in the order of the seq that starts each.

    A span ends at the latest event within it (a unit's at its last event, an
    attempt's at the retry, completion or failure that ends it); the root at
    the run's ``completed_at``, or its last event while it runs.
    """
    b = _Builder(run)
    root = b.root()
    for event in sorted(events, key=lambda e: int(e["seq"])):
        at = time_ns(event["time"])
        root.extend(at)
        if event["type"] in _MARKERS:
            root.events.append(_marker(event, at))
        if event.get("unit") is None:
            continue
        unit = b.unit(event, root)
        unit.extend(at)
        _unit_event(unit, event)
        if event.get("task") is not None:
            _task_event(b, unit, event, at)
    if run.get("completed_at") and run.get("status") != "running":
        root.extend(time_ns(run["completed_at"]))
    _close(b.spans)
    return b.spans


def _marker(event: Mapping[str, Any], at: int) -> SpanEvent:
    payload = event.get("payload") or {}
    return SpanEvent(
        str(event["type"]),
        at,
        _attrs(
            **{
                "choo.seq": event["seq"],
                "choo.reason": payload.get("reason"),
                "choo.signal": payload.get("signal"),
                "choo.by": payload.get("by"),
            }
        ),
    )


def _unit_event(unit: Span, event: Mapping[str, Any]) -> None:
    status = _UNIT_STATUS.get(str(event["type"]))
    if status is None:
        return
    unit.attributes["choo.unit.status"] = status
    payload = event.get("payload") or {}
    if status == "failed":
        unit.error = str(payload.get("reason") or event.get("error") or "the unit failed")
        if payload.get("stop_reason"):
            unit.attributes["choo.stop_reason"] = str(payload["stop_reason"])
    elif status == "blocked":
        unit.error = f"blocked by {payload.get('blocked_by')}"
    elif status in ("running", "completed"):
        unit.error = None


def _task_event(b: _Builder, unit: Span, event: Mapping[str, Any], at: int) -> None:
    key = (str(event["unit"]), int(event["task"]))
    kind = str(event["type"])
    payload = event.get("payload") or {}
    if kind == "task.started":
        b.titles[key] = str(payload.get("title") or "")
        return
    if kind == "task.claude.invoke":
        b.attempt(event, unit)
        return
    attempt = b.attempts.get(key)
    if attempt is None:
        if kind in _ATTEMPT_END or kind == "task.committed":
            return  # no attempt open: a task that never ran an agent here
        attempt = b.attempt(event, unit, "attempt")  # its invoke event is missing
    attempt.extend(at)
    if kind == "task.agent.tool":
        _tool(b, attempt, event, at)
    elif kind == "task.agent.result":
        _result(attempt, payload)
        _llm(b, attempt, event, at)
    elif kind == "task.claude.done":
        attempt.attributes.update(
            _attrs(**{"choo.agent.exit_code": _int(payload.get("exit_code"))})
        )
        if payload.get("timed_out"):
            attempt.attributes["choo.agent.timed_out"] = True
    elif kind == "task.backpressure":
        b.validations[key] = _validation(b, attempt, event, at)
    elif kind in ("task.validation.ok", "task.validation.fail"):
        span = b.validations.pop(key, None) or _validation(b, attempt, event, at, "validation")
        _validated(span, event, at)
    elif kind in _ATTEMPT_END:
        _attempt_end(attempt, kind, payload)
        del b.attempts[key]
    b.last_ns[attempt.span_id] = at


def _tool(b: _Builder, attempt: Span, event: Mapping[str, Any], at: int) -> None:
    """A tool call: choo records it once its outcome is known, so it spans from
    the attempt's previous event to this one."""
    payload = event.get("payload") or {}
    tool = str(payload.get("tool") or "tool")
    exit_code = _int(payload.get("exit_code"))
    span = b.add(
        event["seq"],
        attempt,
        f"execute_tool {tool}",
        min(b.last_ns.get(attempt.span_id, at), at),
        {
            "openinference.span.kind": TOOL,
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.call.id": payload.get("call_id"),
            "tool.name": tool,
            "choo.unit": attempt.attributes.get("choo.unit"),
            "choo.task": attempt.attributes.get("choo.task"),
            "choo.attempt": attempt.attributes.get("choo.attempt"),
            "choo.tool.target": payload.get("target"),
            "choo.tool.exit_code": exit_code,
            "choo.tool.is_error": payload.get("is_error"),
        },
    )
    span.extend(at)
    if payload.get("is_error") or (exit_code is not None and exit_code != 0):
        span.error = f"{tool} failed" + (f" (exit code {exit_code})" if exit_code else "")


def _result(attempt: Span, payload: Mapping[str, Any]) -> None:
    """What the agent reported of itself, in GenAI's names and choo's."""
    attempt.attributes.update(
        _attrs(
            **{
                "gen_ai.conversation.id": payload.get("session_id"),
                "gen_ai.request.model": payload.get("model"),
                "gen_ai.usage.input_tokens": _int(payload.get("input_tokens")),
                "gen_ai.usage.output_tokens": _int(payload.get("output_tokens")),
                "choo.usage.cache_read_tokens": _int(payload.get("cache_read_tokens")),
                "choo.usage.cache_write_tokens": _int(payload.get("cache_write_tokens")),
                "choo.cost_usd": payload.get("cost_usd"),
                "choo.cost_estimated": payload.get("cost_estimated"),
                "choo.agent.status": payload.get("status"),
                "choo.agent.turns": _int(payload.get("turns")),
                "choo.agent.tool_calls": _int(payload.get("tool_calls")),
                "session.id": payload.get("session_id"),
            }
        )
    )
    if payload.get("is_error"):
        attempt.error = f"the agent reported an error ({payload.get('status') or 'is_error'})"


def _llm(b: _Builder, attempt: Span, event: Mapping[str, Any], at: int) -> None:
    """The attempt's model usage as an OpenInference LLM span: Phoenix counts
    tokens and works out costs from LLM spans only. It carries OpenInference's
    names alone (``llm.*``), so that a backend summing GenAI usage over a
    trace counts the attempt's once."""
    payload = event.get("payload") or {}
    model = payload.get("model")
    tokens = {k: _int(payload.get(k)) or 0 for k in _TOKENS}
    if not model and not any(tokens.values()):
        return
    prompt = tokens["input_tokens"] + tokens["cache_read_tokens"] + tokens["cache_write_tokens"]
    b.add(
        event["seq"],
        attempt,
        f"llm {model}" if model else "llm",
        attempt.start_ns,
        {
            "openinference.span.kind": LLM,
            "llm.model_name": model,
            "llm.token_count.prompt": prompt,
            "llm.token_count.prompt_details.cache_read": tokens["cache_read_tokens"],
            "llm.token_count.prompt_details.cache_write": tokens["cache_write_tokens"],
            "llm.token_count.completion": tokens["output_tokens"],
            "llm.token_count.total": prompt + tokens["output_tokens"],
            "choo.unit": attempt.attributes.get("choo.unit"),
            "choo.task": attempt.attributes.get("choo.task"),
            "choo.attempt": attempt.attributes.get("choo.attempt"),
        },
        role="llm",
    ).extend(at)


def _validation(
    b: _Builder, attempt: Span, event: Mapping[str, Any], at: int, role: str = ""
) -> Span:
    payload = event.get("payload") or {}
    return b.add(
        event["seq"],
        attempt,
        "execute_tool validation",
        at,
        {
            "openinference.span.kind": TOOL,
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "validation",
            "tool.name": "validation",
            "choo.unit": attempt.attributes.get("choo.unit"),
            "choo.task": attempt.attributes.get("choo.task"),
            "choo.attempt": attempt.attributes.get("choo.attempt"),
            "choo.validation.command": payload.get("command"),
        },
        role=role,
    )


def _validated(span: Span, event: Mapping[str, Any], at: int) -> None:
    payload = event.get("payload") or {}
    span.extend(at)
    duration = _int(payload.get("duration_ms"))
    if duration is not None and span.start_ns == at:
        span.start_ns = at - duration * 1_000_000  # its start event is missing
    span.attributes.update(
        _attrs(
            **{
                "choo.validation.command": payload.get("command"),
                "choo.validation.exit_code": _int(payload.get("exit_code")),
                "choo.validation.timed_out": payload.get("timed_out") or None,
                "choo.validation.output_tail": payload.get("output_tail") or None,
            }
        )
    )
    if event["type"] == "task.validation.fail":
        span.error = f"the validation failed (exit code {payload.get('exit_code')})"


def _attempt_end(attempt: Span, kind: str, payload: Mapping[str, Any]) -> None:
    reason = payload.get("stop_reason")
    if reason is None and kind == "task.completed":
        reason = "passed"
    if reason is not None:
        attempt.attributes["choo.stop_reason"] = str(reason)
    if kind == "task.completed" or reason in _PASSED:
        attempt.error = None
    else:
        attempt.error = str(payload.get("reason") or reason or "the attempt failed")


def _close(spans: list[Span]) -> None:
    """A parent lasts at least as long as its children (children come after parents)."""
    by_id = {s.span_id: s for s in spans}
    for span in reversed(spans):
        if span.parent_id is not None:
            parent = by_id[span.parent_id]
            parent.extend(span.end_ns)
            parent.start_ns = min(parent.start_ns, span.start_ns)


# -- sending -----------------------------------------------------------------------


def traces_url(endpoint: str) -> str:
    """Where to POST: ``endpoint`` itself if it ends in /v1/traces, else that path added."""
    base = endpoint.strip()
    if base.rstrip("/").endswith(TRACES_PATH):
        return base
    return base.rstrip("/") + TRACES_PATH


def readable_spans(run: Mapping[str, Any], spans: Sequence[Span]) -> list[Any]:
    """The SDK's ReadableSpans for ``spans`` (imports opentelemetry)."""
    from opentelemetry import trace as api
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES (ours win on the same keys)
    # and OTEL_SERVICE_NAME; without one, the service is "choo".
    resource = Resource.create(
        _attrs(**{"choo.run_id": run["id"], "choo.repo": run.get("repo_path")})
    )
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "choo"}))
    scope = InstrumentationScope(SCOPE)
    trace = trace_id(str(run["id"]))
    flags = api.TraceFlags(api.TraceFlags.SAMPLED)

    def context(span: int) -> api.SpanContext:
        return api.SpanContext(trace, span, is_remote=False, trace_flags=flags)

    return [
        ReadableSpan(
            name=s.name,
            context=context(s.span_id),
            parent=context(s.parent_id) if s.parent_id is not None else None,
            resource=resource,
            attributes=s.attributes,
            events=[Event(e.name, e.attributes, e.time_ns) for e in s.events],
            kind=api.SpanKind.INTERNAL,
            status=api.Status(api.StatusCode.ERROR, s.error)
            if s.error is not None
            else api.Status(api.StatusCode.OK),
            start_time=s.start_ns,
            end_time=s.end_ns,
            instrumentation_scope=scope,
        )
        for s in spans
    ]


def send_run(
    run: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    *,
    endpoint: str,
    headers: Mapping[str, str],
    timeout: float = 10.0,
) -> int:
    """Send one run as a trace to an OTLP/HTTP endpoint; the number of spans sent.

    ``endpoint`` is a base URL (``http://host:4318``: the spans go to
    ``{endpoint}/v1/traces``) or the full traces URL. ``headers`` are added
    to the request (after any of OTEL_EXPORTER_OTLP_[TRACES_]HEADERS, which
    the exporter reads itself, as it does the _CERTIFICATE and _COMPRESSION
    variables). Blocking: call it from a thread. Raises OtlpError.
    """
    url = traces_url(endpoint)
    if not url.startswith(("http://", "https://")):
        raise OtlpError(f"OTLP endpoint {endpoint!r} is not an http:// or https:// URL")
    try:
        spans = readable_spans(run, map_run(run, events))
    except (KeyError, TypeError, ValueError) as exc:
        raise OtlpError(f"run {run.get('id')} could not be mapped to spans: {exc!r}") from None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    exporter = OTLPSpanExporter(endpoint=url, headers=dict(headers), timeout=timeout)
    try:
        for start in range(0, len(spans), BATCH):
            with _SENDING, _exporter_log() as problems:
                result = exporter.export(spans[start : start + BATCH])
            if result is not SpanExportResult.SUCCESS:
                cause = problems[-1] if problems else "the exporter gave no reason"
                sent = f" ({start} of its {len(spans)} spans were sent)" if start else ""
                raise OtlpError(f"could not send run {run['id']} to {url}: {cause}{sent}")
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]
    return len(spans)


@contextmanager
def _exporter_log() -> Iterator[list[str]]:
    """What the exporter logs while it sends: its only word on why an export
    failed. Kept from the root logger (no stray lines on a terminal)."""
    problems: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if "due to timeout, max retries" not in text:  # says nothing of the cause
                problems.append(_cause(text))

    names = ("opentelemetry.exporter.otlp.proto.http", "opentelemetry.exporter.otlp.common")
    loggers = [logging.getLogger(n) for n in names]
    handler = Keep(logging.WARNING)
    saved = [lg.propagate for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    try:
        yield problems
    finally:
        for lg, propagate in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.propagate = propagate


def _cause(text: str) -> str:
    """The exporter's log line cut to its cause, with connection refusals named."""
    if "Connection refused" in text or "NewConnectionError" in text:
        return "connection refused (is the backend running and listening there?)"
    for prefix in ("Failed to export spans batch code: ", "Transient error "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    text = text.split(" encountered while exporting", 1)[0]
    if text.startswith(("4", "5")) and ", reason: " in text:
        status, _, reason = text.partition(", reason: ")
        return f"HTTP {status} {reason}".strip()
    return text
