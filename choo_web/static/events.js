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
  constructor(runId, filter, markers, onChange) {
    this.runId = runId;
    this.filter = filter;
    this.onChange = onChange;
    this.rows = [];
    this.after = 0;
    this.done = false;
    this.loading = false;
    this.error = null;
    this.lastSeq = 0;
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
    return this.done;
  }

  /** Rows, plus one "loading" row while more may follow. */
  get length() {
    return this.rows.length + (this.done ? 0 : 1);
  }

  get count() {
    return this.rows.length - this.rows.filter((r) => r.marker).length;
  }

  get(i) {
    return this.rows[i];
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
      if (at === seq) return mid;
      if (at < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  ensure(_first, last) {
    if (!this.done && !this.loading && !this.error && last >= this.rows.length - PREFETCH) this.next();
  }

  /** Load pages until `seq` is in (or the end is reached); for deep links. */
  async loadThrough(seq, maxPages = 200) {
    for (let i = 0; i < maxPages && !this.done && this.lastSeq < seq; i++) {
      if (!(await this.next())) return;
    }
  }

  async next() {
    if (this.loading) return false;
    this.loading = true;
    try {
      const page = await getJSON(
        eventsUrl(this.runId),
        { type: this.filter.type, unit: this.filter.unit, after: this.after, limit: PAGE },
        { signal: this.controller.signal },
      );
      this.take(page);
    } catch (error) {
      if (error.name === "AbortError") return false;
      this.error = error;
      return false;
    } finally {
      this.loading = false;
    }
    this.onChange();
    return true;
  }

  take(page) {
    for (const event of page.events) this.push(event);
    if (page.next_after === null) {
      this.done = true;
      this.flushMarkers(Infinity);
    } else {
      this.after = page.next_after;
    }
    this.error = null;
  }

  /** The first page, fetched (with this list's filter, after=0) along with the run. */
  seed(page) {
    this.take(page);
  }

  retry() {
    this.error = null;
    this.onChange();
  }

  flushMarkers(beforeSeq) {
    while (this.markers.length && this.markers[0].seq < beforeSeq) this.rows.push(this.markers.shift());
  }

  push(event) {
    if (event.seq <= this.lastSeq) return;
    this.flushMarkers(event.seq);
    this.rows.push(event);
    this.lastSeq = event.seq;
    this.after = Math.max(this.after, event.seq);
  }

  /** A live event; true if it adds a row. */
  append(event) {
    const isMarker = markerOf(event.type) !== null;
    if (matches(this.filter, event)) {
      // Until the pages reach the end, they will bring it.
      if (!this.done) return false;
      const before = this.rows.length;
      this.push(event);
      return this.rows.length > before;
    }
    if (!isMarker) return false;
    const row = { ...event, marker: true };
    if (this.done) {
      this.rows.push(row);
      return true;
    }
    this.markers.push(row);
    return false;
  }

  destroy() {
    this.controller.abort();
  }
}
