// A run's header: id, status, its numbers (with what its agents used:
// cost, tokens, tool calls, from the run's `totals`), its stop/resume
// markers, and, for a run isolated in git worktrees, its run branch and
// whether it landed (GET /api/history/runs/{id}/git).

import { append, h, put } from "./dom.js";
import { markerOf } from "./eventtypes.js";
import { clock, count, dateTime, duration, millis, tokens, usd, usdTitle } from "./format.js";
import { link } from "./state.js";
import { notRecordedTag, plannedUnits, runBadge } from "./widgets.js";

export class RunHeader {
  /** `onMarker(seq)` is called when a stop/resume marker is clicked. */
  constructor(root, { backLink, onMarker }) {
    this.root = root;
    this.backLink = backLink;
    this.onMarker = onMarker;
    this.shape = null;
    this.git = null;
    this.gitLine = h("div", { class: "run-git", hidden: true });
  }

  /** Show the run's branch and landing from `git` (RunGit; null: not known yet). */
  renderGit(git) {
    this.git = git;
    const over = Boolean(this.run && this.run.status !== "running");
    const key = JSON.stringify([git && git.branch, git && git.land, over]);
    if (key === this.gitKey) return; // unchanged: a selection of the command stays
    this.gitKey = key;
    const line = this.gitLine;
    if (!git || !git.branch) {
      line.hidden = true;
      line.replaceChildren();
      return;
    }
    line.hidden = false;
    put(line, h("span", { class: "muted", text: "branch " }), h("code", { class: "git-branch", text: git.branch }));
    const land = git.land;
    if (land && land.landed) {
      line.dataset.landed = "true";
      append(line, [
        " · ",
        h("span", { class: "git-landed", text: `landed on ${land.into || "its branch"}` }),
        land.sha ? h("code", { class: "muted git-sha", title: land.sha, text: ` ${land.sha.slice(0, 7)}` }) : null,
      ]);
    } else if (land || over) {
      line.dataset.landed = "false";
      const command = land && land.command;
      append(line, [
        " · ",
        h("span", { class: "git-not-landed", text: command ? "not landed: " : "not landed" }),
        command ? h("code", { class: "land-command", title: "select to copy", text: command }) : null,
        land && land.reason ? h("span", { class: "muted git-reason", text: ` (${land.reason})` }) : null,
      ]);
    } else {
      delete line.dataset.landed;
    }
  }

  /** Show `run`; a running run's unit counts come from `units` (UnitStates). */
  render(run, units) {
    this.run = run;
    const shape = JSON.stringify([run.status, run.dry_run, run.history, run.error, run.markers, run.tasks_dir]);
    if (shape !== this.shape) {
      this.shape = shape;
      this.build();
    }
    const running = run.status === "running";
    const started = millis(run.started_at);
    const took = running ? (started ? Date.now() - started : null) : run.duration_ms;
    const done = running
      ? units.counts(run.status)
      : { completed: run.completed_units, failed: run.failed_units, blocked: run.blocked_units };
    if (run.dry_run) put(this.stats.units, plannedUnits(run));
    else
      put(
        this.stats.units,
        h("span", { class: "n-done", title: "completed", text: `✓ ${done.completed}` }),
        h("span", { class: "n-failed", title: "failed", text: `✗ ${done.failed}` }),
        h("span", { class: "n-blocked", title: "blocked", text: `⊘ ${done.blocked}` }),
        h("span", { class: "muted", text: ` of ${run.total_units}` }),
      );
    this.stats.tookLabel.textContent = running ? "running for" : "duration";
    this.stats.took.textContent = duration(took);
    this.stats.events.textContent = count(run.event_count);
    this.stats.resumes.textContent = String(run.resume_count);
    this.renderTotals(run.totals || null);
    this.renderGit(this.git);
  }

  /** The agents' usage over the run: cost, tokens in/out, cache read/write, tool calls. */
  renderTotals(t) {
    const { cost, tokensIn, cache, tools } = this.stats;
    const spent = t && t.cost_usd ? t.cost_usd : null; // 0: no agent reported a cost
    cost.textContent = usd(spent, t && t.cost_estimated);
    cost.title = usdTitle(spent, t && t.cost_estimated);
    cost.dataset.estimated = String(Boolean(t && t.cost_estimated));
    const reported = t && (t.input_tokens || t.output_tokens); // 0: the agents reported none (text output)
    tokensIn.textContent = reported ? `${tokens(t.input_tokens)} / ${tokens(t.output_tokens)}` : "—";
    tokensIn.title = t ? `${count(t.input_tokens ?? 0)} in, ${count(t.output_tokens ?? 0)} out` : "";
    const cached = t ? (t.cache_read_tokens ?? 0) + (t.cache_write_tokens ?? 0) : 0;
    cache.textContent = cached ? tokens(cached) : "—";
    const [read, written] = t ? [count(t.cache_read_tokens ?? 0), count(t.cache_write_tokens ?? 0)] : [];
    cache.title = t ? `${read} read from the cache, ${written} written to it` : "";
    tools.textContent = t ? `${count(t.tool_calls ?? 0)} / ${count(t.attempts ?? 0)}` : "—";
    tools.title = t ? `${count(t.tool_calls ?? 0)} tool calls in ${count(t.attempts ?? 0)} attempts` : "";
  }

  build() {
    const run = this.run;
    const stat = (label, value = "") => {
      const labelEl = h("span", { class: "stat-label", text: label });
      const valueEl = h("span", { class: "stat-value", text: value });
      return [h("div", { class: "stat" }, labelEl, valueEl), valueEl, labelEl];
    };
    const [unitsBox, units] = stat("units");
    const [tookBox, took, tookLabel] = stat("duration");
    const [eventsBox, events] = stat("events");
    const [resumesBox, resumes] = stat("resumes");
    const [costBox, cost] = stat("cost");
    const [tokensBox, tokensIn] = stat("tokens in / out");
    const [cacheBox, cache] = stat("cache");
    const [toolsBox, tools] = stat("tools / attempts");
    units.classList.add("units");
    for (const [el, name] of [
      [costBox, "cost"],
      [tokensBox, "tokens"],
      [cacheBox, "cache"],
      [toolsBox, "tools"],
    ])
      el.dataset.stat = name;
    this.stats = { units, took, tookLabel, events, resumes, cost, tokensIn, cache, tools };
    const markers = (run.markers || []).map((m) => this.markerChip(m));
    put(
      this.root,
      this.backLink
        ? h("a", {
            class: "back",
            href: link({ run: null, type: null, unit: null, event: null, pane: null, task: null }),
            text: "← Runs",
          })
        : null,
      h(
        "div",
        { class: "run-title" },
        h("h1", { class: "run-id", text: run.id }),
        runBadge(run),
        notRecordedTag(run),
        run.history === false
          ? null
          : h("a", { class: "compare-with", href: link({ tab: "compare", a: run.id }, {}), text: "Compare with…" }),
      ),
      h("div", { class: "run-path muted", title: run.tasks_dir || "", text: run.tasks_dir || run.repo_path }),
      h(
        "div",
        { class: "stats" },
        unitsBox,
        stat("started", dateTime(run.started_at))[0],
        tookBox,
        eventsBox,
        stat("parallelism", String(run.parallelism))[0],
        resumesBox,
        costBox,
        tokensBox,
        cacheBox,
        toolsBox,
      ),
      this.gitLine,
      run.error ? h("div", { class: "run-error", text: run.error }) : null,
      markers.length
        ? h("div", { class: "markers" }, h("span", { class: "muted", text: "Stops and resumes:" }), markers)
        : null,
    );
  }

  markerChip(marker) {
    const stopped = markerOf(marker.type) === "stop";
    return h(
      "button",
      {
        type: "button",
        class: `marker-chip ${stopped ? "marker-stop" : "marker-resume"}`,
        "data-seq": marker.seq,
        title: `${marker.type} at ${marker.time} (seq ${marker.seq})`,
        on: { click: () => this.onMarker(marker.seq) },
      },
      h("b", { text: stopped ? "■ stopped" : "▶ resumed" }),
      ` ${clock(marker.time, this.run.started_at)}`,
      marker.reason ? h("span", { class: "reason", text: ` — ${marker.reason}` }) : null,
    );
  }
}
