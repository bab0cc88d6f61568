// The Tasks tab: a repository's tasks across its runs (GET
// /api/history/tasks?repo=), in the server's order (tasks flaky across runs
// first): in how many runs each appeared, how often its first attempt
// passed, its median duration, tokens and cost, and its last outcomes, each
// a link to that run with the task's attempts open.

import { getJSON } from "./api.js";
import { repoTasksRequest } from "./boot.js";
import { h, put } from "./dom.js";
import { basename, count, dateTime, duration, percent, plural, tokens, usd } from "./format.js";
import { link, navigate, taskKey } from "./state.js";
import { flakyTag, stopReason } from "./stops.js";
import { message } from "./widgets.js";

const GLYPHS = { good: "✓", bad: "✗", warn: "!", neutral: "■" };

/** One past outcome: a chip linking to its run, with the task open. */
function outcomeChip(t, last) {
  const reason = last.stop_reason ? stopReason(last.stop_reason) : { tone: "neutral", label: "not ended" };
  const retried = last.attempts > 1;
  const when = dateTime(last.started_at);
  const text = `${last.run_id} · ${when} · ${reason.label} · ${plural(last.attempts ?? 0, "attempt")}`;
  return h("a", {
    class: `outcome stop-${reason.tone}${retried ? " retried" : ""}`,
    href: link(
      { tab: "history", run: last.run_id, task: taskKey(t.unit, t.task) },
      { tab: "history" },
    ),
    "data-run": last.run_id,
    "data-stop": last.stop_reason ?? "",
    title: text,
    "aria-label": text,
    text: `${GLYPHS[reason.tone]}${retried ? last.attempts : ""}`,
  });
}

export class TasksView {
  constructor(root, state) {
    this.root = root;
    this.controller = null;
    this.update(state);
  }

  update(state) {
    this.state = state;
    document.title = "Tasks · choo";
    this.load();
  }

  async load() {
    this.controller?.abort();
    const state = this.state;
    if (!state.repo) {
      this.pickRepo();
      return;
    }
    const controller = (this.controller = new AbortController());
    if (!this.root.querySelector(".repo-tasks"))
      put(this.root, h("div", { class: "loading-block", text: "Loading tasks…" }));
    let data;
    try {
      data = await getJSON(repoTasksRequest(state), {}, { signal: controller.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      const retry = h("button", { type: "button", text: "Try again", on: { click: () => this.load() } });
      put(this.root, message("Could not load tasks", error.message, h("p", {}, retry)));
      return;
    }
    this.render(data.tasks || [], data.total ?? 0);
  }

  /** No repository picked: the tasks are per repository, so offer them. */
  async pickRepo() {
    const controller = (this.controller = new AbortController());
    let repos = [];
    try {
      repos = (await getJSON("/api/repos", {}, { signal: controller.signal })).repos;
    } catch (error) {
      if (error.name === "AbortError") return;
    }
    const links = repos.map((r) =>
      h(
        "li",
        {},
        h("a", {
          href: link({ tab: "tasks", repo: r.repo_path }, { tab: "tasks" }),
          text: basename(r.repo_path),
        }),
        h("span", { class: "muted", text: ` — ${r.repo_path}` }),
      ),
    );
    put(
      this.root,
      message(
        "Pick a repository",
        repos.length
          ? "The Tasks table compares a repository's tasks across its runs: pick one here or above."
          : "No runs recorded yet: the tasks of a repository show here once it has runs.",
        links.length ? h("ul", { class: "repo-list" }, links) : null,
      ),
    );
  }

  render(tasks, total) {
    const state = this.state;
    const shown =
      total > tasks.length ? `${count(tasks.length)} of ${count(total)} tasks` : plural(tasks.length, "task");
    const toolbar = h(
      "div",
      { class: "runs-toolbar" },
      h("h1", { text: `Tasks · ${basename(state.repo)}` }),
      h("span", { class: "muted repo-path", text: state.repo }),
      h("span", { class: "spacer" }),
      h("a", {
        class: "button",
        href: link({ tab: "history", repo: state.repo }, { tab: "history" }),
        text: "Runs",
      }),
    );
    if (tasks.length === 0) {
      put(
        this.root,
        h(
          "section",
          { class: "repo-tasks" },
          toolbar,
          h("div", { class: "notice empty" }, h("h2", { text: "No task has run in this repository yet." })),
        ),
      );
      return;
    }
    const head = h(
      "tr",
      {},
      [
        "Unit",
        "Task",
        "Title",
        "Runs",
        "First-try pass",
        "Flaky runs",
        "Median time",
        "Median tokens",
        "Median cost",
        "Last outcomes",
      ].map((t) => h("th", { text: t })),
    );
    const rows = tasks.map((t) => {
      const key = taskKey(t.unit, t.task);
      const newest = (t.last || [])[0];
      return h(
        "tr",
        {
          "data-task": key,
          class: t.flaky_runs ? "flaky" : null,
          on: {
            click: (e) => {
              if (!e.target.closest("a") && newest) navigate({ tab: "history", run: newest.run_id, task: key });
            },
          },
        },
        h("td", { class: "unit", text: t.unit }),
        h("td", { class: "num", text: `#${t.task}` }),
        h("td", { class: "title", title: t.title ?? "", text: t.title ?? "" }),
        h("td", { class: "num runs", text: count(t.runs) }),
        h("td", { class: "num pass-rate", text: percent(t.first_try_pass_rate) }),
        h(
          "td",
          { class: "num flaky-runs" },
          t.flaky_runs
            ? [flakyTag(`flaky in ${plural(t.flaky_runs, "run")}`), ` ${count(t.flaky_runs)}`]
            : "—",
        ),
        h("td", { class: "num duration", text: duration(t.median_duration_ms) }),
        h("td", {
          class: "num tokens",
          title: t.median_tokens === null || t.median_tokens === undefined ? "" : count(t.median_tokens),
          text: tokens(t.median_tokens),
        }),
        h("td", { class: "num cost", text: usd(t.median_cost_usd ?? null, t.cost_estimated) }),
        h("td", { class: "outcomes" }, (t.last || []).map((last) => outcomeChip(t, last))),
      );
    });
    put(
      this.root,
      h(
        "section",
        { class: "repo-tasks" },
        toolbar,
        h(
          "p",
          { class: "muted tasks-note" },
          `${shown}; flaky ones first (passed only after a failed validation, in some run).` +
            " Last outcomes: newest first, each opens its run with the task's attempts.",
        ),
        h(
          "div",
          { class: "card table-card" },
          h("table", { class: "runs-table tasks-table" }, h("thead", {}, head), h("tbody", {}, rows)),
        ),
      ),
    );
  }

  restored() {
    this.load();
  }

  destroy() {
    this.controller?.abort();
  }
}
