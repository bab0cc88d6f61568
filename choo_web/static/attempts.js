// One task's attempts side by side, in a dialog over the run view: why each
// ended, how long its agent and its validation took, the tokens and cost it
// reported, its tool calls (tool, target, outcome), its validation output
// and, in a run isolated in git worktrees, the commits it made (SHA,
// subject, files, lines added and removed). GET /api/history/runs/{id}/tasks
// and /git, with ?unit=U&task=N; the URL's `task` key says which task is
// open (state.js), so the dialog can be linked.

import { getJSON } from "./api.js";
import { gitRequest, taskRequest } from "./boot.js";
import { h, put } from "./dom.js";
import { count, dateTime, duration, plural, tokens, usd, usdTitle } from "./format.js";
import { flakyTag, stopBadge } from "./stops.js";
import { statusBadge } from "./widgets.js";

const known = (v) => v !== null && v !== undefined;

/** "✓", "✗ exit 2", "✗ error", or "—" (no outcome in the stream). */
export function toolOutcome(call) {
  const failed = { tone: "bad", text: `✗ exit ${call.exit_code}` };
  if (call.is_error) return known(call.exit_code) ? failed : { tone: "bad", text: "✗ error" };
  if (known(call.exit_code)) return call.exit_code === 0 ? { tone: "good", text: "✓" } : failed;
  if (call.is_error === false) return { tone: "good", text: "✓" };
  return { tone: "none", text: "—" };
}

function field(label, value, title = null, name = null) {
  return [
    h("dt", { text: label }),
    h("dd", { title, "data-field": name || label, text: value }),
  ];
}

function tokenLine(a) {
  if (!known(a.input_tokens) && !known(a.output_tokens)) return "—";
  return `${tokens(a.input_tokens)} in / ${tokens(a.output_tokens)} out`;
}

function exactTokens(a) {
  return known(a.input_tokens) ? `${count(a.input_tokens)} in, ${count(a.output_tokens ?? 0)} out` : null;
}

function cacheLine(a) {
  if (!known(a.cache_read_tokens)) return "—";
  return `${tokens(a.cache_read_tokens)} read / ${tokens(a.cache_write_tokens)} written`;
}

function commitItem(c) {
  const files = c.files || [];
  return h(
    "li",
    { class: "commit", "data-sha": c.sha },
    h(
      "div",
      { class: "commit-line" },
      h("code", { class: "commit-sha", title: c.sha, text: c.sha.slice(0, 7) }),
      h("span", { class: "commit-subject", title: c.subject ?? "", text: c.subject ?? "" }),
      c.author === "agent" ? h("span", { class: "tag commit-author", title: "a commit the agent made itself", text: "agent" }) : null,
      h(
        "span",
        { class: "commit-stat", title: `${count(c.insertions ?? 0)} lines added, ${count(c.deletions ?? 0)} removed` },
        h("span", { class: "stat-add", text: known(c.insertions) ? `+${count(c.insertions)}` : "" }),
        " ",
        h("span", { class: "stat-del", text: known(c.deletions) ? `−${count(c.deletions)}` : "" }),
      ),
    ),
    files.length
      ? h(
          "details",
          { class: "commit-files" },
          h("summary", { text: plural(files.length, "file") }),
          h(
            "ul",
            {},
            files.map((f) => h("li", {}, h("code", { text: f }))),
          ),
        )
      : null,
  );
}

/** The attempt's commits; `commits` null: the run recorded none (it was not isolated). */
function commitList(commits) {
  if (commits === null) return null;
  return [
    h("h4", { text: `Commits${commits.length ? ` (${count(commits.length)})` : ""}` }),
    commits.length
      ? h("ol", { class: "commits" }, commits.map(commitItem))
      : h("p", { class: "muted none", text: "No commit." }),
  ];
}

function attemptColumn(a, commits = null) {
  const cost = a.cost_usd ?? null;
  const agentMs = a.agent_ms ?? null;
  const validationMs = a.validation_ms ?? null;
  const total = known(agentMs) || known(validationMs) ? (agentMs || 0) + (validationMs || 0) : null;
  const tools = a.tools || [];
  const toolList = tools.length
    ? h(
        "ol",
        { class: "tools" },
        tools.map((call) => {
          const outcome = toolOutcome(call);
          return h(
            "li",
            { class: "tool", "data-seq": call.seq },
            h("span", { class: "tool-name", text: call.tool }),
            h("span", { class: "tool-target", title: call.target ?? "", text: call.target ?? "" }),
            h("span", { class: `tool-outcome tone-${outcome.tone}`, text: outcome.text }),
          );
        }),
        a.tools_more
          ? h("li", { class: "tools-more muted", text: `… and ${count(a.tools_more)} more` })
          : null,
      )
    : h("p", { class: "muted none", text: "No tool calls recorded." });
  return h(
    "section",
    { class: "attempt", "data-attempt": a.attempt },
    h("div", { class: "attempt-head" }, h("h3", { text: `Attempt ${a.attempt}` }), stopBadge(a.stop_reason)),
    h(
      "dl",
      { class: "attempt-facts" },
      field("duration", duration(total), `agent + validation`, "duration"),
      field("agent", duration(agentMs), null, "agent"),
      field("validation", duration(validationMs), null, "validation"),
      field("tokens", tokenLine(a), exactTokens(a), "tokens"),
      field("cache", cacheLine(a), null, "cache"),
      field("cost", usd(cost, a.cost_estimated), usdTitle(cost, a.cost_estimated), "cost"),
      field("tool calls", known(a.tool_calls) ? count(a.tool_calls) : "—", null, "tool_calls"),
      field("agent status", a.agent_status ?? "—", null, "agent_status"),
      field("exit code", known(a.exit_code) ? String(a.exit_code) : "—", null, "exit_code"),
      field("model", a.model ?? "—", null, "model"),
      field("session", a.session_id ?? "—", a.session_id ?? null, "session_id"),
      field("started", a.started_at ? dateTime(a.started_at) : "—", a.started_at ?? null, "started"),
    ),
    h("h4", { text: `Tool calls${tools.length ? ` (${count(tools.length + (a.tools_more || 0))})` : ""}` }),
    toolList,
    h("h4", { text: "Validation" }),
    a.validation_command ? h("code", { class: "validation-command", text: a.validation_command }) : null,
    a.validation_output
      ? h("pre", { class: "validation-output", tabindex: 0, "aria-label": "validation output", text: a.validation_output })
      : h("p", { class: "muted none", text: a.validation_command ? "No output." : "No validation ran." }),
    commitList(commits),
  );
}

/** The commits `git` (RunGit, narrowed to the task) lists for `attempt`; null: none recorded. */
function commitsOf(git, attempt) {
  if (!git || (!git.branch && !(git.commits || []).length)) return null;
  return (git.commits || []).filter((c) => c.attempt === attempt);
}

export class TaskPanel {
  /** `onClose()` is called when the user closes the dialog (Escape, the close button). */
  constructor({ onClose }) {
    this.onClose = onClose;
    this.key = null;
    this.controller = null;
    this.title = h("h2", { class: "task-title" });
    this.body = h("div", { class: "task-body" });
    const close = h("button", {
      type: "button",
      class: "close",
      "aria-label": "Close",
      title: "Close (Esc)",
      text: "×",
      on: { click: () => this.dialog.close() },
    });
    this.dialog = h(
      "dialog",
      { class: "task-dialog", "aria-label": "task attempts" },
      h("div", { class: "task-dialog-head" }, this.title, h("span", { class: "spacer" }), close),
      this.body,
    );
    this.dialog.addEventListener("close", () => {
      const was = this.key;
      this.key = null;
      this.controller?.abort();
      if (was !== null) this.onClose();
    });
    // A click on the backdrop (outside the dialog's box) closes it too.
    this.dialog.addEventListener("click", (event) => {
      if (event.target === this.dialog) this.dialog.close();
    });
    document.body.append(this.dialog);
  }

  /** Show the attempts of `unit`'s task `task` in run `runId` (again, if `force`). */
  open(runId, unit, task, { force = false } = {}) {
    const key = `${runId}|${unit}|${task}`;
    if (!this.dialog.open) this.dialog.showModal();
    if (key === this.key && !force) return;
    const first = key !== this.key;
    this.key = key;
    if (first) {
      put(this.title, `${unit} · task ${task}`);
      put(this.body, h("div", { class: "loading-block", text: "Loading attempts…" }));
    }
    this.load(runId, unit, task, key);
  }

  async load(runId, unit, task, key) {
    this.controller?.abort();
    const controller = (this.controller = new AbortController());
    const signal = controller.signal;
    // Its commits are extra: the attempts show without them if they cannot be read.
    const git = getJSON(gitRequest(runId, { unit, task }), {}, { signal }).catch(() => null);
    let data;
    try {
      data = await getJSON(taskRequest(runId, unit, task), {}, { signal });
    } catch (error) {
      if (error.name === "AbortError" || key !== this.key) return;
      put(this.body, h("p", { class: "run-error", text: `Could not load this task: ${error.message}` }));
      return;
    }
    const found = await git;
    if (key !== this.key) return;
    this.render(unit, task, (data.tasks || [])[0] || null, found);
  }

  render(unit, task, t, git = null) {
    if (!t) {
      put(this.title, `${unit} · task ${task}`);
      put(this.body, h("p", { class: "muted", text: "No attempt of this task is recorded in this run." }));
      return;
    }
    put(
      this.title,
      h("span", { class: "task-name", text: `${t.unit} · task ${t.task}` }),
      t.title ? h("span", { class: "task-title-text", text: ` — ${t.title}` }) : null,
      " ",
      t.status ? statusBadge(t.status) : null,
      " ",
      stopBadge(t.stop_reason),
      t.flaky ? [" ", flakyTag()] : null,
    );
    const attempts = t.attempts || [];
    put(
      this.body,
      h("p", { class: "muted task-summary", text: `${plural(attempts.length, "attempt")}, side by side` }),
      attempts.length
        ? h(
            "div",
            { class: "attempts" },
            attempts.map((a) => attemptColumn(a, commitsOf(git, a.attempt))),
          )
        : h("p", { class: "muted", text: "No attempt has started yet." }),
    );
  }

  close() {
    if (this.dialog.open) {
      this.key = null; // closed from the URL: nothing to tell
      this.dialog.close();
    }
  }

  destroy() {
    this.controller?.abort();
    this.key = null;
    this.dialog.remove();
  }
}
