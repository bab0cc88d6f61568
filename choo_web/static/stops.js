// Why a task attempt ended (its `stop_reason`): the one place the UI keeps
// their labels, tones and meanings. The list itself is protocol/events.py's
// STOP_REASONS; a reason not listed here is shown as it is.

import { h } from "./dom.js";

const REASONS = {
  passed: { tone: "good", label: "passed", text: "its validation passed on the first attempt" },
  passed_after_retry: { tone: "good", label: "passed after retry", text: "it passed on a later attempt" },
  agent_failed: { tone: "bad", label: "agent failed", text: "the agent exited non-zero or reported an error" },
  agent_timeout: {
    tone: "bad",
    label: "agent timed out",
    text: "the agent ran past provider.timeout and was stopped",
  },
  agent_max_turns: { tone: "warn", label: "max turns", text: "the agent stopped at its turn limit" },
  validation_failed: {
    tone: "bad",
    label: "validation failed",
    text: "the validation command exited non-zero",
  },
  validation_timeout: {
    tone: "bad",
    label: "validation timed out",
    text: "the validation command ran past backpressure.timeout",
  },
  cancelled: { tone: "neutral", label: "cancelled", text: "the run was stopped during the attempt" },
  agent_not_started: { tone: "bad", label: "agent not started", text: "the agent could not be started" },
};

/** {tone, label, text} of a stop reason ("good" | "bad" | "warn" | "neutral"). */
export function stopReason(reason) {
  return REASONS[reason] || { tone: "neutral", label: String(reason), text: String(reason) };
}

/** A badge saying why an attempt ended; a dash when it has not ended (or is unknown). */
export function stopBadge(reason) {
  if (reason === null || reason === undefined || reason === "")
    return h("span", { class: "muted", text: "—" });
  const r = stopReason(reason);
  return h("span", {
    class: `badge stop stop-${r.tone}`,
    "data-stop": reason,
    title: `${reason}: ${r.text}`,
    text: r.label,
  });
}

/** A small tag for a task that passed only after a failed validation. */
export function flakyTag(title = "passed only after a failed validation") {
  return h("span", { class: "tag tag-flaky", title, text: "flaky" });
}
