// Where a run's time went (GET /api/history/runs/{id}/lanes), as SVG: a lane
// per unit with its waits and a bar per task attempt (agent, then
// validation), colored by why the attempt ended; the run's stop/resume gaps
// across every lane; its critical path outlined, with its total. Wheel or
// the buttons zoom, dragging pans; a bar (clicked, or Enter on it) opens its
// task's events. Everything is laid out by the daemon: this only draws it.

import { getJSON } from "./api.js";
import { runPath } from "./boot.js";
import { h, put, s } from "./dom.js";
import { duration, plural } from "./format.js";
import { stopReason } from "./stops.js";

const LABEL_W = 160;
const LANE_H = 28;
const BAR_H = 16;
const AXIS_H = 24;
const PAD_R = 16;
const MIN_SPAN = 200; // ms: the deepest zoom
const STEP = 1.4; // one zoom step
const REFRESH_MS = 1500; // a running run's lanes are asked for again at most this often
const TICKS = [
  ...[100, 250, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000],
  ...[60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000],
];

const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

/** "agent 3.0 s, validation 1.0 s" and why the attempt ended, for a bar's label. */
function barText(b) {
  const why = kindOf(b).label;
  const parts = [`${b.unit} task ${b.task}${b.title ? ` (${b.title})` : ""}, attempt ${b.attempt}: ${why}`];
  // The measured times when known; a segment still running, as drawn so far.
  parts.push(`agent ${duration(b.agent_ms ?? b.agent_end_ms - b.start_ms)}`);
  if (b.validation_start_ms !== null)
    parts.push(`validation ${duration(b.validation_ms ?? b.end_ms - b.validation_start_ms)}`);
  parts.push(`${duration(b.end_ms - b.start_ms)} in all`);
  if (b.critical) parts.push("on the critical path");
  return parts.join(", ");
}

// Bars not ended by a stop reason: still running, interrupted by a stop, or ended without one.
const UNREASONED = {
  open: { tone: "running", label: "running" },
  stopped: { tone: "interrupted", label: "interrupted by a stop" },
  finished: { tone: "neutral", label: "ended" },
};

/** What a bar is colored by: {key (its stop reason, else how it ended), tone, label}. */
function kindOf(b) {
  const key = b.stop_reason ?? b.ended;
  const known = b.stop_reason ? stopReason(b.stop_reason) : UNREASONED[b.ended] || UNREASONED.finished;
  return { key, tone: known.tone, label: known.label };
}

export class LanesView {
  /** `onOpen(bar)`: a bar was chosen (its unit, task, attempt and seq). */
  constructor(root, runId, { onOpen }) {
    this.root = root;
    this.runId = runId;
    this.onOpen = onOpen;
    this.data = null;
    this.view = null; // {start, span} in ms; null: fit the run
    this.items = []; // [fn(x)] that place one drawn thing
    this.timer = 0;
    this.controller = null;
    put(root, h("div", { class: "loading-block", text: "Loading lanes…" }));
    // A wider or narrower box: drawn again to fit it (once a frame at most).
    this.resized = new ResizeObserver(() => {
      const width = Math.max(480, root.clientWidth);
      if (!this.data || !root.clientWidth || Math.abs(width - this.width) < 8 || this.frame) return;
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.render();
      });
    });
    this.resized.observe(root);
  }

  async load() {
    this.controller?.abort();
    const controller = (this.controller = new AbortController());
    let data;
    try {
      data = await getJSON(runPath(this.runId, "/lanes"), {}, { signal: controller.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      const text = `Could not load the lanes: ${error.message}`;
      if (!this.data) put(this.root, h("p", { class: "muted empty-graph", text }));
      return;
    }
    this.data = data;
    this.render();
  }

  /** The run moved on: ask again, at most every REFRESH_MS. */
  poke() {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = 0;
      this.load();
    }, REFRESH_MS);
  }

  // --- drawing ---------------------------------------------------------------

  render() {
    const began = performance.now();
    const data = this.data;
    if (!data.lanes.length) {
      put(this.root, h("p", { class: "muted empty-graph", text: "No unit has started in this run yet." }));
      return;
    }
    this.width = Math.max(480, this.root.clientWidth || 900);
    this.height = data.lanes.length * LANE_H + 4;
    this.items = [];
    this.svg = s("svg", {
      class: "lanes-svg",
      width: this.width,
      height: this.height,
      role: "group",
      "aria-label": `lanes of ${plural(data.lanes.length, "unit")}`,
    });
    // The axis stays in view over the lanes as they scroll (a sticky SVG of its own).
    this.axis = s("g", { class: "lanes-axis" });
    const axisSvg = s("svg", { class: "lanes-axis-svg", width: this.width, height: AXIS_H, "aria-hidden": "true" }, this.axis);
    this.grid = s("g", { class: "lanes-grid" });
    const plot = s("g", { "clip-path": "url(#lanes-clip)" });
    this.svg.append(
      s(
        "defs",
        {},
        s(
          "clipPath",
          { id: "lanes-clip" },
          s("rect", { x: LABEL_W, y: 0, width: this.width - LABEL_W, height: this.height }),
        ),
      ),
      plot,
    );
    const rows = new Map();
    data.lanes.forEach((lane, i) => rows.set(lane.unit, i * LANE_H));
    // Backgrounds, then the gaps over them, then what the lanes hold (bars stay clickable).
    const backs = s("g", { class: "lanes-backs" });
    data.lanes.forEach((lane) =>
      backs.append(s("rect", { class: "lane-bg", x: 0, y: rows.get(lane.unit), width: this.width, height: LANE_H })),
    );
    plot.append(backs, this.drawGaps(), this.grid);
    data.lanes.forEach((lane) => plot.append(this.drawLane(lane, rows.get(lane.unit))));
    plot.append(this.drawPath(rows));
    if (data.open) plot.append(this.span(s("line", { class: "lanes-now", y1: 0, y2: this.height }), data.end_ms, null, "line"));
    this.svg.append(this.drawLabels(rows));
    const before = this.root.querySelector(".lanes-plot");
    const top = before ? before.scrollTop : 0;
    const plotBox = h(
      "div",
      { class: "lanes-plot", tabindex: "0", "aria-label": "lanes: arrows pan, + and − zoom, 0 fits" },
      axisSvg,
      this.svg,
    );
    this.listen(plotBox);
    put(this.root, this.toolbar(), plotBox, this.legend());
    plotBox.scrollTop = top;
    this.place();
    this.svg.dataset.bars = String(data.lanes.reduce((n, l) => n + l.bars.length, 0));
    this.root.dataset.drawMs = String(Math.round(performance.now() - began));
    this.svg.dataset.ready = "1";
  }

  /** Keep `el` at [a, b] ms (b null: a point) as the view changes. */
  span(el, a, b, kind = "rect") {
    const y = kind === "line";
    this.items.push((x) => {
      if (y) {
        el.setAttribute("x1", x(a));
        el.setAttribute("x2", x(a));
      } else {
        const left = x(a);
        el.setAttribute("x", left);
        el.setAttribute("width", Math.max(1, x(b) - left));
      }
    });
    return el;
  }

  drawLane(lane, top) {
    const mid = top + LANE_H / 2;
    const g = s("g", {
      class: `lane status-${lane.status}${lane.critical ? " critical" : ""}`,
      "data-unit": lane.unit,
    });
    for (const w of lane.waits) {
      const ready = w.ready_ms ?? w.end_ms;
      if (ready > w.start_ms) {
        const deps = s("rect", { class: "lane-wait-deps", y: mid - 1, height: 2 });
        deps.append(s("title", { text: `${lane.unit} waited ${duration(ready - w.start_ms)} for its dependencies` }));
        g.append(this.span(deps, w.start_ms, ready));
      }
      if (w.ready_ms !== null && w.end_ms > w.ready_ms) {
        const queued = s("rect", { class: "lane-wait", y: mid - 5, height: 10 });
        queued.append(s("title", { text: `${lane.unit} queued ${duration(w.end_ms - w.ready_ms)} for a free slot` }));
        g.append(this.span(queued, w.ready_ms, w.end_ms));
      }
    }
    for (const r of lane.runs) {
      const run = s("rect", { class: `lane-run run-${r.status}`, y: top + 3, height: LANE_H - 6, rx: 3 });
      run.append(s("title", { text: `${lane.unit} ran ${duration(r.end_ms - r.start_ms)} (${r.status})` }));
      g.append(this.span(run, r.start_ms, r.end_ms));
    }
    for (const b of lane.bars) g.append(this.drawBar(b, top + (LANE_H - BAR_H) / 2));
    return g;
  }

  drawBar(b, y) {
    const label = barText(b);
    const kind = kindOf(b);
    const g = s("g", {
      class: `lane-bar tone-${kind.tone}${b.critical ? " critical" : ""}`,
      tabindex: "0",
      role: "button",
      "aria-label": `${label}; open its events`,
      "data-unit": b.unit,
      "data-task": String(b.task),
      "data-attempt": String(b.attempt),
      "data-seq": String(b.seq),
      "data-stop": kind.key,
    });
    g.append(s("title", { text: label }));
    g.append(this.span(s("rect", { class: "bar-span", y: y + BAR_H / 2 - 1, height: 2 }), b.start_ms, b.end_ms));
    g.append(this.span(s("rect", { class: "bar-agent", y, height: BAR_H, rx: 2 }), b.start_ms, b.agent_end_ms));
    if (b.validation_start_ms !== null) {
      g.append(
        this.span(s("rect", { class: "bar-check", y: y + 3, height: BAR_H - 6, rx: 1 }), b.validation_start_ms, b.end_ms),
      );
    }
    const open = (e) => {
      if (this.dragged) return;
      e.preventDefault();
      this.onOpen(b);
    };
    g.addEventListener("click", open);
    g.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") open(e);
    });
    return g;
  }

  drawGaps() {
    const g = s("g", { class: "lanes-gaps" });
    for (const gap of this.data.gaps) {
      const end = gap.end_ms ?? this.data.end_ms;
      const rect = s("rect", { class: "lane-gap", y: 0, height: this.height, "data-stop-seq": String(gap.stop_seq) });
      const why = gap.reason ? `: ${gap.reason}` : "";
      const until = gap.end_ms === null ? " (not resumed)" : `, resumed after ${duration(end - gap.start_ms)}`;
      rect.append(s("title", { text: `stopped${why}${until}` }));
      g.append(this.span(rect, gap.start_ms, end));
    }
    return g;
  }

  /** The critical path: each unit on it outlined, and a link from each to the next. */
  drawPath(rows) {
    const g = s("g", { class: "lanes-path" });
    const steps = this.data.critical_path.steps;
    steps.forEach((step, i) => {
      const top = rows.get(step.unit);
      const outline = s("rect", { class: "path-step", y: top + 1, height: LANE_H - 2, rx: 4, "data-unit": step.unit });
      g.append(this.span(outline, step.start_ms, step.end_ms));
      const prev = steps[i - 1];
      if (!prev) return;
      const link = s("path", { class: "path-link" });
      const y1 = rows.get(prev.unit) + LANE_H / 2;
      const y2 = top + LANE_H / 2;
      this.items.push((x) => {
        link.setAttribute("d", `M${x(prev.end_ms)},${y1} L${x(prev.end_ms)},${y2} L${x(step.start_ms)},${y2}`);
      });
      g.append(link);
    });
    return g;
  }

  drawLabels(rows) {
    const g = s("g", { class: "lanes-labels" });
    g.append(s("rect", { class: "lanes-label-bg", x: 0, y: 0, width: LABEL_W, height: this.height }));
    for (const lane of this.data.lanes) {
      const y = rows.get(lane.unit) + LANE_H / 2 + 4;
      const text = s("text", { class: `lane-label${lane.critical ? " critical" : ""}`, x: 10, y, text: clip(lane.unit, 20) });
      text.append(s("title", { text: `${lane.unit}: ${lane.status}` }));
      g.append(text);
    }
    return g;
  }

  toolbar() {
    const path = this.data.critical_path;
    const names = path.steps.map((step) => step.unit).join(" → ");
    const stopped = path.stopped_ms ? ` (${duration(path.stopped_ms)} of it stopped)` : "";
    const button = (text, title, fn) =>
      h("button", { type: "button", class: "lanes-zoom", title, "aria-label": title, text, on: { click: fn } });
    return h(
      "div",
      { class: "lanes-bar" },
      h("span", { class: "lanes-total-label", text: "Critical path " }),
      h("strong", { class: "lanes-total", "data-ms": String(path.duration_ms), text: duration(path.duration_ms) }),
      h("span", { class: "lanes-path-units", title: names, text: names ? ` ${names}${stopped}` : " none yet" }),
      h("span", { class: "spacer" }),
      button("−", "zoom out", () => this.zoom(1 / STEP)),
      button("+", "zoom in", () => this.zoom(STEP)),
      button("Fit", "fit the whole run", () => this.fit()),
    );
  }

  legend() {
    const item = (cls, text) => h("span", { class: `legend-item ${cls}` }, h("span", { class: "swatch" }), text);
    const kinds = new Map(); // the kinds of bar drawn, in the order first seen
    for (const lane of this.data.lanes)
      for (const b of lane.bars) {
        const kind = kindOf(b);
        if (!kinds.has(kind.key)) kinds.set(kind.key, kind);
      }
    return h(
      "div",
      { class: "legend lanes-legend" },
      [...kinds.values()].map((k) =>
        h("span", { class: `legend-item tone-${k.tone}`, "data-stop": k.key }, h("span", { class: "swatch" }), k.label),
      ),
      item("lg-check", "validation (thin)"),
      item("lg-wait", "queued for a slot"),
      item("lg-gap", "stopped"),
      item("lg-path", "critical path"),
    );
  }

  // --- zoom and pan ----------------------------------------------------------

  get full() {
    const d = this.data;
    return { start: 0, span: Math.max(1000, d.end_ms, d.critical_path.end_ms || 0) * 1.02 };
  }

  place() {
    const view = this.view || this.full;
    const scale = (this.width - LABEL_W - PAD_R) / view.span;
    const x = (ms) => (LABEL_W + (ms - view.start) * scale).toFixed(1);
    for (const fn of this.items) fn(x);
    this.drawAxis(view, scale);
    this.svg.dataset.start = String(Math.round(view.start));
    this.svg.dataset.span = String(Math.round(view.span));
  }

  drawAxis(view, scale) {
    const step = TICKS.find((t) => t * scale >= 80) || TICKS[TICKS.length - 1];
    const ticks = [s("rect", { class: "lanes-axis-bg", x: 0, y: 0, width: this.width, height: AXIS_H })];
    const lines = [];
    for (let t = Math.ceil(view.start / step) * step; t <= view.start + view.span; t += step) {
      const x = LABEL_W + (t - view.start) * scale;
      ticks.push(s("line", { class: "lanes-tick", x1: x, x2: x, y1: AXIS_H - 5, y2: AXIS_H }));
      lines.push(s("line", { class: "lanes-tick", x1: x, x2: x, y1: 0, y2: this.height }));
      if (x > this.width - 40) continue; // no room for its label
      ticks.push(s("text", { class: "lanes-tick-label", x: x + 3, y: AXIS_H - 8, text: t === 0 ? "0" : duration(t) }));
    }
    this.axis.replaceChildren(...ticks);
    this.grid.replaceChildren(...lines);
  }

  zoom(factor, anchor = null) {
    const view = this.view || this.full;
    const span = Math.min(this.full.span * 4, Math.max(MIN_SPAN, view.span / factor));
    const at = anchor ?? view.start + view.span / 2;
    this.view = { start: at - ((at - view.start) * span) / view.span, span };
    this.clamp();
    this.place();
  }

  pan(ms) {
    const view = this.view || this.full;
    this.view = { start: view.start + ms, span: view.span };
    this.clamp();
    this.place();
  }

  fit() {
    this.view = null;
    this.place();
  }

  clamp() {
    const full = this.full;
    const v = this.view;
    v.start = Math.min(Math.max(v.start, -v.span * 0.5), full.span - v.span * 0.5);
  }

  listen(box) {
    const msAt = (clientX) => {
      const view = this.view || this.full;
      const left = box.getBoundingClientRect().left + LABEL_W;
      return view.start + ((clientX - left) * view.span) / (this.width - LABEL_W - PAD_R);
    };
    box.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        this.zoom(e.deltaY < 0 ? STEP : 1 / STEP, msAt(e.clientX));
      },
      { passive: false },
    );
    let drag = null;
    box.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      drag = { x: e.clientX, start: (this.view || this.full).start };
      this.dragged = false;
    });
    box.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x;
      if (!this.dragged && Math.abs(dx) < 4) return;
      if (!this.dragged) box.setPointerCapture(e.pointerId);
      this.dragged = true;
      const view = this.view || this.full;
      this.view = { start: drag.start - (dx * view.span) / (this.width - LABEL_W - PAD_R), span: view.span };
      this.clamp();
      this.place();
    });
    const end = () => {
      drag = null;
      setTimeout(() => (this.dragged = false)); // the click that ends a drag opens nothing
    };
    box.addEventListener("pointerup", end);
    box.addEventListener("pointercancel", end);
    box.addEventListener("keydown", (e) => {
      if (e.target !== box) return;
      const view = this.view || this.full;
      const keys = {
        ArrowLeft: () => this.pan(-view.span / 10),
        ArrowRight: () => this.pan(view.span / 10),
        "+": () => this.zoom(STEP),
        "=": () => this.zoom(STEP),
        "-": () => this.zoom(1 / STEP),
        0: () => this.fit(),
      };
      const fn = keys[e.key];
      if (!fn) return;
      e.preventDefault();
      fn();
    });
  }

  destroy() {
    this.resized.disconnect();
    cancelAnimationFrame(this.frame);
    this.controller?.abort();
    clearTimeout(this.timer);
    this.timer = 0;
  }
}
