// The first module to run. Module imports load one level after another, so
// before the rest of the UI has loaded, this starts the requests the view
// in the URL will begin with; getJSON (api.js) takes their responses over.
// The URLs are built here and nowhere else, so that they match.

import { parse, parseTaskKey } from "./state.js";

export const FIRST_PAGE = 250; // events a run view shows before it knows its list's shape
export const RUNS_LIMIT = 25;

const early = new Map(); // url → Promise<Response>

export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export function runPath(id, tail = "") {
  return `/api/history/runs/${encodeURIComponent(id)}${tail}`;
}

/**
 * What a run view asks for: first `view` (GET /api/view/run: the run, its
 * first events, the event catalogue; or that there is no such run), then,
 * once the run is known, the rest (a live one waits for its graph to be stored).
 */
export function runRequests(id, { type = null, unit = null } = {}, live = false) {
  return {
    view: url("/api/view/run", { run: id, type, unit, limit: FIRST_PAGE }),
    graph: live ? null : runPath(id, "/graph"),
    units: runPath(id, "/units"),
    git: gitRequest(id),
  };
}

/** What a run did in git (its branch, landing, commits); `unit`/`task` narrow the lists. */
export function gitRequest(id, { unit = null, task = null } = {}) {
  return url(runPath(id, "/git"), { unit, task });
}

/** One task's attempts, with their tool calls (the run view's open task). */
export function taskRequest(id, unit, task) {
  return url(runPath(id, "/tasks"), { unit, task });
}

/** A repository's tasks across its runs, as the Tasks tab shows them. */
export function repoTasksRequest(state) {
  return url("/api/history/tasks", { repo: state.repo });
}

/** Two runs side by side, as the compare page shows them. */
export function compareRequest(state) {
  return url("/api/history/compare", { a: state.a, b: state.b });
}

/** A page of the run list, as the History tab shows it. */
export function runsRequest(state) {
  return url("/api/history/runs", {
    repo: state.repo,
    status: state.status,
    limit: Number(state.limit) || RUNS_LIMIT,
    cursor: state.cursor,
    before: state.before,
    oldest: state.oldest,
  });
}

/** The response to a request this module started, once; undefined if none. */
export function takeEarly(target) {
  const response = early.get(target);
  early.delete(target);
  return response;
}

function start(target) {
  const response = fetch(target, { headers: { Accept: "application/json" } });
  response.catch(() => {}); // a failure is reported by whoever takes it over
  early.set(target, response);
  return response;
}

/** The event catalogue out of a run view's response (else asked for on its own). */
async function catalogueOf(view) {
  const response = await view;
  if (!response.ok) return fetch(EVENT_TYPES_URL, { headers: { Accept: "application/json" } });
  const body = await response.clone().json();
  return new Response(JSON.stringify(body.event_types), {
    headers: { "Content-Type": "application/json" },
  });
}

export const EVENT_TYPES_URL = "/api/event-types";

const state = parse();
// Every view waits for the catalogue (eventtypes.js); a run view's comes with
// the run, which is then all the page asks for before it knows the run exists.
if (state.run) {
  const view = start(runRequests(state.run, state).view);
  const catalogue = catalogueOf(view);
  catalogue.catch(() => {});
  early.set(EVENT_TYPES_URL, catalogue);
  if (state.pane === "tasks") start(runPath(state.run, "/tasks"));
  const open = parseTaskKey(state.task);
  if (open) start(taskRequest(state.run, open.unit, open.task));
} else {
  start(EVENT_TYPES_URL);
  if (state.tab === "history") start(runsRequest(state));
  else if (state.tab === "tasks" && state.repo) start(repoTasksRequest(state));
  else if (state.tab === "compare" && state.a && state.b) start(compareRequest(state));
}
