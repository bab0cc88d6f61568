// The Search tab: the events of every run (or of the picked repository)
// whose text matches a query, newest first, each linked to its event in
// its run. The daemon parses the query and cuts the snippets; the page
// marks the matches it was given, as text.

import { getJSON } from "./api.js";
import { h, put } from "./dom.js";
import { basename, localDateTime, plural } from "./format.js";
import { markedRanges } from "./marks.js";
import { link, navigate } from "./state.js";
import { message } from "./widgets.js";

export const SEARCH_URL = "/api/history/search";
const PAGE = 50;

/** The run view with the match's event open, the query kept for its search box. */
export function eventLink(match, q) {
  return link(
    { tab: "history", repo: match.repo_path, run: match.run_id, event: String(match.seq), q },
    { tab: "history" },
  );
}

export class SearchView {
  constructor(root, state) {
    this.root = root;
    this.controller = null;
    this.input = h("input", {
      type: "search",
      class: "search-input",
      name: "q",
      placeholder: 'words, "a phrase", word*, OR, -word',
      "aria-label": "search the events' text",
      autocomplete: "off",
    });
    this.form = h(
      "form",
      { class: "search-form", role: "search", on: { submit: (e) => this.submit(e) } },
      this.input,
      h("button", { type: "submit", text: "Search" }),
    );
    this.scope = h("p", { class: "muted search-scope" });
    this.results = h("div", { class: "search-results" });
    put(root, h("section", { class: "search" }, h("h1", { text: "Search events" }), this.form, this.scope, this.results));
    this.update(state);
  }

  submit(event) {
    event.preventDefault();
    navigate({ q: this.input.value.trim() || null });
  }

  update(state) {
    this.state = state;
    document.title = state.q ? `${state.q} · Search · choo` : "Search · choo";
    if (document.activeElement !== this.input) this.input.value = state.q || "";
    this.scope.textContent = state.repo
      ? `In the runs of ${state.repo} (pick "All repositories" above to search every run).`
      : "In the runs of every repository.";
    this.matches = [];
    this.load(null);
  }

  async load(cursor) {
    this.controller?.abort();
    const q = this.state.q;
    if (!q) {
      put(this.results, h("p", { class: "muted", text: "Type words to find in the events' titles, errors, output, tool calls and validation output." }));
      return;
    }
    const controller = (this.controller = new AbortController());
    if (!cursor) put(this.results, h("div", { class: "loading-block", text: "Searching…" }));
    let page;
    try {
      page = await getJSON(
        SEARCH_URL,
        { q, repo: this.state.repo, limit: PAGE, cursor },
        { signal: controller.signal },
      );
    } catch (error) {
      if (error.name === "AbortError") return;
      const title = error.status === 400 ? "Cannot search for this" : "Could not search";
      put(this.results, message(title, error.message));
      return;
    }
    this.matches = [...this.matches, ...page.matches];
    this.render(page);
  }

  render(page) {
    const q = this.state.q;
    const rows = this.matches.map((m) => this.row(m, q));
    const note = page.unindexed
      ? h("p", {
          class: "muted search-lag",
          text: `${plural(page.unindexed, "recent event")} not searchable yet: the daemon indexes them when ingest pauses.`,
        })
      : null;
    const more = page.next_cursor
      ? h("button", {
          type: "button",
          class: "search-more",
          text: "More matches",
          on: { click: () => this.load(page.next_cursor) },
        })
      : null;
    const summary = h("p", {
      class: "search-count",
      text: this.matches.length
        ? `${plural(this.matches.length, "matching event")}${page.next_cursor ? " (more below)" : ""}, newest first`
        : "No event matches.",
    });
    put(this.results, summary, note, rows.length ? h("ol", { class: "search-list" }, rows) : null, more);
  }

  row(match, q) {
    const where = [match.unit, match.task === null || match.task === undefined ? null : `#${match.task}`]
      .filter(Boolean)
      .join(" ");
    return h(
      "li",
      { class: "search-hit" },
      h(
        "a",
        { class: "search-link", href: eventLink(match, q), "data-run": match.run_id, "data-seq": match.seq },
        h(
          "span",
          { class: "search-meta" },
          h("span", { class: "search-run", text: match.run_id }),
          h("span", { class: "muted", text: basename(match.repo_path) }),
          h("span", { class: "search-where", text: where }),
          h("span", { class: "ev-type", text: match.type }),
          h("span", { class: "muted", text: `#${match.seq}` }),
          h("time", { datetime: match.time, text: localDateTime(match.time) }),
        ),
        h("span", { class: "search-snippet" }, markedRanges(match.snippet.text, match.snippet.matches)),
      ),
    );
  }

  destroy() {
    this.controller?.abort();
  }
}
