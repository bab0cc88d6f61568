// The daemon's JSON API and event streams, and whether the daemon answers.
//
// Any request that cannot reach the daemon marks it unreachable: a banner
// shows and /api/health is polled until it answers again; then every
// `onReconnect` listener runs (views reload what they show).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

import { takeEarly, url } from "./boot.js";

const POLL_MS = 1500;
const reconnectListeners = new Set();
let unreachable = false;
let pollTimer = null;

export { url };

export async function getJSON(path, params = {}, { signal } = {}) {
  const target = url(path, params);
  let response;
  try {
    response = await (takeEarly(target) ||
      fetch(target, { signal, headers: { Accept: "application/json" } }));
  } catch (error) {
    if (error.name === "AbortError") throw error;
    markUnreachable();
    throw new ApiError(0, "unreachable", `The choo daemon at ${location.host} is not answering.`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: described below from the status alone
  }
  if (!response.ok) {
    const err = body && body.error;
    if (response.status === 503) markUnreachable();
    throw new ApiError(
      response.status,
      err ? err.code : "http_error",
      err ? err.message : `${path} answered ${response.status} ${response.statusText}`,
    );
  }
  return body;
}

/** Fetch every page of a run's events matching `params`, calling onPage for each. */
export async function eachEventPage(runId, params, onPage, { signal, maxPages = Infinity } = {}) {
  let after = 0;
  for (let page = 0; page < maxPages; page++) {
    const data = await getJSON(
      `/api/history/runs/${encodeURIComponent(runId)}/events`,
      { ...params, after, limit: 1000 },
      { signal },
    );
    onPage(data.events);
    if (data.next_after === null) return true;
    after = data.next_after;
  }
  return false;
}

export function isUnreachable() {
  return unreachable;
}

export function onReconnect(fn) {
  reconnectListeners.add(fn);
  return () => reconnectListeners.delete(fn);
}

export function markUnreachable() {
  if (unreachable) return;
  unreachable = true;
  document.body.classList.add("offline");
  const banner = document.getElementById("banner");
  if (banner) {
    banner.hidden = false;
    banner.querySelector(".banner-host").textContent = location.host;
  }
  pollTimer = setTimeout(poll, POLL_MS);
}

async function poll() {
  try {
    const response = await fetch("/api/health", { cache: "no-store" });
    if (response.ok) {
      unreachable = false;
      document.body.classList.remove("offline");
      document.getElementById("banner").hidden = true;
      for (const fn of [...reconnectListeners]) fn();
      return;
    }
  } catch {
    // still away
  }
  pollTimer = setTimeout(poll, POLL_MS);
}

/** After a stream error: is the daemon there at all? */
async function check() {
  if (unreachable) return;
  try {
    const response = await fetch("/api/health", { cache: "no-store" });
    if (!response.ok) markUnreachable();
  } catch {
    markUnreachable();
  }
}

/**
 * An event stream with handlers by event name. EventSource reconnects by
 * itself after a network error (sending Last-Event-ID); when it gives up
 * (an HTTP error, or the daemon restarting) this calls `handlers.closed` if
 * given, then opens a new one with `urlFn()`, which can say where to resume.
 */
export function openStream(urlFn, handlers) {
  let source = null;
  let closed = false;
  let retry = null;

  const connect = () => {
    source = new EventSource(urlFn());
    for (const [name, fn] of Object.entries(handlers)) {
      if (name === "open" || name === "closed") continue;
      source.addEventListener(name, (message) => {
        if (!closed) fn(JSON.parse(message.data), message);
      });
    }
    source.onopen = () => handlers.open && handlers.open();
    source.onerror = () => {
      if (closed) return;
      check();
      if (source.readyState === EventSource.CLOSED) {
        if (handlers.closed) handlers.closed();
        retry = setTimeout(connect, POLL_MS);
      }
    };
  };
  connect();
  const reconnect = onReconnect(() => {
    // Back after a restart: a source still waiting would wait its full retry.
    if (closed || source.readyState === EventSource.OPEN) return;
    source.close();
    clearTimeout(retry);
    connect();
  });
  return {
    close() {
      closed = true;
      clearTimeout(retry);
      reconnect();
      source.close();
    },
  };
}
