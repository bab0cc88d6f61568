// Formatting times, durations, counts, tokens and costs for display.

const pad = (n, width = 2) => String(n).padStart(width, "0");

function parse(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}

/**
 * "2026-01-20 15:30:52" in the browser's time zone, whatever the time toggle
 * says (kept for callers that predate it: prefer dateTime() and clock()).
 */
export function localDateTime(iso) {
  const d = parse(iso);
  if (!d) return iso || "—";
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** "15:30:52.123" in the browser's time zone. */
export function localClock(iso) {
  const d = parse(iso);
  if (!d) return iso || "";
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// --- which clock times are shown in: local (with its zone's name), UTC, or
// relative (a run's events from its start; other times from now). The
// choice is the user's, kept in localStorage; "choo:time" is dispatched on
// window when it changes.

export const TIME_MODES = ["local", "utc", "relative"];
const TIME_KEY = "choo.time";
let mode = storedMode();

function storedMode() {
  try {
    const stored = localStorage.getItem(TIME_KEY);
    return TIME_MODES.includes(stored) ? stored : "local";
  } catch {
    return "local"; // storage refused (a private window): local, not remembered
  }
}

export const timeMode = () => mode;

export function setTimeMode(next) {
  if (!TIME_MODES.includes(next) || next === mode) return;
  mode = next;
  try {
    localStorage.setItem(TIME_KEY, next);
  } catch {
    // not remembered, but still applied
  }
  window.dispatchEvent(new CustomEvent("choo:time", { detail: next }));
}

let zoneFormat = null; // built on first use: an Intl formatter costs a few ms

/** The short name of the browser's zone at `date`: "CET", "GMT+1", "EST". */
export function zoneName(date = new Date()) {
  zoneFormat ||= new Intl.DateTimeFormat(undefined, { timeZoneName: "short" });
  const part = zoneFormat.formatToParts(date).find((p) => p.type === "timeZoneName");
  return part ? part.value : "local";
}

/** What the times are in, for a column head: "CET", "UTC", "from start". */
export function zoneLabel(date = new Date()) {
  if (mode === "utc") return "UTC";
  return mode === "relative" ? "from start" : zoneName(date);
}

function parts(d) {
  const utc = mode === "utc";
  return {
    date: utc
      ? `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`
      : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`,
    time: utc
      ? `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`
      : `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`,
    ms: pad(d.getMilliseconds(), 3),
  };
}

/** "+3:12.345" or "+1:03:12.345" (h:mm:ss) from `origin`; "−0:01.000" before it. */
export function sinceStart(ms) {
  const sign = ms < 0 ? "−" : "+";
  const total = Math.abs(Math.round(ms));
  const s = Math.floor(total / 1000);
  const rest = `${pad(s % 60)}.${pad(total % 1000, 3)}`;
  if (s < 3600) return `${sign}${Math.floor(s / 60)}:${rest}`;
  return `${sign}${Math.floor(s / 3600)}:${pad(Math.floor((s % 3600) / 60))}:${rest}`;
}

/** An event's time in a row: "15:30:52.123" (local or UTC), or "+3:12.345" from `origin`. */
export function clock(iso, origin = null) {
  const d = parse(iso);
  if (!d) return iso || "";
  const start = mode === "relative" ? millis(origin) : null;
  if (start !== null) return sinceStart(d.getTime() - start);
  const p = parts(d);
  return `${p.time}.${p.ms}`;
}

/** An event's time in full: "2026-01-20 15:30:52.123 CET", "… UTC", or "+3:12.345 from the start". */
export function fullTime(iso, origin = null) {
  const d = parse(iso);
  if (!d) return iso || "—";
  const start = mode === "relative" ? millis(origin) : null;
  if (start !== null) return `${sinceStart(d.getTime() - start)} from the start`;
  const p = parts(d);
  return `${p.date} ${p.time}.${p.ms} ${mode === "utc" ? "UTC" : zoneName(d)}`;
}

/** When something happened, for lists: "2026-01-20 15:30:52 CET", "… UTC", or "2 h 05 m ago". */
export function dateTime(iso) {
  const d = parse(iso);
  if (!d) return iso || "—";
  if (mode === "relative") return `${duration(Date.now() - d.getTime())} ago`;
  const p = parts(d);
  return `${p.date} ${p.time} ${mode === "utc" ? "UTC" : zoneName(d)}`;
}

/** A time of day, for compact places: "15:30:52 CET", "14:30:52 UTC" or "3 m 12 s ago". */
export function timeOfDay(iso) {
  const d = parse(iso);
  if (!d) return iso || "";
  if (mode === "relative") return `${duration(Date.now() - d.getTime())} ago`;
  return `${parts(d).time} ${mode === "utc" ? "UTC" : zoneName(d)}`;
}

export function millis(iso) {
  const d = parse(iso);
  return d ? d.getTime() : null;
}

/** 850 ms, 8.4 s, 3 m 12 s, 2 h 05 m. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} m ${pad(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} m`;
}

// "100,000". (Not Intl.NumberFormat: building one costs tens of ms at page load.)
export const count = (n) => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");

export function plural(n, word, many = `${word}s`) {
  return `${count(n)} ${n === 1 ? word : many}`;
}

/** The last part of a path, for compact labels. */
export function basename(path) {
  const parts = String(path).split("/").filter(Boolean);
  return parts.length ? parts[parts.length - 1] : String(path);
}

/** 12,345 tokens as "12.3k"; 1,234,567 as "1.23M" (the exact count goes in a title). */
export function tokens(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 100_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(n < 100_000_000 ? 2 : 0)}M`;
}

/**
 * "$1.23", or "~$1.23" when any of it is estimated (from the price table);
 * "—" if unknown. (Sums over a run count a run whose agents reported no cost
 * as 0: callers pass `cost || null` where 0 means "none reported".)
 */
export function usd(cost, estimated = false) {
  if (cost === null || cost === undefined || Number.isNaN(cost)) return "—";
  const text = cost > 0 && cost < 0.01 ? cost.toFixed(3) : cost.toFixed(2);
  return `${estimated ? "~" : ""}$${text}`;
}

/** What usd() means, for a title. */
export function usdTitle(cost, estimated = false) {
  if (cost === null || cost === undefined) return "no cost reported";
  return estimated
    ? `$${cost} (estimated, at least in part, from the price table: prices)`
    : `$${cost} as the agent reported it`;
}

/** A 0..1 rate as "75%". */
export function percent(rate) {
  if (rate === null || rate === undefined || Number.isNaN(rate)) return "—";
  return `${Math.round(rate * 100)}%`;
}
