// A run's tasks (GET /api/history/runs/{id}/tasks): one row per task with
// why it ended, its attempts, and what its agents used over them. A row
// opens the task's attempts (attempts.js) through the URL's `task` key.

import { getJSON } from "./api.js";
import { runPath } from "./boot.js";
import { h, put } from "./dom.js";
import { count, duration, tokens, usd, usdTitle } from "./format.js";
import { link, navigate, taskKey } from "./state.js";
import { flakyTag, stopBadge } from "./stops.js";
import { statusBadge } from "./widgets.js";

const SHOWN = 300; // rows drawn before "Show all"
const COLUMNS = [
  ...["Unit", "Task", "Title", "Status", "Ended"],
  ...["Attempts", "Time", "Tokens in / out", "Cost", "Tool calls"],
];

/** A task's sums over its attempts: {ms, tokensIn, tokensOut, cost, estimated, tools}. */
export function taskSums(t) {
  const sum = { ms: 0, tokensIn: 0, tokensOut: 0, cost: null, estimated: false, tools: 0 };
  for (const a of t.attempts || []) {
    sum.ms += (a.agent_ms || 0) + (a.validation_ms || 0);
    sum.tokensIn += a.input_tokens || 0;
    sum.tokensOut += a.output_tokens || 0;
    sum.tools += a.tool_calls || 0;
    if (a.cost_usd !== null && a.cost_usd !== undefined) {
      sum.cost = (sum.cost || 0) + a.cost_usd;
      sum.estimated ||= Boolean(a.cost_estimated);
    }
  }
  return sum;
}

export class RunTasks {
  constructor(root, runId) {
    this.root = root;
    this.runId = runId;
    this.data = null;
    this.unit = null;
    this.all = false;
    this.controller = null;
    put(root, h("div", { class: "loading-block", text: "Loading tasks…" }));
  }

  async load() {
    this.controller?.abort();
    const controller = (this.controller = new AbortController());
    try {
      this.data = await getJSON(runPath(this.runId, "/tasks"), {}, { signal: controller.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      const text = `Could not load the tasks: ${error.message}`;
      if (!this.data) put(this.root, h("p", { class: "muted empty-graph", text }));
      return;
    }
    this.render();
  }

  /** Show only `unit`'s tasks (null: every task). */
  filter(unit) {
    if (unit === this.unit) return;
    this.unit = unit;
    if (this.data) this.render();
  }

  render() {
    const tasks = (this.data.tasks || []).filter((t) => !this.unit || t.unit === this.unit);
    if (tasks.length === 0) {
      const text = this.unit ? `No task of ${this.unit} has started.` : "No task has started in this run.";
      put(this.root, h("p", { class: "muted empty-graph", text }));
      return;
    }
    const shown = this.all ? tasks : tasks.slice(0, SHOWN);
    const head = h(
      "tr",
      {},
      COLUMNS.map((t) => h("th", { text: t })),
    );
    const rows = shown.map((t) => {
      const key = taskKey(t.unit, t.task);
      const sum = taskSums(t);
      const open = () => navigate({ task: key });
      return h(
        "tr",
        {
          "data-task": key,
          on: { click: (e) => e.target.closest("a") || open() },
        },
        h("td", { class: "unit", text: t.unit }),
        h(
          "td",
          { class: "num" },
          h("a", { href: link({ task: key }), text: `#${t.task}`, title: "its attempts" }),
        ),
        h("td", { class: "title", title: t.title ?? "", text: t.title ?? "" }),
        h("td", {}, t.status ? statusBadge(t.status) : null),
        h("td", {}, stopBadge(t.stop_reason), t.flaky ? [" ", flakyTag()] : null),
        h("td", { class: "num n-attempts", text: count((t.attempts || []).length) }),
        h("td", { class: "num", text: duration(sum.ms) }),
        h("td", {
          class: "num tokens",
          title: `${count(sum.tokensIn)} in, ${count(sum.tokensOut)} out`,
          text: `${tokens(sum.tokensIn)} / ${tokens(sum.tokensOut)}`,
        }),
        h("td", {
          class: "num cost",
          title: usdTitle(sum.cost, sum.estimated),
          text: usd(sum.cost, sum.estimated),
        }),
        h("td", { class: "num n-tools", text: count(sum.tools) }),
      );
    });
    const more =
      shown.length < tasks.length
        ? h("button", {
            type: "button",
            class: "link show-all",
            text: `Show all ${count(tasks.length)} tasks`,
            on: {
              click: () => {
                this.all = true;
                this.render();
              },
            },
          })
        : null;
    const scroll = this.root.querySelector(".tasks-scroll");
    const top = scroll ? scroll.scrollTop : 0;
    put(
      this.root,
      h(
        "div",
        { class: "tasks-scroll" },
        h("table", { class: "runs-table run-tasks" }, h("thead", {}, head), h("tbody", {}, rows)),
        more,
      ),
    );
    this.root.querySelector(".tasks-scroll").scrollTop = top;
  }

  destroy() {
    this.controller?.abort();
  }
}
