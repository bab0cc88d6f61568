// A run stream that fell behind: the daemon skips ahead rather than drop
// it, and says so with a `catchup` message ({after, next}: the events after
// seq `after` and before seq `next` were not sent). The gap is fetched
// through the events API, page by page; live messages that arrive meanwhile
// wait in a queue, so that the view takes every event once and in seq order.

import { getJSON } from "./api.js";
import { runPath } from "./boot.js";

const PAGE = 1000;
const TRIES = 3;

/** The events with after < seq < next, fetched page by page. */
async function fetchGap(runId, after, next, signal) {
  const events = [];
  let from = after;
  while (from !== null && from < next - 1) {
    const page = await getJSON(runPath(runId, "/events"), { after: from, limit: PAGE }, { signal });
    for (const event of page.events) if (event.seq < next) events.push(event);
    from = page.next_after;
  }
  return events;
}

export class CatchUp {
  /** `apply(event)` takes one event into the view. */
  constructor(runId, apply, signal) {
    this.runId = runId;
    this.apply = apply;
    this.signal = signal;
    this.queue = null; // while a gap is being fetched: [{event} | {gap} | {then}]
    this.applying = false;
    this.gaps = 0; // catchup messages received (for tests and the curious)
  }

  /** True if `event` was queued behind a gap being fetched (apply it later, not now). */
  hold(event) {
    if (!this.queue || this.applying) return false;
    this.queue.push({ event });
    return true;
  }

  /** Run `fn` once what is queued has been applied (at once if nothing is). */
  then(fn) {
    if (this.queue) this.queue.push({ then: fn });
    else fn();
  }

  /** A `catchup` message. */
  gap(gap) {
    this.gaps += 1;
    if (this.queue) {
      this.queue.push({ gap });
      return;
    }
    this.queue = [{ gap }];
    this.drain();
  }

  async drain() {
    const queue = this.queue;
    while (queue.length) {
      const item = queue[0];
      let events = item.event ? [item.event] : [];
      if (item.gap) {
        events = await this.fetch(item.gap);
        if (events === null) return; // the view went away
      }
      this.applying = true;
      try {
        for (const event of events) this.apply(event);
        if (item.then) item.then();
      } finally {
        this.applying = false;
      }
      queue.shift();
    }
    this.queue = null;
  }

  async fetch({ after, next }) {
    for (let tries = 1; ; tries++) {
      try {
        return await fetchGap(this.runId, after, next, this.signal);
      } catch (error) {
        if (error.name === "AbortError") return null;
        // Left out after a few tries: the timeline asks for rows it lacks when shown.
        if (tries >= TRIES) return [];
        await new Promise((resolve) => setTimeout(resolve, 1000 * tries));
      }
    }
  }
}
