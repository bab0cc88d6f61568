// The UI's state lives in the URL hash, so every view can be linked and
// reloaded: "#/history?repo=/src/app&run=run_20260120_143052_a1b2&type=task.".
//
//   tab     live | history | tasks (a repository's tasks across its runs) | search
//   repo    a repository path (absent: all repositories)
//   status  run list filter          limit: run list page size
//   cursor  run list position: the page after it; before: the page before it;
//           oldest=1: the last page (only the current position, never a trail)
//   run     the run shown            type, unit: its event filters
//   event   the seq of the event whose payload is open
//   pane    "tasks": the run's task list in place of its events; "lanes": its lanes
//   task    "unit:N", the task whose attempts are open (see taskKey)
//   a, b    the two runs compared (tab "compare"; B − A is each delta)
//   q       a search: the Search tab's query, or the run view's search box

export const TABS = ["live", "history", "tasks", "search", "compare"];
export const KEYS = [
  ...["repo", "status", "limit", "cursor", "before", "oldest"],
  ...["run", "type", "unit", "event", "pane", "task"],
  ...["a", "b"],
  "q",
];

export function parse(hash = location.hash) {
  const raw = hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split(/\?(.*)/s);
  const tab = TABS.includes(path) ? path : "live";
  const params = new URLSearchParams(query);
  const state = { tab };
  for (const key of KEYS) {
    const value = params.get(key);
    if (value) state[key] = value;
  }
  return state;
}

export function format(state) {
  const params = new URLSearchParams();
  for (const key of KEYS) {
    if (state[key] !== undefined && state[key] !== null && state[key] !== "") {
      params.set(key, state[key]);
    }
  }
  const query = params.toString();
  return `#/${state.tab || "live"}${query ? `?${query}` : ""}`;
}

/** A link to the state reached by applying `patch` (null removes a key). */
export function link(patch, from = parse()) {
  const next = { ...from, ...patch };
  for (const [key, value] of Object.entries(next)) if (value === null) delete next[key];
  return format(next);
}

/**
 * Go to a new state. A push adds a history entry (the back button returns);
 * a replace does not (for small changes like opening a payload).
 */
export function navigate(patch, { replace = false } = {}) {
  const target = link(patch);
  if (target === location.hash) return;
  if (replace) {
    history.replaceState(null, "", target);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    location.hash = target;
  }
}

/** The `task` key of a unit's task: "api:2". */
export const taskKey = (unit, task) => `${unit}:${task}`;

/** {unit, task} from a `task` key (a unit's name may hold ":"), or null. */
export function parseTaskKey(key) {
  const match = /^(.+):(\d+)$/s.exec(key || "");
  return match ? { unit: match[1], task: Number(match[2]) } : null;
}
