// Formatting times, durations and counts for display.

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
