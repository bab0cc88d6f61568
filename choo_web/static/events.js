// A run's events as a list the timeline can index, loaded page by page.
//
// IndexedEvents: no filter, and the run's seqs are 1..N with no gap, so row
// i is seq i+1 and any part of the run can be fetched at once (after=i).
// SequentialEvents: a filter (or a run with gaps): rows are known only
// in order, so pages load one after another as the user scrolls towards
// the end. Stop/resume markers are slotted in between the matching events
// so that the boundaries stay visible whatever the filter.
//
// Both call `onChange` when rows arrive and take live events with append().

import { getJSON } from "./api.js";
import { FIRST_PAGE, runPath } from "./boot.js";
import { markerOf } from "./eventtypes.js";

const BLOCK = FIRST_PAGE; // rows per request when jumping around (the first page is block 0)
const MAX_INFLIGHT = 4;
const MAX_CACHED = 60_000; // events kept; the farthest from view are dropped first
const PAGE = 500;
const PREFETCH = 150; // rows before the end at which the next page is asked for
const LAST_SEQ = Number.MAX_SAFE_INTEGER; // `before` this: the last page

/** Does `event` pass the filter? A type ending in "." is a prefix ("task."). */
export function matches(filter, event) {
  if (filter.unit && event.unit !== filter.unit) return false;
  if (!filter.type) return true;
  return filter.type.endsWith(".") ? event.type.startsWith(filter.type) : event.type === filter.type;
}

const eventsUrl = (runId) => runPath(runId, "/events");

export class IndexedEvents {
  constructor(runId, length, onChange) {
    this.runId = runId;
    this.length = length;
    this.onChange = onChange;
    this.events = new Map(); // seq → event
    this.absent = new Set(); // seqs the store does not have
    this.inflight = new Set(); // block numbers
    this.focus = 0;
    this.error = null;
    this.controller = new AbortController();
  }

  get complete() {
    return true;
  }

  get(i) {
    return this.events.get(i + 1);
  }

  isAbsent(i) {
    return this.absent.has(i + 1);
  }

  indexOfSeq(seq) {
    return seq >= 1 && seq <= this.length ? seq - 1 : -1;
  }

  ensure(first, last) {
    this.focus = (first + last) / 2;
    for (let b = Math.floor(first / BLOCK); b <= Math.floor(last / BLOCK); b++) {
      if (this.inflight.size >= MAX_INFLIGHT) return;
      if (this.inflight.has(b)) continue;
      const start = this.firstMissing(b);
      if (start !== null) this.fetch(b, start);
    }
  }

  firstMissing(block) {
    const end = Math.min(this.length, (block + 1) * BLOCK);
    for (let i = block * BLOCK; i < end; i++) {
      if (!this.events.has(i + 1) && !this.absent.has(i + 1)) return i;
    }
    return null;
  }

  async fetch(block, start) {
    this.inflight.add(block);
    const end = Math.min(this.length, (block + 1) * BLOCK);
    try {
      const page = await getJSON(
        eventsUrl(this.runId),
        { after: start, limit: end - start },
        { signal: this.controller.signal },
      );
      this.accept(page, start, end);
    } catch (error) {
      if (error.name === "AbortError") return;
      this.error = error;
    } finally {
      this.inflight.delete(block);
    }
    this.onChange();
  }

  accept(page, start, end) {
    for (const event of page.events) this.events.set(event.seq, event);
    const last = page.next_after === null ? end : Math.min(end, page.events.at(-1).seq);
    for (let seq = start + 1; seq <= last; seq++) if (!this.events.has(seq)) this.absent.add(seq);
    this.error = null;
    this.evict();
  }

  /** The first page, fetched (after=0, limit FIRST_PAGE) along with the run. */
  seed(page) {
    this.accept(page, 0, Math.min(this.length, FIRST_PAGE));
  }

  evict() {
    if (this.events.size <= MAX_CACHED) return;
    const centre = this.focus + 1;
    const seqs = [...this.events.keys()].sort((a, b) => Math.abs(b - centre) - Math.abs(a - centre));
    for (const seq of seqs.slice(0, this.events.size - MAX_CACHED * 0.8)) this.events.delete(seq);
  }

  /** A live event; true if it adds a row. */
  append(event) {
    this.events.set(event.seq, event);
    if (this.events.size > MAX_CACHED * 1.1) this.evict();
    if (event.seq <= this.length) return false;
    this.length = event.seq;
    return true;
  }

  destroy() {
    this.controller.abort();
  }
}

export class SequentialEvents {
  /**
   * A window onto the matching events: a run of them in seq order, which
   * grows forward (after=) as the user scrolls down, backward (before=) as
   * they scroll up, and can jump to the end at once (before=, the last page).
   */
  constructor(runId, filter, markers, onChange) {
    this.runId = runId;
    this.filter = filter;
    this.onChange = onChange;
    this.rows = [];
    this.done = false; // nothing matching after the window (for now)
    this.earlier = false; // matching events before the window, not loaded
    this.loading = false;
    this.error = null;
    this.firstSeq = 0; // the window's first and last event (0: none yet)
    this.lastSeq = 0;
    this.total = null; // matching events in the run, as the API counted them
    this.totalExact = true;
    // Markers the filter would hide are slotted in as rows of their own.
    this.markers = markers
      .filter((m) => !matches(filter, { type: m.type, unit: null }))
      .map((m) => ({
        seq: m.seq,
        time: m.time,
        type: m.type,
        unit: null,
        task: null,
        payload: { reason: m.reason },
        marker: true,
      }))
      .sort((a, b) => a.seq - b.seq);
    this.controller = new AbortController();
  }

  get complete() {
    return this.done && !this.earlier;
  }

  /** A leading "loading" row while earlier events may be loaded. */
  get lead() {
    return this.earlier ? 1 : 0;
  }

  /** Rows, plus a "loading" row at either end while more may come that way. */
  get length() {
    return this.lead + this.rows.length + (this.done ? 0 : 1);
  }

  /** Matching events: the API's count when known, else those loaded. */
  get count() {
    if (this.total !== null) return this.total;
    return this.rows.length - this.rows.filter((r) => r.marker).length;
  }

  get(i) {
    return this.rows[i - this.lead];
  }

  isAbsent() {
    return false;
  }

  indexOfSeq(seq) {
    let lo = 0;
    let hi = this.rows.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const at = this.rows[mid].seq;
      if (at === seq) return mid + this.lead;
      if (at < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  ensure(first, last) {
    if (this.loading || this.error) return;
    if (!this.done && last >= this.length - PREFETCH) this.next();
    else if (this.earlier && first <= PREFETCH) this.previous();
  }

  async page(params) {
    if (this.loading) return null;
    this.loading = true;
    try {
      const page = await getJSON(
        eventsUrl(this.runId),
        { type: this.filter.type, unit: this.filter.unit, limit: PAGE, ...params },
        { signal: this.controller.signal },
      );
      this.error = null;
      this.counted(page);
      return page;
    } catch (error) {
      if (error.name !== "AbortError") this.error = error;
      return null;
    } finally {
      this.loading = false;
    }
  }

  counted(page) {
    if (page.total === null || page.total === undefined) return;
    this.total = page.total;
    this.totalExact = page.total_exact !== false;
  }

  /** The next page down. */
  async next() {
    const page = await this.page({ after: this.lastSeq });
    if (!page) return false;
    this.take(page);
    this.onChange();
    return true;
  }

  /** The page before the window; the rows above move down by what it adds. */
  async previous() {
    const page = await this.page({ before: this.firstSeq });
    if (!page) return false;
    const added = this.prepend(page);
    this.onChange({ shift: added });
    return true;
  }

  /** Replace the window with the last page of the matching events ("Latest ↓", End). */
  async toEnd() {
    while (this.loading) await new Promise((resolve) => setTimeout(resolve, 20));
    if (this.done) return;
    const page = await this.page({ before: LAST_SEQ });
    if (!page) return;
    this.rows = [];
    this.firstSeq = this.lastSeq = 0;
    this.done = true;
    this.prepend(page);
    // No onChange: the caller scrolls to the end, then draws (drawn at the
    // top first, the rows there would ask for the page before).
  }

  /** Load pages until `seq` is in (or the end is reached); for deep links. */
  async loadThrough(seq, maxPages = 200) {
    for (let i = 0; i < maxPages && !this.done && this.lastSeq < seq; i++) {
      if (!(await this.next())) return;
    }
  }

  take(page) {
    const events = page.events;
    if (page.next_after === null) this.done = true;
    const high = this.done ? Infinity : events.length ? events.at(-1).seq : this.lastSeq;
    const fresh = events.filter((e) => e.seq > this.lastSeq);
    this.rows.push(...this.interleave(fresh, this.lastSeq, high));
    if (fresh.length) {
      this.lastSeq = fresh.at(-1).seq;
      if (!this.firstSeq) this.firstSeq = fresh[0].seq;
    }
  }

  /** Put a page before the window (its events with lower seqs); the rows it adds. */
  prepend(page) {
    const fresh = this.firstSeq ? page.events.filter((e) => e.seq < this.firstSeq) : page.events;
    this.earlier = page.prev_before !== null;
    const low = this.earlier ? (fresh.length ? fresh[0].seq : this.firstSeq) : 0;
    const high = this.firstSeq || Infinity;
    const rows = this.interleave(fresh, low, high);
    this.rows = [...rows, ...this.rows];
    if (fresh.length) {
      this.firstSeq = fresh[0].seq;
      if (!this.lastSeq) this.lastSeq = fresh.at(-1).seq;
    }
    return rows.length;
  }

  /** `events` with the hidden markers whose seq is in (low, high) slotted in. */
  interleave(events, low, high) {
    const marks = this.markers.filter((m) => m.seq > low && m.seq < high);
    if (!marks.length) return events;
    return [...events, ...marks].sort((a, b) => a.seq - b.seq);
  }

  /** The first page, fetched (with this list's filter, after=0) along with the run. */
  seed(page) {
    this.counted(page);
    this.take(page);
  }

  retry() {
    this.error = null;
    this.onChange();
  }

  /** A live event; true if it adds a row. */
  append(event) {
    const isMarker = markerOf(event.type) !== null;
    const matching = matches(this.filter, event);
    if (!matching && !isMarker) return false;
    if (!matching) this.markers.push({ ...event, marker: true });
    // Until the pages reach the end, they will bring it.
    if (!this.done || event.seq <= this.lastSeq) return false;
    this.rows.push(matching ? event : { ...event, marker: true });
    this.lastSeq = event.seq;
    if (!this.firstSeq) this.firstSeq = event.seq;
    if (matching && this.total !== null && this.totalExact) this.total += 1;
    return true;
  }

  destroy() {
    this.controller.abort();
  }
}
