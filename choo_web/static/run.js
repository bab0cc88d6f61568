// One run: its summary and stop/resume markers, the dependency graph, and
// the event timeline with its filters, or in its place the run's tasks
// (runtasks.js), each of which opens its attempts (attempts.js), or its
// lanes (lanes.js: where the time went). A running
// run follows its event stream: new events reach the timeline, and the
// graph's colors follow; what the agents used is asked for again now and then.

import { ApiError, getJSON, openStream, url } from "./api.js";
import { TaskPanel } from "./attempts.js";
import { CatchUp } from "./catchup.js";
import { gitRequest, runPath, runRequests } from "./boot.js";
import { h, put } from "./dom.js";
import { GRAPH_TYPES, markerOf } from "./eventtypes.js";
import { IndexedEvents, SequentialEvents } from "./events.js";
import { LanesView } from "./lanes.js";
import { count, plural } from "./format.js";
import { FilterBar } from "./filters.js";
import { GraphView } from "./graph.js";
import { RunHeader } from "./header.js";
import { RunSearch } from "./runsearch.js";
import { RunTasks } from "./runtasks.js";
import { link, navigate, parseTaskKey } from "./state.js";
import { Timeline } from "./timeline.js";
import { UnitStates } from "./units.js";
import { message } from "./widgets.js";

const USAGE_MS = 3000; // a running run's roll-ups are asked for again at most this often

export class RunView {
  /**
   * `backLink`: show "← Runs". `live`: the run may have just started, so its
   * graph is asked for only once the run says it has one (no 404s to log).
   */
  constructor(root, state, { backLink = true, live = false } = {}) {
    this.root = root;
    this.state = state;
    this.backLink = backLink;
    this.live = live;
    this.units = new UnitStates();
    this.graph = null;
    this.list = null;
    this.stream = null;
    this.frame = 0;
    this.destroyed = false;
    this.controller = new AbortController();
    this.panel = null;
    put(root, h("div", { class: "loading-block", text: "Loading run…" }));
    this.load();
  }

  get pane() {
    return ["tasks", "lanes"].includes(this.state.pane) ? this.state.pane : "events";
  }

  get filter() {
    return { type: this.state.type || null, unit: this.state.unit || null };
  }

  async load() {
    const id = this.state.run;
    const signal = this.controller.signal;
    const { type, unit } = this.filter;
    // One request says whether there is such a run (and brings its first
    // events); then the rest, at once.
    const urls = runRequests(id, { type, unit }, this.live);
    let view;
    try {
      view = await getJSON(urls.view, {}, { signal });
    } catch (error) {
      if (error.name !== "AbortError") this.failed(error);
      return;
    }
    if (this.destroyed) return;
    if (!view.run) {
      this.failed(new ApiError(view.error.status, view.error.code, view.error.message));
      return;
    }
    const graph = urls.graph ? getJSON(urls.graph, {}, { signal }).catch((e) => e) : null;
    const git = getJSON(urls.git, {}, { signal }).catch((e) => e);
    this.loadUnits();
    const run = view.run;
    this.run = run;
    document.title = `${run.id} · choo`;
    this.build();
    git.then((found) => this.showGit(found));
    this.makeList({ ...view.events, type, unit });
    if (this.state.q) this.search.set(this.state.q, this.state.event ? Number(this.state.event) : null);
    this.loadGraph(graph);
    if (run.status === "running") this.follow();
    else this.watchForResume();
    this.ticker = setInterval(() => this.run.status === "running" && this.renderHead(), 1000);
    this.showTask();
  }

  failed(error) {
    const back = this.backLink
      ? h("a", {
          href: link({ run: null, type: null, unit: null, event: null, pane: null, task: null }),
          text: "← Back to runs",
        })
      : null;
    if (error instanceof ApiError && error.status === 404) {
      put(
        this.root,
        message(
          "Run not found",
          `${error.message}. It may have been deleted by retention (history.retention_days), it may have been a run that was not recorded (choo run --no-history) and is over, or the link comes from another machine's history.`,
          back,
        ),
      );
    } else {
      const retry = h("button", { type: "button", text: "Try again", on: { click: () => this.reload() } });
      put(this.root, message("Could not load this run", error.message, h("p", {}, retry, " ", back)));
    }
  }

  reload() {
    this.teardown();
    this.destroyed = false;
    this.controller = new AbortController();
    this.units = new UnitStates();
    this.graph = null;
    put(this.root, h("div", { class: "loading-block", text: "Loading run…" }));
    this.load();
  }

  // --- building ------------------------------------------------------------

  build() {
    this.head = h("div", { class: "run-head" });
    this.header = new RunHeader(this.head, { backLink: this.backLink, onMarker: (seq) => this.goTo(seq) });
    this.graphBody = h(
      "div",
      { class: "graph-body" },
      h("div", { class: "loading-block", text: "Loading graph…" }),
    );
    this.tlBody = h("div", { class: "tl-body" });
    this.countLabel = h("span", { class: "tl-count" });
    this.filters = new FilterBar({ onLatest: () => this.timeline.scrollToEnd() });
    this.search = new RunSearch(this.run.id, {
      query: this.state.q || "",
      onJump: (seq) => this.goTo(seq),
      onMarks: (terms, seq) => this.timeline.setMarks(terms, seq),
    });
    this.controls = this.filters.element;
    const paneLink = (pane, text, cls = "pane-link") =>
      h("a", { class: cls, href: link({ pane: pane === "events" ? null : pane, event: null }), text });
    // Its own class: beside another pane's link, "a card's .pane-link" stays one link.
    const lanesLink = () => paneLink("lanes", "Lanes →", "pane-link-lanes");
    this.tasksBody = h("div", { class: "tasks-body" });
    this.eventsCard = h(
      "div",
      { class: "card tl-card" },
      h(
        "div",
        { class: "card-head" },
        h("h2", { text: "Events" }),
        this.countLabel,
        this.search.element,
        h("span", { class: "spacer" }),
        lanesLink(),
        " ",
        paneLink("tasks", "Tasks and attempts →"),
      ),
      this.controls,
      this.tlBody,
    );
    this.tasksCard = h(
      "div",
      { class: "card tasks-card" },
      h(
        "div",
        { class: "card-head" },
        h("h2", { text: "Tasks" }),
        h("span", { class: "hint", text: "open a task to compare its attempts" }),
        h("span", { class: "spacer" }),
        paneLink("events", "← Events"),
        " ",
        lanesLink(),
      ),
      this.tasksBody,
    );
    this.lanesBody = h("div", { class: "lanes-body" });
    this.lanesCard = h(
      "div",
      { class: "card lanes-card" },
      h(
        "div",
        { class: "card-head" },
        h("h2", { text: "Lanes" }),
        h("span", { class: "hint", text: "where the time went; open an attempt to see its events" }),
        h("span", { class: "spacer" }),
        paneLink("events", "← Events"),
        " ",
        paneLink("tasks", "Tasks and attempts →"),
      ),
      this.lanesBody,
    );
    put(
      this.root,
      h(
        "section",
        { class: "run" },
        this.head,
        h(
          "div",
          { class: "card graph-card" },
          h(
            "div",
            { class: "card-head" },
            h("h2", { text: "Dependency graph" }),
            h("span", { class: "hint", text: "click a unit to see its events" }),
          ),
          this.graphBody,
        ),
        this.eventsCard,
        this.tasksCard,
        this.lanesCard,
      ),
    );
    this.syncControls();
    this.timeline = new Timeline(this.tlBody, {
      onToggle: (seq) => navigate({ event: seq === null ? null : String(seq) }, { replace: true }),
      origin: this.run.started_at,
    });
    this.renderHead();
    this.showPane();
  }

  /** The events, the tasks or the lanes, as the URL's `pane` says. */
  showPane() {
    const tasks = this.pane === "tasks";
    this.eventsCard.hidden = this.pane !== "events";
    this.tasksCard.hidden = !tasks;
    this.lanesCard.hidden = this.pane !== "lanes";
    if (this.pane === "lanes") this.showLanes();
    if (!tasks) return;
    if (!this.tasks) {
      this.tasks = new RunTasks(this.tasksBody, this.run.id);
      this.tasks.load();
    }
    this.tasks.filter(this.filter.unit);
  }

  /** The lanes, made on first showing; shown again, they are asked for again. */
  showLanes() {
    if (this.lanes) {
      this.lanes.poke();
      return;
    }
    this.lanes = new LanesView(this.lanesBody, this.run.id, {
      // An attempt's events: its unit's timeline, opened at the attempt's first event.
      onOpen: (bar) => navigate({ pane: null, type: null, unit: bar.unit, event: String(bar.seq) }),
    });
    this.lanes.load();
  }

  /** The task whose attempts are open (the URL's `task`), if any. */
  showTask() {
    const open = parseTaskKey(this.state.task);
    if (!open) {
      this.panel?.close();
      return;
    }
    this.panel ||= new TaskPanel({ onClose: () => navigate({ task: null }, { replace: true }) });
    this.panel.open(this.run.id, open.unit, open.task);
  }

  /** A running run's roll-ups (units, totals, tasks) again, at most every few seconds. */
  refreshUsage() {
    if (this.usageTimer || this.destroyed) return;
    this.usageTimer = setTimeout(async () => {
      this.usageTimer = 0;
      if (this.destroyed) return;
      this.loadUnits();
      // A running run's branch comes early (one not recorded is gone once over).
      if ((!this.git || !this.git.branch) && this.run.status === "running") this.loadGit();
      if (this.tasks && this.pane === "tasks") this.tasks.load();
      const open = parseTaskKey(this.state.task);
      if (open && this.panel) this.panel.open(this.run.id, open.unit, open.task, { force: true });
      try {
        const detail = await getJSON(runPath(this.run.id), {}, { signal: this.controller.signal });
        if (this.destroyed || !detail.totals) return;
        this.run.totals = detail.totals;
        this.renderHead();
      } catch {
        // the next event asks again
      }
    }, USAGE_MS);
  }

  syncControls() {
    const units = this.graph ? this.graph.laid.columns.flat() : [];
    this.filters.sync(this.filter, units);
    this.graph?.select(this.filter.unit);
  }

  renderHead() {
    this.header.render(this.run, this.units);
  }

  /** Open `seq` in the timeline, dropping filters that would hide it. */
  goTo(seq) {
    if (this.timeline.scrollToSeq(seq)) {
      this.timeline.open(seq);
      navigate({ event: String(seq) }, { replace: true });
    } else {
      navigate({ type: null, unit: null, event: String(seq) });
    }
  }

  // --- data ----------------------------------------------------------------

  /** A new list for the filter; `first` is its first page if already fetched (or an error). */
  makeList(first = null) {
    this.list?.destroy();
    const changed = (info) => this.changed(info);
    const { type, unit } = this.filter;
    const dense = !type && !unit && this.run.event_count === this.run.last_seq;
    this.list = dense
      ? new IndexedEvents(this.run.id, this.run.last_seq, changed)
      : new SequentialEvents(this.run.id, this.filter, this.run.markers || [], changed);
    // The page fetched along with the run, unless the filter changed since.
    if (first && Array.isArray(first.events) && first.type === type && first.unit === unit)
      this.list.seed(first);
    const openSeq = this.state.event ? Number(this.state.event) : null;
    this.timeline.setList(this.list, { openSeq });
    this.renderCount();
    if (openSeq !== null) this.reveal(openSeq);
  }

  async reveal(seq) {
    if (this.list instanceof SequentialEvents) await this.list.loadThrough(seq);
    if (this.destroyed) return;
    this.timeline.open(seq);
    this.timeline.scrollToSeq(seq);
  }

  /** The list got rows; `info.shift`: that many were put above the ones in view. */
  changed(info = null) {
    if (info && info.shift) this.timeline.shift(info.shift);
    this.timeline.render();
    this.renderCount();
  }

  renderCount() {
    const list = this.list;
    if (list instanceof IndexedEvents) {
      this.countLabel.textContent = plural(list.length, "event");
    } else {
      const n = list.count;
      if (list.total !== null)
        this.countLabel.textContent = list.totalExact
          ? plural(n, "matching event")
          : `${count(n)}+ matching events`;
      else
        this.countLabel.textContent = list.complete
          ? `${plural(n, "matching event")}`
          : `${count(n)}+ matching events (loading as you scroll)`;
    }
  }

  /** A live run's graph may be stored just after it starts: try again, now and then. */
  retryGraph() {
    const now = Date.now();
    if (this.graphLoading || now - (this.graphTried || 0) < 1000) return;
    this.loadGraph();
  }

  async loadGraph(fetched = null) {
    this.graphLoading = true;
    this.graphTried = Date.now();
    try {
      await this.fetchGraph(fetched);
    } finally {
      this.graphLoading = false;
    }
    this.graphRetries = (this.graphRetries || 0) + 1;
    if (!this.graph && !this.destroyed && this.run.status === "running" && this.graphRetries <= 20) {
      clearTimeout(this.graphTimer);
      this.graphTimer = setTimeout(() => this.graph || this.loadGraph(), 1500);
    }
  }

  async fetchGraph(fetched) {
    let graph;
    const signal = this.controller.signal;
    try {
      if (!fetched && !this.run.has_graph) {
        // Has it been stored since? (The run's detail says so without a 404.)
        const detail = await getJSON(runPath(this.run.id), {}, { signal });
        this.run.has_graph = detail.has_graph;
        if (!detail.has_graph) throw new ApiError(404, "no_graph", "no graph stored yet");
      }
      graph = await (fetched || getJSON(runPath(this.run.id, "/graph"), {}, { signal }));
      if (graph instanceof Error) throw graph;
    } catch (error) {
      if (error.name === "AbortError") return;
      graph = await this.graphFromEvents();
      if (!graph) {
        const text =
          error.code === "no_graph"
            ? this.run.status === "running"
              ? "No graph yet: it is stored once the run is planned."
              : "This run has no stored dependency graph."
            : `Could not load the graph: ${error.message}`;
        if (!this.graph) put(this.graphBody, h("p", { class: "muted empty-graph", text }));
        return;
      }
    }
    this.showGraph(graph);
  }

  /** The run's start event carries the graph too: a fallback when none was stored (yet). */
  async graphFromEvents() {
    try {
      for (const type of GRAPH_TYPES) {
        const page = await getJSON(
          runPath(this.run.id, "/events"),
          { type, limit: 1 },
          { signal: this.controller.signal },
        );
        const payload = page.events[0] && page.events[0].payload;
        if (payload && payload.graph && payload.graph.nodes) return payload.graph;
      }
    } catch {
      // no fallback then
    }
    return null;
  }

  showGraph(graph) {
    if (this.destroyed || this.graph) return;
    if (!graph.nodes || graph.nodes.length === 0) {
      put(this.graphBody, h("p", { class: "muted empty-graph", text: "This run has no units." }));
      return;
    }
    this.units.plan(graph.nodes);
    this.graph = new GraphView(this.graphBody, graph, {
      dryRun: this.run.dry_run,
      onSelect: (id) => navigate({ unit: this.filter.unit === id ? null : id, event: null }),
    });
    this.graph.update(this.units, this.run.status);
    this.syncControls();
  }

  /** The run's branch and landing (RunGit) for the header. */
  async loadGit() {
    const found = await getJSON(gitRequest(this.run.id), {}, { signal: this.controller.signal }).catch((e) => e);
    this.showGit(found);
  }

  showGit(found) {
    if (this.destroyed) return;
    if (found instanceof Error) {
      // An unknown run is reported by load(); without its git the header has no branch line.
      if (found.name !== "AbortError" && found.status !== 404) console.warn("run git:", found.message);
      return;
    }
    this.git = found;
    this.header.renderGit(found);
  }

  /** Each unit's status and progress, as the server folds them from the events so far. */
  async loadUnits() {
    try {
      const signal = this.controller.signal;
      this.units.seed(await getJSON(runRequests(this.state.run).units, {}, { signal }));
      this.scheduleGraph();
    } catch (error) {
      // An unknown run is reported by load(); anything else leaves the graph uncolored.
      if (error.name !== "AbortError" && error.status !== 404) console.warn("unit states:", error.message);
    }
  }

  scheduleGraph() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      if (this.destroyed || !this.run) return;
      this.graph?.update(this.units, this.run.status);
      this.renderHead();
    });
  }

  follow() {
    // A stream that fell behind says which events it skipped: they are fetched meanwhile.
    this.catchUp = new CatchUp(this.run.id, (event) => this.onEvent(event), this.controller.signal);
    this.stream = openStream(() => url(runPath(this.run.id, "/stream"), { after: this.run.last_seq }), {
      event: (event) => this.onEvent(event),
      catchup: (gap) => this.catchUp.gap(gap),
      end: (detail) => this.catchUp.then(() => this.onEnd(detail)),
      closed: () => this.run.history === false && this.checkGone(),
    });
  }

  /**
   * A stopped or failed run can be resumed (`choo resume`): until then the
   * live feed says when it starts again, and the view follows it once more.
   */
  watchForResume() {
    const run = this.run;
    if (this.watcher || this.destroyed || run.dry_run || run.history === false) return;
    if (run.status !== "stopped" && run.status !== "failed") return;
    const started = (detail) => detail.id === this.run.id && this.resumed(detail);
    this.watcher = openStream(() => url("/api/live", { repo: run.repo_path }), {
      ready: (data) => data.runs.forEach(started),
      "run.started": (data) => started(data.run),
    });
  }

  /** The run started again: its new state, then its events from the last one shown. */
  resumed(detail) {
    this.watcher?.close();
    this.watcher = null;
    if (this.destroyed || this.stream) return;
    const { last_seq, event_count, totals } = this.run;
    // The stream brings the events after the last one shown, and counts them.
    this.run = { ...detail, last_seq, event_count, totals: detail.totals || totals };
    this.renderHead();
    this.loadUnits();
    this.graph?.update(this.units, detail.status);
    this.follow();
  }

  /** A run that is not recorded is forgotten when it ends: its stream then answers 404. */
  async checkGone() {
    try {
      await getJSON(runPath(this.run.id), {}, { signal: this.controller.signal });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404 || !this.stream) return;
      this.stream.close();
      this.stream = null;
      this.onEnd({
        ...this.run,
        status: "ended",
        error: "This run was not recorded, and it has ended: how it ended was not kept.",
      });
    }
  }

  onEvent(event) {
    if (this.catchUp?.hold(event)) return;
    const run = this.run;
    if (event.seq > run.last_seq) {
      run.event_count += event.seq - run.last_seq;
      run.last_seq = event.seq;
    }
    this.units.apply(event);
    this.scheduleGraph(); // the graph's colors and the header's counts
    if (event.unit) this.refreshUsage();
    if (this.lanes && this.pane === "lanes") this.lanes.poke(); // the lanes grow
    if (!this.graph) this.retryGraph();
    const marker = markerOf(event.type);
    if (marker && !(run.markers || []).some((m) => m.seq === event.seq)) {
      const reason =
        event.payload && typeof event.payload === "object" ? (event.payload.reason ?? null) : null;
      run.markers = [...(run.markers || []), { seq: event.seq, time: event.time, type: event.type, reason }];
      if (marker === "resume") run.resume_count += 1;
      this.renderHead();
    }
    if (this.list.append(event)) {
      this.timeline.grew(true);
      this.renderCount();
    }
  }

  onEnd(detail) {
    this.stream?.close();
    this.stream = null;
    if (!detail.totals && this.run.totals) detail.totals = this.run.totals;
    this.run = detail;
    this.renderHead();
    this.refreshUsage(); // the last attempts' usage
    this.lanes?.poke();
    // How it landed; a run that was not recorded is forgotten as it ends (a 404).
    if (detail.history !== false) this.loadGit();
    this.graph?.update(this.units, detail.status);
    this.watchForResume();
  }

  /** The daemon came back: a finished view stays; a live one has its stream. */
  restored() {
    if (!this.run) this.reload();
  }

  // --- state changes -------------------------------------------------------

  update(state) {
    const before = this.state;
    this.state = state;
    if (!this.run) return;
    if (before.task !== state.task) this.showTask();
    if (before.q !== state.q && state.q) this.search.set(state.q, state.event ? Number(state.event) : null);
    if (before.pane !== state.pane || before.unit !== state.unit) this.showPane();
    if (before.type !== state.type || before.unit !== state.unit) {
      this.syncControls();
      this.makeList();
      return;
    }
    const seq = state.event ? Number(state.event) : null;
    if (seq !== this.timeline.openSeq) {
      if (seq === null) this.timeline.open(null);
      else this.reveal(seq);
    }
  }

  /** Times are to be shown another way (local, UTC, relative): the header and the rows. */
  timeChanged() {
    if (!this.run || !this.timeline) return;
    this.header.shape = null;
    this.renderHead();
    this.timeline.redrawTimes();
  }

  teardown() {
    this.destroyed = true;
    this.controller.abort();
    this.stream?.close();
    this.watcher?.close();
    this.watcher = null;
    clearInterval(this.ticker);
    clearTimeout(this.graphTimer);
    clearTimeout(this.usageTimer);
    this.usageTimer = 0;
    this.tasks?.destroy();
    this.tasks = null;
    this.lanes?.destroy();
    this.lanes = null;
    this.panel?.destroy();
    this.panel = null;
    this.search?.destroy();
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.timeline?.destroy();
    this.graph?.destroy();
  }

  destroy() {
    this.teardown();
  }
}
