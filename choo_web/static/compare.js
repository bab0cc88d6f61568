// Two runs side by side (#/compare?a=RUN&b=RUN): their figures, each unit
// and task with the deltas the daemon worked out (GET /api/history/compare),
// and both graphs drawn in one layout (the union of the two graphs, laid out
// once), the units whose outcome changed marked. With only `a`, the runs of
// its repository to compare it with. Every figure compared is better lower:
// a delta down is "down" (green), up is "up" (red).

import { ApiError, getJSON } from "./api.js";
import { compareRequest, runPath } from "./boot.js";
import { h, put } from "./dom.js";
import { basename, count, duration, localDateTime, plural, tokens, usd } from "./format.js";
import { GraphView } from "./graph.js";
import { layout } from "./layout.js";
import { link } from "./state.js";
import { message, statusBadge } from "./widgets.js";

const SIDES = ["a", "b"];
const ABSENT = "absent"; // a unit's status in the run it is not part of
const PICK_LIMIT = 25;

const FIGURES = [
  // [key, label, how a value reads]
  ["duration_ms", "Duration", duration],
  ["attempts", "Attempts", (n) => (n === null || n === undefined ? "—" : count(n))],
  ["tokens", "Tokens", tokens],
  ["cost_usd", "Cost", (n) => usd(n)],
];

/** A delta as text and its direction: "+1" up, "−2.0 s" down, "=" same, "" unknown. */
export function deltaText(delta, show) {
  if (delta === null || delta === undefined) return { text: "", dir: "unknown" };
  if (delta === 0) return { text: "=", dir: "same" };
  return { text: `${delta > 0 ? "+" : "−"}${show(Math.abs(delta))}`, dir: delta > 0 ? "up" : "down" };
}

function deltaCell(pair, show) {
  const { text, dir } = deltaText(pair.delta, show);
  return h("td", { class: `delta ${dir}`, "data-delta": pair.delta ?? "", text });
}

const REASON_CHARS = 32;

function outcomeCell(status, reason) {
  if (status === null || status === undefined) return h("td", { class: "cmp-outcome absent", text: "—" });
  const short = reason && reason.length > REASON_CHARS ? `${reason.slice(0, REASON_CHARS - 1)}…` : reason;
  return h(
    "td",
    { class: "cmp-outcome", title: reason || "" },
    statusBadge(status),
    reason ? h("span", { class: "muted stop-reason", text: ` ${short}` }) : null,
  );
}

function reasonsText(reasons) {
  if (reasons === null || reasons === undefined) return "—";
  return reasons.length ? reasons.map((r) => r || "-").join(", ") : "-";
}

function onlyTag(row) {
  if (!row.only_in) return null;
  return h("span", { class: "tag only-in", text: `only in ${row.only_in.toUpperCase()}` });
}

export class CompareView {
  constructor(root, state) {
    this.root = root;
    this.key = null;
    this.controller = null;
    this.graphs = {};
    this.update(state);
  }

  update(state) {
    this.state = state;
    const key = `${state.a || ""}|${state.b || ""}`;
    if (key === this.key) return;
    this.key = key;
    document.title = "Compare runs · choo";
    this.load();
  }

  async load() {
    this.controller?.abort();
    const controller = (this.controller = new AbortController());
    const { a, b } = this.state;
    if (!a && !b) {
      put(this.root, this.howTo());
      return;
    }
    put(this.root, h("div", { class: "loading-block", text: "Loading…" }));
    try {
      if (a && b) this.render(await getJSON(compareRequest(this.state), {}, { signal: controller.signal }));
      else await this.pick(a || b, controller.signal);
    } catch (error) {
      if (error.name === "AbortError") return;
      this.failed(error);
    }
  }

  howTo() {
    return message(
      "Compare two runs",
      "Tick two runs in the History tab and press Compare, or open a run and follow “Compare with…”.",
      h("p", {}, h("a", { href: link({ tab: "history", a: null, b: null }, { tab: "history" }), text: "Go to the runs" })),
    );
  }

  failed(error) {
    const back = h("a", { href: link({ tab: "history", a: null, b: null }), text: "← Back to runs" });
    const title = error instanceof ApiError && error.status === 404 ? "Run not found" : "Could not compare these runs";
    const retry = h("button", { type: "button", text: "Try again", on: { click: () => this.load() } });
    put(this.root, message(title, error.message, h("p", {}, error.status === 404 ? null : retry, " ", back)));
  }

  // --- picking the other run ------------------------------------------------

  async pick(id, signal) {
    const run = await getJSON(runPath(id), {}, { signal });
    const page = await getJSON(
      "/api/history/runs",
      { repo: run.repo_path, limit: PICK_LIMIT },
      { signal },
    );
    const others = page.runs.filter((r) => r.id !== run.id);
    const rows = others.map((other) => {
      // The earlier run is A, so that a delta reads "then → now".
      const [first, second] = other.started_at <= run.started_at ? [other, run] : [run, other];
      return h(
        "tr",
        { "data-run": other.id },
        h("td", { class: "run-id" }, h("a", { href: link({ a: first.id, b: second.id }), text: other.id })),
        h("td", {}, statusBadge(other.status)),
        h("td", { text: localDateTime(other.started_at) }),
        h("td", { class: "num", text: other.status === "running" ? "running" : duration(other.duration_ms) }),
      );
    });
    const table = others.length
      ? h(
          "div",
          { class: "card table-card", tabindex: 0, "aria-label": "runs to compare with" },
          h(
            "table",
            { class: "runs-table compare-pick" },
            h("thead", {}, h("tr", {}, ["Run", "Status", "Started", "Duration"].map((t) => h("th", { text: t })))),
            h("tbody", {}, rows),
          ),
        )
      : h("div", { class: "notice empty" }, h("h2", { text: "No other run of this repository to compare it with." }));
    put(
      this.root,
      h(
        "section",
        { class: "compare" },
        h("h1", {}, "Compare ", h("span", { class: "run-id", text: run.id }), " with…"),
        h("p", { class: "muted", text: `Runs of ${run.repo_path}, newest first (the earlier run is A).` }),
        table,
      ),
    );
  }

  // --- the comparison -------------------------------------------------------

  render(data) {
    this.data = data;
    document.title = `${data.a.id} ↔ ${data.b.id} · choo`;
    this.unitsBody = this.unitsTable(data.units);
    put(
      this.root,
      h(
        "section",
        { class: "compare" },
        this.head(data),
        data.graph ? this.graphCard(data) : null,
        h(
          "div",
          // It scrolls sideways on a narrow screen: the keyboard must reach it.
          { class: "card table-card", tabindex: 0, "aria-label": "units compared" },
          h("div", { class: "card-head" }, h("h2", { text: "Units" }), h("span", { class: "hint", text: "B − A" })),
          this.unitsBody,
        ),
        data.tasks.length
          ? h(
              "div",
              { class: "card table-card", tabindex: 0, "aria-label": "tasks compared" },
              h("div", { class: "card-head" }, h("h2", { text: "Tasks" })),
              this.tasksTable(data.tasks),
            )
          : null,
      ),
    );
    if (data.graph) this.drawGraphs(data);
  }

  head(data) {
    const card = (side) => {
      const run = data[side];
      return h(
        "div",
        { class: `card compare-run side-${side}`, "data-side": side },
        h("span", { class: "side-label", text: side.toUpperCase() }),
        h("a", { class: "run-id", href: link({ tab: "history", run: run.id, a: null, b: null }), text: run.id }),
        statusBadge(run.status),
        run.dry_run ? h("span", { class: "tag", text: "dry run" }) : null,
        h("div", { class: "muted", text: `${localDateTime(run.started_at)} · ${basename(run.repo_path)}` }),
      );
    };
    const run = data.run;
    const stats = [
      ["status", null],
      ["duration_ms", duration],
      ["completed_units", count],
      ["failed_units", count],
      ["attempts", count],
      ["tokens", tokens],
      ["cost_usd", (n) => usd(n)],
    ].map(([key, show]) => this.summaryRow(key, run[key], show));
    return h(
      "div",
      { class: "compare-head" },
      h(
        "div",
        { class: "compare-title" },
        h("h1", { text: "Compare runs" }),
        h("a", { class: "button swap", href: link({ a: data.b.id, b: data.a.id }), text: "Swap A and B" }),
      ),
      data.same_repo
        ? null
        : h("div", {
            class: "notice empty other-repos",
            text: `These runs are of two repositories: A of ${data.a.repo_path}, B of ${data.b.repo_path}.`,
          }),
      h("div", { class: "compare-runs" }, SIDES.map(card)),
      h(
        "div",
        { class: "card table-card", tabindex: 0, "aria-label": "the runs' figures compared" },
        h(
          "table",
          { class: "runs-table compare-summary" },
          h("thead", {}, h("tr", {}, ["", "A", "B", "B − A"].map((t) => h("th", { text: t })))),
          h("tbody", {}, stats),
        ),
      ),
      h("p", {
        class: "compare-changed",
        text: `${plural(data.changed.units, "unit")} and ${plural(data.changed.tasks, "task")} changed.`,
      }),
    );
  }

  summaryRow(key, pair, show) {
    const label = key.replace(/_ms$|_usd$/, "").replace(/_/g, " ");
    if (!show) {
      return h(
        "tr",
        { "data-figure": key },
        h("th", { text: label }),
        h("td", {}, statusBadge(pair.a)),
        h("td", {}, statusBadge(pair.b)),
        h("td", { text: pair.changed ? "changed" : "=" }),
      );
    }
    return h(
      "tr",
      { "data-figure": key },
      h("th", { text: label }),
      h("td", { class: "num", text: show(pair.a) }),
      h("td", { class: "num", text: show(pair.b) }),
      deltaCell(pair, show),
    );
  }

  figureHead() {
    return [
      h(
        "tr",
        {},
        h("th", { rowspan: 2, text: "Unit" }),
        h("th", { colspan: 2, text: "Outcome" }),
        FIGURES.map(([, label]) => h("th", { colspan: 3, class: "group", text: label })),
        h("th", { colspan: 2, text: "Stop reasons" }),
      ),
      h(
        "tr",
        {},
        ["A", "B"].map((t) => h("th", { text: t })),
        FIGURES.map(() => ["A", "B", "Δ"].map((t) => h("th", { class: t === "Δ" ? "delta" : "", text: t }))),
        ["A", "B"].map((t) => h("th", { text: t })),
      ),
    ];
  }

  figureCells(row) {
    return FIGURES.map(([key, , show]) => [
      h("td", { class: "num", text: show(row[key].a) }),
      h("td", { class: "num", text: show(row[key].b) }),
      deltaCell(row[key], show),
    ]);
  }

  unitsTable(units) {
    const rows = units.map((u) =>
      h(
        "tr",
        {
          "data-unit": u.unit,
          class: u.changed ? "changed" : "",
          "data-changed": String(u.changed),
          on: { click: () => this.select(u.unit) },
        },
        h("td", { class: "unit" }, u.unit, " ", onlyTag(u)),
        outcomeCell(u.status.a, u.status.a ? u.reason.a : null),
        outcomeCell(u.status.b, u.status.b ? u.reason.b : null),
        this.figureCells(u),
        h("td", { class: "reasons", text: reasonsText(u.stop_reasons.a) }),
        h("td", { class: "reasons", text: reasonsText(u.stop_reasons.b) }),
      ),
    );
    return h("table", { class: "runs-table compare-table compare-units" }, h("thead", {}, this.figureHead()), h("tbody", {}, rows));
  }

  tasksTable(tasks) {
    const head = this.figureHead();
    head[0].firstChild.textContent = "Task";
    const rows = tasks.map((t) =>
      h(
        "tr",
        {
          "data-unit": t.unit,
          "data-task": t.task,
          class: t.changed ? "changed" : "",
          "data-changed": String(t.changed),
        },
        h(
          "td",
          { class: "unit", title: t.title || "" },
          `${t.unit} #${t.task}`,
          t.title ? h("span", { class: "muted task-title", text: ` ${t.title}` }) : null,
          " ",
          onlyTag(t),
        ),
        outcomeCell(t.status.a, t.stop_reason.a),
        outcomeCell(t.status.b, t.stop_reason.b),
        this.figureCells(t),
        h("td", { class: "reasons", text: reasonsText(t.stop_reasons.a) }),
        h("td", { class: "reasons", text: reasonsText(t.stop_reasons.b) }),
      ),
    );
    return h("table", { class: "runs-table compare-table compare-tasks" }, h("thead", {}, head), h("tbody", {}, rows));
  }

  // --- the graphs -------------------------------------------------------------

  graphCard(data) {
    this.graphBoxes = {};
    const boxes = SIDES.map((side) => {
      const box = h("div", { class: "graph-body" });
      this.graphBoxes[side] = box;
      return h(
        "div",
        { class: `compare-graph side-${side}`, "data-side": side },
        h("div", { class: "card-head" }, h("h2", { text: `${side.toUpperCase()} · ${data[side].id}` })),
        box,
      );
    });
    return h(
      "div",
      { class: "card graph-card compare-graphs" },
      h(
        "div",
        { class: "card-head" },
        h("h2", { text: "Dependency graphs" }),
        h("span", { class: "hint", text: "the same layout for both; units whose outcome changed are marked" }),
      ),
      (this.graphPair = h("div", { class: "compare-graph-pair" }, boxes)),
    );
  }

  drawGraphs(data) {
    const laid = layout(data.graph); // once, for both
    // Side by side when both fit, else one above the other (a unit then keeps its column).
    this.graphPair.style.gridTemplateColumns = `repeat(auto-fit, minmax(min(100%, ${laid.width + 16}px), 1fr))`;
    const byUnit = new Map(data.units.map((u) => [u.unit, u]));
    for (const side of SIDES) {
      const view = new GraphView(this.graphBoxes[side], data.graph, { onSelect: (id) => this.select(id), laid });
      view.update(this.unitsOf(side, byUnit), data[side].status);
      for (const group of this.graphBoxes[side].querySelectorAll(".node[data-unit]")) {
        const unit = byUnit.get(group.dataset.unit);
        if (!unit || !unit.changed) continue;
        group.classList.add("changed");
        group.dataset.changed = "true";
        const title = group.querySelector("title");
        const was = unit.status.a || "absent";
        const now = unit.status.b || "absent";
        if (title) title.textContent += ` — changed: ${was} in A, ${now} in B`;
      }
      this.graphs[side] = view;
    }
  }

  /** What GraphView asks of its units (as UnitStates answers it), for one side. */
  unitsOf(side, byUnit) {
    return {
      view: (id) => {
        const u = byUnit.get(id);
        const status = u && u.status[side];
        if (!status) return { status: ABSENT, done: 0, tasks: 0, usage: null };
        const usage = { attempts: u.attempts[side] || 0, cost_usd: u.cost_usd[side], cost_estimated: u.cost_estimated };
        return { status, done: u.done[side] || 0, tasks: u.tasks[side] || 0, usage };
      },
    };
  }

  select(unit) {
    for (const view of Object.values(this.graphs)) view.select(unit);
    for (const row of this.root.querySelectorAll(".compare-units tr[data-unit]")) {
      row.classList.toggle("selected", row.dataset.unit === unit);
    }
    const row = [...this.root.querySelectorAll(".compare-units tr[data-unit]")].find((r) => r.dataset.unit === unit);
    row?.scrollIntoView({ block: "nearest" });
  }

  restored() {
    this.key = null;
    this.update(this.state);
  }

  destroy() {
    this.controller?.abort();
  }
}
