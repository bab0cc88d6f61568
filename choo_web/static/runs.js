// The History tab's run list: a page of runs, newest first, with a status
// filter and cursor paging. The URL holds only where the page is (`cursor`,
// `before` or `oldest`); the API says what lies either side of it.

import { getJSON } from "./api.js";
import { RUNS_LIMIT, runsRequest } from "./boot.js";
import { h, put } from "./dom.js";
import { basename, count, dateTime, duration, usd, usdTitle } from "./format.js";
import { link, navigate } from "./state.js";
import { message, plannedUnits, runBadge } from "./widgets.js";

const STATUSES = ["running", "completed", "failed", "stopped"];
const AT_START = { cursor: null, before: null, oldest: null }; // the newest page

/** A pager link, or the same words disabled when there is nowhere to go. */
function pagerLink(text, patch, rel = null) {
  if (!patch) return h("span", { class: "button disabled", text });
  return h("a", { class: "button", href: link({ ...AT_START, ...patch }), rel, text });
}

function unitCounts(run) {
  if (run.dry_run) return plannedUnits(run);
  if (run.status === "running") return h("span", { class: "units muted", text: `${run.total_units} units` });
  return h(
    "span",
    {
      class: "units",
      title: `${run.completed_units} completed, ${run.failed_units} failed, ${run.blocked_units} blocked of ${run.total_units}`,
    },
    h("span", { class: "n-done", text: `✓ ${run.completed_units}` }),
    run.failed_units ? h("span", { class: "n-failed", text: `✗ ${run.failed_units}` }) : null,
    run.blocked_units ? h("span", { class: "n-blocked", text: `⊘ ${run.blocked_units}` }) : null,
    h("span", { class: "muted", text: ` / ${run.total_units}` }),
  );
}

export class RunsView {
  constructor(root, state) {
    this.root = root;
    this.controller = null;
    this.picked = new Map(); // run id → started_at: the runs ticked to compare
    this.update(state);
  }

  update(state) {
    this.state = state;
    document.title = "History · choo";
    this.load();
  }

  async load() {
    this.controller?.abort();
    const controller = (this.controller = new AbortController());
    const state = this.state;
    const limit = Number(state.limit) || RUNS_LIMIT;
    if (!this.root.querySelector(".runs"))
      put(this.root, h("div", { class: "loading-block", text: "Loading runs…" }));
    else this.root.querySelector(".runs").classList.add("stale");
    let page;
    try {
      page = await getJSON(runsRequest(state), {}, { signal: controller.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      const retry = h("button", { type: "button", text: "Try again", on: { click: () => this.load() } });
      put(this.root, message("Could not load runs", error.message, h("p", {}, retry)));
      return;
    }
    this.render(page, limit);
  }

  render(page, limit) {
    const state = this.state;
    const first = page.newer + 1;
    const toolbar = h(
      "div",
      { class: "runs-toolbar" },
      h("h1", { text: state.repo ? basename(state.repo) : "All repositories" }),
      state.repo ? h("span", { class: "muted repo-path", text: state.repo }) : null,
      h("span", { class: "spacer" }),
      this.compareButton(),
      state.repo
        ? h("a", {
            class: "button tasks-link",
            href: link({ tab: "tasks", repo: state.repo }, { tab: "tasks" }),
            text: "Tasks across runs",
          })
        : null,
      h(
        "label",
        { class: "field" },
        "Status ",
        h(
          "select",
          {
            class: "status-filter",
            on: { change: (e) => navigate({ status: e.target.value || null, ...AT_START }) },
          },
          h("option", { value: "", text: "any" }),
          STATUSES.map((st) => h("option", { value: st, text: st, selected: st === state.status })),
        ),
      ),
    );
    if (page.runs.length === 0) {
      const text = state.status
        ? `No ${state.status} runs${state.repo ? " in this repository" : ""}.`
        : state.repo
          ? "No runs recorded for this repository yet."
          : "No runs recorded yet.";
      const hint = state.status
        ? h(
            "p",
            {},
            h("a", {
              href: link({ status: null, ...AT_START }),
              text: "Show runs of any status",
            }),
          )
        : h(
            "p",
            {},
            "Start one with ",
            h("code", { text: "choo run specs/tasks" }),
            " in a git repository; it shows up here and under Live.",
          );
      put(
        this.root,
        h(
          "section",
          { class: "runs" },
          toolbar,
          h("div", { class: "notice empty" }, h("h2", { text }), hint),
        ),
      );
      return;
    }
    const showRepo = !state.repo;
    const head = h(
      "tr",
      {},
      h("th", { class: "pick", title: "tick two runs to compare them", text: "⇄" }),
      ["Run", "Status", "Units", "Started", "Duration", "Cost", "Resumes", ""].map((t) => h("th", { text: t })),
    );
    if (showRepo) head.insertBefore(h("th", { text: "Repository" }), head.children[2]);
    const rows = page.runs.map((run) => {
      const href = link({ run: run.id, type: null, unit: null, event: null, pane: null, task: null });
      const cells = [
        h("td", { class: "pick" }, this.pickBox(run)),
        h("td", { class: "run-id" }, h("a", { href, text: run.id })),
        showRepo ? h("td", { class: "repo", title: run.repo_path, text: basename(run.repo_path) }) : null,
        h("td", {}, runBadge(run)),
        h("td", {}, unitCounts(run)),
        h("td", { title: run.started_at, text: dateTime(run.started_at) }),
        h("td", { class: "num", text: run.status === "running" ? "running" : duration(run.duration_ms) }),
        h("td", {
          class: "num cost",
          title: usdTitle(run.cost_usd || null, run.cost_estimated),
          text: usd(run.cost_usd || null, run.cost_estimated),
        }),
        h("td", { class: "num", text: run.resume_count ? String(run.resume_count) : "—" }),
        h("td", {}),
      ];
      return h(
        "tr",
        {
          "data-run": run.id,
          on: {
            click: (e) =>
              e.target.closest("a, td.pick") || navigate({ run: run.id, pane: null, task: null }),
          },
        },
        cells,
      );
    });
    const last = first + page.runs.length - 1;
    const newer = page.prev_cursor !== null;
    const older = page.next_cursor !== null;
    const pager = [
      pagerLink("« Newest", newer && {}, "first"),
      pagerLink("‹ Newer", newer && { before: page.prev_cursor }, "prev"),
      h("span", {
        class: "page-info",
        text: `${count(first)}–${count(last)} of ${count(page.total)} runs · page ${Math.ceil(last / limit)}`,
      }),
      pagerLink("Older ›", older && { cursor: page.next_cursor }, "next"),
      pagerLink("Oldest »", older && { oldest: "1" }, "last"),
    ];
    put(
      this.root,
      h(
        "section",
        { class: "runs" },
        toolbar,
        h(
          "div",
          { class: "card table-card" },
          h("table", { class: "runs-table" }, h("thead", {}, head), h("tbody", {}, rows)),
        ),
        h("nav", { class: "pager" }, pager),
      ),
    );
  }

  /** The box that ticks a run to compare; two ticked make Compare a link. */
  pickBox(run) {
    return h("input", {
      type: "checkbox",
      class: "pick-run",
      "aria-label": `compare ${run.id}`,
      checked: this.picked.has(run.id),
      on: {
        change: (e) => {
          if (e.target.checked) this.picked.set(run.id, run.started_at);
          else this.picked.delete(run.id);
          this.syncCompare();
        },
      },
    });
  }

  compareButton() {
    this.compare = h("a", { class: "button compare-runs" });
    this.syncCompare();
    return this.compare;
  }

  /** "Compare" links the two ticked runs, the earlier as A; otherwise it says what to do. */
  syncCompare() {
    const picked = [...this.picked].sort((x, y) => (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0));
    const ready = picked.length === 2;
    this.compare.textContent = ready ? "Compare 2 runs" : `Compare (${picked.length}/2 ticked)`;
    this.compare.classList.toggle("disabled", !ready);
    if (ready) {
      this.compare.href = link({ tab: "compare", a: picked[0][0], b: picked[1][0] }, { tab: "compare" });
    } else {
      this.compare.removeAttribute("href");
    }
    this.compare.title = ready ? "" : "tick two runs below to compare them";
  }

  restored() {
    this.load();
  }

  destroy() {
    this.controller?.abort();
  }
}
