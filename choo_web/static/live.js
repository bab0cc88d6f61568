// The Live tab: the runs running now (from /api/live, so one started after
// the page loaded appears at once; each card shows the state the daemon
// keeps for its run, sent a few times a second), the latest finished ones,
// and the selected run in full, following its events.

import { ApiError, getJSON, openStream, url } from "./api.js";
import { h, put } from "./dom.js";
import { basename, count, duration, millis, timeOfDay } from "./format.js";
import { RunView } from "./run.js";
import { link, navigate } from "./state.js";
import { message, notRecordedTag, runBadge } from "./widgets.js";

const RECENT = 6;

class Card {
  constructor(run) {
    this.run = { ...run };
    this.live = run.live || null; // the server's LiveState of a running run
    this.el = h("a", {
      class: "run-card",
      href: link({ run: run.id, type: null, unit: null, event: null, pane: null, task: null }),
      "data-run": run.id,
    });
  }

  /** The run's state as the daemon keeps it (run.state, coalesced). */
  setLive(state) {
    if (this.live && state.last_seq < this.live.last_seq) return;
    this.live = state;
    this.run.event_count = state.event_count;
    this.run.last_seq = state.last_seq;
  }

  counts() {
    const run = this.run;
    if (run.status !== "running" || !this.live)
      return { completed: run.completed_units, failed: run.failed_units, blocked: run.blocked_units };
    return this.live.units;
  }

  render(selected) {
    const run = this.run;
    const counts = this.counts();
    const total = Math.max(run.total_units, 1);
    const bar = h("div", { class: "progress" });
    for (const kind of ["completed", "failed", "blocked"]) {
      const part = h("i", { class: `p-${kind}` });
      part.style.width = `${(100 * counts[kind]) / total}%`;
      bar.append(part);
    }
    const running = run.status === "running";
    const took = running ? Date.now() - (millis(run.started_at) || Date.now()) : run.duration_ms;
    this.el.className = `run-card status-${run.status}${selected ? " selected" : ""}`;
    put(
      this.el,
      h(
        "div",
        { class: "rc-top" },
        h("span", { class: "rc-id", text: run.id }),
        h("span", { class: "rc-tags" }, notRecordedTag(run), runBadge(run)),
      ),
      h("div", {
        class: "rc-repo muted",
        title: run.repo_path,
        text: `${basename(run.repo_path)} · started ${timeOfDay(run.started_at)}`,
      }),
      bar,
      h(
        "div",
        { class: "rc-meta" },
        h("span", { class: "n-done", text: `✓ ${counts.completed}` }),
        h("span", { class: "n-failed", text: `✗ ${counts.failed}` }),
        h("span", { class: "n-blocked", text: `⊘ ${counts.blocked}` }),
        h("span", {
          class: "muted",
          text: ` of ${run.total_units} · ${count(run.event_count)} events · ${duration(took)}`,
        }),
      ),
      this.live?.last_event && run.status === "running"
        ? h("div", {
            class: "rc-last muted",
            text: `${this.live.last_event.type}${this.live.last_event.unit ? ` · ${this.live.last_event.unit}` : ""}`,
          })
        : null,
    );
  }
}

export class LiveView {
  constructor(root, state, { onNewRepo }) {
    this.root = root;
    this.state = state;
    this.onNewRepo = onNewRepo;
    this.cards = new Map();
    this.recentIds = [];
    this.ready = false;
    this.dirty = new Set();
    this.frame = 0;
    this.detail = null;
    this.runningList = h("div", { class: "card-list running-list" });
    this.recentList = h("div", { class: "card-list recent-list" });
    this.main = h("div", { class: "live-main" });
    put(
      root,
      h(
        "div",
        { class: "live" },
        h(
          "aside",
          { class: "live-side" },
          h("h2", {}, h("span", { class: "pulse" }), "Running"),
          this.runningList,
          h("h2", { text: "Recent" }),
          this.recentList,
        ),
        this.main,
      ),
    );
    this.renderLists();
    this.stream = openStream(() => url("/api/live", { repo: state.repo }), {
      ready: (data) => this.onReady(data.runs),
      "run.started": (data) => this.onStarted(data.run),
      "run.state": (state) => this.onState(state),
      "run.finished": (data) => this.onFinished(data.run),
    });
    this.loadRecent();
    this.ticker = setInterval(() => this.tick(), 1000);
    this.update(state);
  }

  async loadRecent() {
    try {
      const page = await getJSON("/api/history/runs", { repo: this.state.repo, limit: RECENT + 4 });
      for (const run of page.runs) {
        if (run.status === "running" || this.cards.has(run.id)) continue;
        this.cards.set(run.id, new Card(run));
        this.recentIds.push(run.id);
        this.dirty.add(run.id);
      }
      this.recentIds = this.recentIds.slice(0, RECENT);
      this.renderLists();
    } catch {
      // the lists stay as they are; the banner tells about the daemon
    }
  }

  running() {
    return [...this.cards.values()]
      .filter((c) => c.run.status === "running")
      .sort((a, b) => (a.run.started_at < b.run.started_at ? 1 : -1));
  }

  addRunning(run) {
    let card = this.cards.get(run.id);
    if (!card) {
      card = new Card(run);
      this.cards.set(run.id, card);
    } else {
      card.run = { ...card.run, ...run };
      if (run.live) card.live = run.live;
    }
    this.recentIds = this.recentIds.filter((id) => id !== run.id);
    this.dirty.add(run.id);
    return card;
  }

  onReady(runs) {
    const now = new Set(runs.map((r) => r.id));
    for (const card of this.running()) {
      // Finished while we were away: ask how it ended.
      if (!now.has(card.run.id)) this.refresh(card.run.id);
    }
    for (const run of runs) this.addRunning(run);
    this.ready = true;
    this.renderLists();
    this.update(this.state);
  }

  async refresh(id) {
    try {
      this.onFinished(await getJSON(`/api/history/runs/${encodeURIComponent(id)}`));
    } catch (error) {
      // Gone: a run that was not recorded ended while we were away (or
      // retention deleted it). Unreachable: leave it as it is.
      if (error instanceof ApiError && error.status === 404) {
        this.cards.delete(id);
        this.recentIds = this.recentIds.filter((known) => known !== id);
        this.renderLists();
      }
    }
  }

  onStarted(run) {
    this.addRunning(run);
    this.onNewRepo(run.repo_path);
    this.renderLists();
    if (!this.state.run) navigate({ run: run.id }, { replace: true });
  }

  onState(state) {
    const card = this.cards.get(state.run_id);
    if (!card || card.run.status !== "running") return;
    card.setLive(state);
    this.dirty.add(state.run_id);
    this.schedule();
  }

  onFinished(run) {
    const card = this.cards.get(run.id) || new Card(run);
    card.run = { ...card.run, ...run };
    this.cards.set(run.id, card);
    this.recentIds = [run.id, ...this.recentIds.filter((id) => id !== run.id)].slice(0, RECENT);
    this.dirty.add(run.id);
    this.renderLists();
  }

  tick() {
    for (const card of this.running()) this.dirty.add(card.run.id);
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    for (const id of this.dirty) this.cards.get(id)?.render(id === this.state.run);
    this.dirty.clear();
  }

  renderLists() {
    const running = this.running();
    put(
      this.runningList,
      ...(running.length
        ? running.map((c) => c.el)
        : [h("p", { class: "muted side-empty", text: this.ready ? "Nothing running." : "Connecting…" })]),
    );
    const recent = this.recentIds
      .map((id) => this.cards.get(id))
      .filter((c) => c && c.run.status !== "running");
    put(
      this.recentList,
      ...(recent.length
        ? recent.map((c) => c.el)
        : [h("p", { class: "muted side-empty", text: "No finished runs yet." })]),
    );
    for (const id of this.cards.keys()) this.dirty.add(id);
    this.flush();
  }

  update(state) {
    this.state = state;
    document.title = "Live · choo";
    for (const id of this.cards.keys()) this.dirty.add(id);
    this.schedule();
    if (state.run) {
      if (this.detail && this.detail.state.run === state.run) {
        this.detail.update(state);
        return;
      }
      this.detail?.destroy();
      this.detail = new RunView(this.main, state, { backLink: false, live: true });
      return;
    }
    this.detail?.destroy();
    this.detail = null;
    const newest = this.running()[0];
    if (newest && this.ready) {
      navigate({ run: newest.run.id }, { replace: true });
      return;
    }
    put(
      this.main,
      this.ready
        ? message(
            "Nothing is running",
            "Runs appear here the moment they start, and update as their events arrive.",
            h(
              "p",
              {},
              "Start one with ",
              h("code", { text: "choo run specs/tasks" }),
              ", or ",
              h("a", { href: link({ tab: "history", run: null }), text: "browse the history" }),
              ".",
            ),
          )
        : h("div", { class: "loading-block", text: "Connecting to live updates…" }),
    );
  }

  restored() {
    this.detail?.restored();
  }

  destroy() {
    this.stream.close();
    clearInterval(this.ticker);
    cancelAnimationFrame(this.frame);
    this.detail?.destroy();
  }
}
