// The run view's search box: finds the run's events whose text matches
// (the daemon's search, within the run: every match's seq, in order) and
// jumps from one to the next, "3 of 17"; the timeline marks the words.

import { getJSON } from "./api.js";
import { h } from "./dom.js";
import { count } from "./format.js";

const SEARCH_URL = "/api/history/search";
const TYPING_MS = 250; // a search starts once typing pauses this long

export class RunSearch {
  /**
   * `onJump(seq)`: show that event. `onMarks(terms, seq)`: mark these words
   * (as the API parsed the query) in the timeline, `seq` the current match.
   */
  constructor(runId, { query = "", onJump, onMarks }) {
    this.runId = runId;
    this.onJump = onJump;
    this.onMarks = onMarks;
    this.seqs = [];
    this.terms = [];
    this.index = -1;
    this.timer = 0;
    this.controller = null;
    this.input = h("input", {
      type: "search",
      class: "run-search-input",
      placeholder: "Search this run",
      "aria-label": "search this run's events",
      autocomplete: "off",
      on: { input: () => this.typed(), keydown: (e) => this.key(e) },
    });
    this.input.value = query;
    const button = (cls, text, label, fn) =>
      h("button", { type: "button", class: cls, text, title: label, "aria-label": label, on: { click: fn } });
    this.label = h("span", { class: "run-search-count", "aria-live": "polite" });
    this.element = h(
      "div",
      { class: "run-search", role: "search" },
      this.input,
      button("run-search-prev", "↑", "previous match (Shift+Enter)", () => this.step(-1)),
      button("run-search-next", "↓", "next match (Enter)", () => this.step(1)),
      this.label,
    );
  }

  /** Search for `query` now; `at`: the match already shown (a link from the Search tab). */
  set(query, at = null) {
    this.input.value = query || "";
    this.search({ at });
  }

  typed() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.search({}), TYPING_MS);
  }

  key(event) {
    if (event.key === "Enter") {
      event.preventDefault();
      clearTimeout(this.timer);
      if (this.pending) return; // the search under way jumps to the first match
      if (this.query !== this.input.value.trim()) this.search({});
      else this.step(event.shiftKey ? -1 : 1);
    } else if (event.key === "Escape") {
      this.set("");
    }
  }

  async search({ at = null }) {
    clearTimeout(this.timer);
    this.controller?.abort();
    const q = (this.query = this.input.value.trim());
    this.seqs = [];
    this.index = -1;
    this.error = null;
    if (!q) {
      this.terms = [];
      this.onMarks([], null);
      this.render();
      return;
    }
    const controller = (this.controller = new AbortController());
    this.pending = true;
    let page;
    try {
      page = await getJSON(SEARCH_URL, { q, run: this.runId, limit: 1 }, { signal: controller.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      this.pending = false;
      this.error = error;
      this.terms = [];
      this.onMarks([], null);
      this.render();
      return;
    }
    this.pending = false;
    this.seqs = page.seqs;
    this.terms = page.terms;
    this.truncated = page.truncated;
    this.unindexed = page.unindexed;
    const found = at === null ? -1 : this.seqs.indexOf(at);
    if (found >= 0) {
      this.index = found;
      this.onMarks(this.terms, at);
      this.render();
    } else {
      this.onMarks(this.terms, null);
      this.step(1);
    }
  }

  step(direction) {
    const n = this.seqs.length;
    if (!n) return this.render();
    this.index = this.index < 0 ? (direction > 0 ? 0 : n - 1) : (this.index + direction + n) % n;
    const seq = this.seqs[this.index];
    this.onMarks(this.terms, seq);
    this.onJump(seq);
    this.render();
  }

  render() {
    const n = this.seqs.length;
    let text = "";
    if (this.error) text = this.error.message;
    else if (this.query && !n) text = "no match";
    else if (n) text = `${this.index < 0 ? "–" : count(this.index + 1)} of ${count(n)}${this.truncated ? "+" : ""}`;
    this.label.textContent = text;
    this.label.title = this.unindexed ? `${count(this.unindexed)} recent events not indexed yet` : "";
    this.label.classList.toggle("error", Boolean(this.error));
    for (const b of this.element.querySelectorAll("button")) b.disabled = !n;
  }

  destroy() {
    clearTimeout(this.timer);
    this.controller?.abort();
  }
}
