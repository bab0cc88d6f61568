// Formatting times, durations, counts, tokens and costs for display.

const pad = (n, width = 2) => String(n).padStart(width, "0");

function parse(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** "2026-01-20 15:30:52" in the browser's time zone. */
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
