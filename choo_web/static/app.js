// The app shell: tabs, the repository picker, the disconnection banner, and
// the router that turns the URL hash into a view (see state.js).

import { getJSON, onReconnect } from "./api.js";
import { h, put } from "./dom.js";
import { basename, count } from "./format.js";
import { CompareView } from "./compare.js";
import { LiveView } from "./live.js";
import { RunView } from "./run.js";
import { RunsView } from "./runs.js";
import { SearchView } from "./search.js";
import { TasksView } from "./tasks.js";
import { link, navigate, parse } from "./state.js";
import { mountTimeToggle } from "./timemode.js";

const main = document.getElementById("main");
const picker = document.getElementById("repo");
let repos = [];
let current = null; // {key, view}

function viewKey(state) {
  if (state.tab === "live") return `live|${state.repo || ""}`;
  if (state.tab === "tasks") return "tasks";
  if (state.tab === "compare") return "compare";
  if (state.tab === "search") return "search";
  if (state.run) return `run|${state.run}`;
  return "runs";
}

function createView(state) {
  if (state.tab === "live") return new LiveView(main, state, { onNewRepo: noteRepo });
  if (state.tab === "tasks") return new TasksView(main, state);
  if (state.tab === "compare") return new CompareView(main, state);
  if (state.tab === "search") return new SearchView(main, state);
  if (state.run) return new RunView(main, state);
  return new RunsView(main, state);
}

function route() {
  const state = parse();
  renderChrome(state);
  const key = viewKey(state);
  if (current && current.key === key) {
    current.view.update(state);
    return;
  }
  current?.view.destroy();
  main.replaceChildren(); // emptied for the next view
  current = { key, view: createView(state) };
}

function renderChrome(state) {
  for (const tab of ["live", "history", "tasks", "search"]) {
    const el = document.getElementById(`tab-${tab}`);
    el.setAttribute("aria-current", String(state.tab === tab));
    // A tab keeps the repository, nothing else.
    el.href = link({ tab, repo: state.repo || null }, { tab });
  }
  renderPicker(state);
}

function renderPicker(state) {
  const known = new Set(repos.map((r) => r.repo_path));
  const options = [
    h("option", { value: "", text: `All repositories${repos.length ? ` (${repos.length})` : ""}` }),
  ];
  for (const repo of repos) {
    options.push(
      h("option", {
        value: repo.repo_path,
        title: repo.repo_path,
        selected: repo.repo_path === state.repo,
        text: `${basename(repo.repo_path)} — ${repo.repo_path} (${count(repo.run_count)})`,
      }),
    );
  }
  if (state.repo && !known.has(state.repo)) {
    options.push(
      h("option", {
        value: state.repo,
        selected: true,
        text: `${basename(state.repo)} — ${state.repo} (no runs)`,
      }),
    );
  }
  put(picker, ...options);
  picker.value = state.repo || "";
}

async function loadRepos() {
  try {
    const data = await getJSON("/api/repos");
    repos = data.repos;
  } catch {
    return; // the banner or the view says what went wrong
  }
  renderPicker(parse());
}

function noteRepo(path) {
  if (!repos.some((r) => r.repo_path === path)) loadRepos();
}

picker.addEventListener("change", () => {
  navigate({
    repo: picker.value || null,
    run: null,
    cursor: null,
    before: null,
    oldest: null,
    type: null,
    unit: null,
    event: null,
    pane: null,
    task: null,
  });
});

onReconnect(() => {
  loadRepos();
  current?.view.restored?.();
});

/** Times are shown another way: a view redraws them, or is built again. */
function timeChanged() {
  if (!current) return;
  if (current.view.timeChanged) {
    current.view.timeChanged();
    return;
  }
  current.view.destroy();
  main.replaceChildren();
  current = null;
  route();
}

mountTimeToggle(document.getElementById("time-mode"));
window.addEventListener("choo:time", timeChanged);
window.addEventListener("hashchange", route);
if (!location.hash) history.replaceState(null, "", "#/live");
route();
// The picker can wait until the view has asked for what it shows.
setTimeout(loadRepos, 100);
