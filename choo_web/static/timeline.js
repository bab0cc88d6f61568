// The event timeline: a virtual list of fixed-height rows. Only the rows in
// view (and a few either side) are in the DOM, whatever the run's size; one
// row at a time can be opened to show its payload, adding a fixed height.
//
// Past MAX_PX of content the scrollbar is scaled (browsers cap element
// heights), so the position maps onto the rows proportionally.
//
// From the keyboard: the arrows (and Page Up/Down, Home, End) move a cursor
// through the rows, Enter opens or closes the row under it, Escape closes.
// Times are shown as the time toggle says (format.js): the rows and the open
// row's detail alike; relative times count from `origin` (the run's start).

import { h, put } from "./dom.js";
import { kindOf, markerOf } from "./eventtypes.js";
import { clock, duration, fullTime, zoneLabel } from "./format.js";
import { markTerms } from "./marks.js";
import { link, taskKey } from "./state.js";

export const ROW_H = 28;
export const DETAIL_H = 220;
const OVERSCAN = 10;
const MAX_PX = 8_000_000;
const SUMMARY_SKIP = new Set(["graph", "output_tail", "resume_id"]);

function outcome(type) {
  if (/(\.failed|\.fail|\.blocked|\.stopped)$/.test(type)) return "bad";
  if (/(\.completed|\.ok|\.resumed)$/.test(type)) return "good";
  if (/\.retry$/.test(type)) return "warn";
  return "";
}

function scalar(key, value) {
  if (value === null || value === undefined) return null;
  if (key.endsWith("_ms") && typeof value === "number") return duration(value);
  if (Array.isArray(value))
    return value.length <= 6 && value.every((v) => typeof v !== "object")
      ? value.join(", ")
      : `[${value.length}]`;
  if (typeof value === "object") return null;
  const text = String(value);
  return text.length > 160 ? `${text.slice(0, 159)}…` : text;
}

/** One line about an event's payload: "title Routes · attempts 1 · duration 1.1 s". */
export function summary(event) {
  const parts = [];
  if (event.error) parts.push(`error: ${event.error}`);
  const payload = event.payload;
  if (payload && typeof payload === "object") {
    for (const [key, value] of Object.entries(payload)) {
      if (SUMMARY_SKIP.has(key)) continue;
      const text = scalar(key, value);
      if (text !== null && text !== "") parts.push(`${key.replace(/_ms$/, "").replace(/_/g, " ")} ${text}`);
    }
  } else if (payload !== null && payload !== undefined) {
    parts.push(String(payload));
  }
  return parts.join(" · ");
}

function markerRow(event, origin) {
  const stopped = markerOf(event.type) === "stop";
  const reason = event.payload && typeof event.payload === "object" ? event.payload.reason : null;
  return [
    h("span", { class: "ev-seq", text: `#${event.seq}` }),
    h("span", { class: "ev-time", title: event.time, text: clock(event.time, origin) }),
    h(
      "span",
      { class: "ev-marker" },
      h("b", { text: stopped ? "■ Run stopped" : "▶ Run resumed" }),
      reason ? ` — ${reason}` : "",
    ),
  ];
}

function eventCells(event, origin) {
  return [
    h("span", { class: "ev-seq", text: `#${event.seq}` }),
    h("span", { class: "ev-time", title: event.time, text: clock(event.time, origin) }),
    h("span", { class: "ev-type", text: event.type }),
    h("span", { class: "ev-unit", text: event.unit ?? "" }),
    h("span", {
      class: "ev-task",
      text: event.task === null || event.task === undefined ? "" : `#${event.task}`,
    }),
    h("span", { class: "ev-summary", text: summary(event) }),
  ];
}

function detail(event, origin) {
  const fields = [
    ["seq", event.seq],
    ["time", fullTime(event.time, origin)],
    ["type", event.type],
    ["unit", event.unit],
    ["task", event.task],
    ["pr", event.pr],
  ].filter(([, v]) => v !== null && v !== undefined);
  return h(
    "div",
    { class: "ev-detail" },
    h(
      "div",
      { class: "ev-facts" },
      h(
        "dl",
        {},
        fields.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]),
      ),
      event.unit && Number.isInteger(event.task)
        ? h("a", {
            class: "ev-open-task",
            href: link({ task: taskKey(event.unit, event.task) }),
            text: `task #${event.task}'s attempts →`,
          })
        : null,
    ),
    event.error ? h("div", { class: "ev-error", text: event.error }) : null,
    h("pre", {
      class: "ev-payload",
      tabindex: 0, // it scrolls: the keyboard must reach it
      "aria-label": "payload",
      text:
        event.payload === null || event.payload === undefined
          ? "(no payload)"
          : JSON.stringify(event.payload, null, 2),
    }),
  );
}

export class Timeline {
  /** `onToggle(seq | null)` is called when the user opens or closes a row; `origin`: the run's start. */
  constructor(root, { onToggle, origin = null }) {
    this.onToggle = onToggle;
    this.origin = origin;
    this.list = null;
    this.openSeq = null;
    this.cursor = -1; // the row the keyboard is on
    this.marks = { terms: [], seq: null, version: 0 }; // a search's words, its current match
    this.rows = new Map(); // index → element
    this.frame = 0;
    this.sizer = h("div", { class: "tl-sizer" });
    this.layer = h("div", { class: "tl-layer" });
    this.viewport = h(
      "div",
      { class: "tl-viewport", tabindex: 0, role: "list", "aria-label": "events" },
      this.sizer,
      this.layer,
    );
    this.viewport.addEventListener("scroll", () => this.schedule(), { passive: true });
    this.viewport.addEventListener("click", (event) => this.clicked(event));
    this.viewport.addEventListener("keydown", (event) => this.key(event));
    this.viewport.addEventListener("focus", () => this.focused());
    this.viewport.addEventListener("pointerdown", () => this.viewport.classList.remove("keys"));
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(this.viewport);
    this.timeHead = h("span", { class: "tl-time-head" });
    put(
      root,
      h(
        "div",
        { class: "tl-head", "aria-hidden": "true" },
        h("span", { text: "#" }),
        this.timeHead,
        ["type", "unit", "task", "details"].map((t) => h("span", { text: t })),
      ),
      this.viewport,
    );
    this.labelTime();
  }

  labelTime() {
    this.timeHead.textContent = `time (${zoneLabel()})`;
  }

  /** The times are to be shown another way: draw every row again. */
  redrawTimes() {
    this.labelTime();
    this.clearRows();
    this.render();
  }

  setList(list, { openSeq = null } = {}) {
    this.list = list;
    this.openSeq = openSeq;
    this.cursor = openSeq === null ? -1 : list.indexOfSeq(openSeq);
    this.clearRows();
    this.viewport.scrollTop = 0;
    this.render();
  }

  clearRows() {
    for (const el of this.rows.values()) el.remove();
    this.rows.clear();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  openIndex() {
    return this.openSeq === null || !this.list ? -1 : this.list.indexOfSeq(this.openSeq);
  }

  top(i, open) {
    return i * ROW_H + (open >= 0 && i > open ? DETAIL_H : 0);
  }

  indexAt(y, open) {
    if (open >= 0 && y >= (open + 1) * ROW_H) {
      return y < (open + 1) * ROW_H + DETAIL_H ? open : Math.floor((y - DETAIL_H) / ROW_H);
    }
    return Math.floor(y / ROW_H);
  }

  /** Total content height and the physical (maybe scaled) one. */
  heights(open) {
    const total = (this.list ? this.list.length : 0) * ROW_H + (open >= 0 ? DETAIL_H : 0);
    return { total, physical: Math.min(total, MAX_PX) };
  }

  /** Where the viewport's top is in content coordinates. */
  virtualTop(scrollTop, view, { total, physical }) {
    if (total <= physical || physical <= view) return scrollTop;
    return (scrollTop / (physical - view)) * (total - view);
  }

  render() {
    this.frame = 0;
    const list = this.list;
    if (!list) return;
    const open = this.openIndex();
    const sizes = this.heights(open);
    this.sizer.style.height = `${sizes.physical}px`;
    const view = this.viewport.clientHeight;
    const scrollTop = this.viewport.scrollTop;
    const vTop = this.virtualTop(scrollTop, view, sizes);
    const first = Math.max(0, this.indexAt(vTop, open) - OVERSCAN);
    const last = Math.min(list.length - 1, this.indexAt(vTop + view, open) + OVERSCAN);
    if (last >= first) list.ensure(first, last);
    for (const [i, el] of this.rows) {
      if (i < first || i > last) {
        el.remove();
        this.rows.delete(i);
      }
    }
    for (let i = first; i <= last; i++) {
      const event = list.get(i);
      const key = event
        ? `${event.seq}|${event.seq === this.openSeq}|${this.marks.version}`
        : list.isAbsent(i)
          ? "absent"
          : `wait|${list.error ? 1 : 0}`;
      let el = this.rows.get(i);
      if (!el || el.dataset.key !== key) {
        const fresh = this.build(event, i, list);
        fresh.dataset.key = key;
        if (el) el.replaceWith(fresh);
        else this.layer.append(fresh);
        this.rows.set(i, fresh);
        el = fresh;
      }
      el.style.transform = `translateY(${scrollTop + this.top(i, open) - vTop}px)`;
      // A class, not a new row: a row replaced under the pointer would lose its click.
      el.classList.toggle("cursor", i === this.cursor);
    }
  }

  build(event, i, list) {
    if (!event) {
      if (list.isAbsent(i))
        return h("div", { class: "ev absent", role: "listitem", text: "(no event with this seq)" });
      if (list.error) {
        return h(
          "div",
          { class: "ev failed-load", role: "listitem" },
          h("span", { text: `Could not load events: ${list.error.message} ` }),
          h("button", { type: "button", class: "link", "data-retry": "1", text: "Retry" }),
        );
      }
      return h("div", { class: "ev loading", role: "listitem", text: "Loading events…" });
    }
    const marker = markerOf(event.type);
    const isMarker = event.marker || marker !== null;
    const classes = ["ev", `cat-${kindOf(event.type)}`];
    const tone = outcome(event.type);
    if (tone) classes.push(`tone-${tone}`);
    if (isMarker) classes.push("marker", marker === "stop" ? "marker-stop" : "marker-resume");
    const isOpen = event.seq === this.openSeq;
    if (isOpen) classes.push("open");
    if (event.seq === this.marks.seq) classes.push("search-current");
    const cells = isMarker ? markerRow(event, this.origin) : eventCells(event, this.origin);
    const line = h("div", { class: "ev-line" }, cells);
    const row = h(
      "div",
      {
        class: classes.join(" "),
        role: "listitem",
        "data-seq": event.seq,
        "data-type": event.type,
        "aria-expanded": String(isOpen),
      },
      line,
      isOpen ? detail(event, this.origin) : null,
    );
    markTerms(row, this.marks.terms);
    return row;
  }

  /** Mark a search's words in the rows (as text), `seq` its current match. */
  setMarks(terms, seq) {
    this.marks = { terms, seq, version: this.marks.version + 1 };
    this.render();
  }

  clicked(event) {
    if (event.target.closest("[data-retry]")) {
      this.list.error = null;
      this.render();
      return;
    }
    if (event.target.closest(".ev-detail")) return;
    const row = event.target.closest(".ev[data-seq]");
    if (!row) return;
    const seq = Number(row.dataset.seq);
    this.cursor = this.list.indexOfSeq(seq);
    this.toggle(seq);
  }

  /** Open `seq`'s row, or close it if it is the open one, as a click does. */
  toggle(seq) {
    this.open(this.openSeq === seq ? null : seq);
    this.onToggle(this.openSeq);
  }

  /** Focus came to the list: put the cursor on the open row, or the first in view. */
  focused() {
    if (this.cursor >= 0 || !this.list || !this.list.length) return;
    const open = this.openIndex();
    const sizes = this.heights(open);
    const vTop = this.virtualTop(this.viewport.scrollTop, this.viewport.clientHeight, sizes);
    this.cursor = open >= 0 ? open : Math.min(this.list.length - 1, Math.max(0, Math.ceil(vTop / ROW_H)));
    this.render();
  }

  key(event) {
    if (!this.list || !this.list.length || event.altKey || event.ctrlKey || event.metaKey) return;
    const page = Math.max(1, Math.floor(this.viewport.clientHeight / ROW_H) - 1);
    const last = this.list.length - 1;
    const moves = {
      ArrowDown: 1,
      ArrowUp: -1,
      PageDown: page,
      PageUp: -page,
      Home: -Infinity,
    };
    if (event.key === "End") {
      event.preventDefault();
      this.viewport.classList.add("keys");
      this.toLast();
    } else if (event.key in moves) {
      event.preventDefault();
      this.viewport.classList.add("keys");
      const from = this.cursor < 0 ? 0 : this.cursor;
      this.moveCursor(Math.min(last, Math.max(0, from + moves[event.key])));
    } else if (event.key === "Enter" || event.key === " ") {
      const row = this.cursor >= 0 ? this.list.get(this.cursor) : null;
      if (!row) return;
      event.preventDefault();
      this.viewport.classList.add("keys");
      this.toggle(row.seq);
    } else if (event.key === "Escape" && this.openSeq !== null) {
      event.preventDefault();
      this.toggle(this.openSeq);
    }
  }

  moveCursor(i) {
    this.cursor = i;
    this.revealIndex(i);
    this.render();
  }

  /** Scroll just enough for row `i` (and its detail, if open) to be in view. */
  revealIndex(i) {
    const open = this.openIndex();
    const sizes = this.heights(open);
    const view = this.viewport.clientHeight;
    const vTop = this.virtualTop(this.viewport.scrollTop, view, sizes);
    const top = this.top(i, open);
    const bottom = top + ROW_H + (i === open ? DETAIL_H : 0);
    let target = null;
    if (top < vTop) target = top;
    else if (bottom > vTop + view) target = Math.min(top, bottom - view);
    if (target === null) return;
    const scaled =
      sizes.total <= sizes.physical || sizes.physical <= view
        ? target
        : (target / (sizes.total - view)) * (sizes.physical - view);
    this.viewport.scrollTop = scaled;
  }

  open(seq) {
    this.openSeq = seq;
    this.render();
  }

  /** Scroll so that `seq`'s row is in view (near the top); false if not loaded. */
  scrollToSeq(seq) {
    const i = this.list ? this.list.indexOfSeq(seq) : -1;
    if (i < 0) return false;
    const open = this.openIndex();
    const sizes = this.heights(open);
    const view = this.viewport.clientHeight;
    const target = Math.max(0, this.top(i, open) - ROW_H * 2);
    const scaled =
      sizes.total <= sizes.physical || sizes.physical <= view
        ? target
        : (target / (sizes.total - view)) * (sizes.physical - view);
    this.viewport.scrollTop = scaled;
    this.render();
    return true;
  }

  atBottom() {
    const v = this.viewport;
    return v.scrollTop + v.clientHeight >= v.scrollHeight - ROW_H;
  }

  /** To the last row; a list loaded page by page first fetches its last page. */
  async scrollToEnd() {
    const list = this.list;
    if (list && list.toEnd) await list.toEnd();
    if (list !== this.list) return;
    this.sizer.style.height = `${this.heights(this.openIndex()).physical}px`;
    this.viewport.scrollTop = this.viewport.scrollHeight;
    this.render();
  }

  /** End: the cursor to the last matching event, however many are not loaded yet. */
  async toLast() {
    const list = this.list;
    await this.scrollToEnd();
    if (list !== this.list || !list.length) return;
    this.moveCursor(list.length - 1);
  }

  /** Rows were put before the ones in view: keep those where they are. */
  shift(rows) {
    if (!rows) return;
    this.viewport.scrollTop += rows * ROW_H;
  }

  /** Rows were added at the end: follow them if the user was at the end. */
  grew(follow) {
    const stick = follow && this.atBottom();
    this.render();
    if (stick) this.scrollToEnd();
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.resize.disconnect();
    this.list?.destroy();
  }
}
