// Small pieces shared by the views.

import { h } from "./dom.js";

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, text: status });
}

/**
 * A run's badge: its status, or, for a dry run (`choo run --dry-run`: the
 * plan recorded, nothing run), "dry run", whatever status it ended with.
 */
export function runBadge(run) {
  if (!run.dry_run) return statusBadge(run.status);
  return h("span", {
    class: "badge dry-run",
    "data-status": run.status,
    title: `A dry run (choo run --dry-run): planned and recorded, nothing was run (${run.status})`,
    text: "dry run",
  });
}

/** "5 planned": the units of a dry run, which none of them ran. */
export function plannedUnits(run) {
  return h("span", { class: "units muted planned", text: `${run.total_units} planned` });
}

/** The tag of a run the daemon shows live but does not record (`choo run --no-history`). */
export function notRecordedTag(run) {
  return run.history === false
    ? h("span", {
        class: "tag tag-unrecorded",
        text: "not recorded",
        title: "Run with --no-history (or history.enabled: false): shown while it runs, kept nowhere",
      })
    : null;
}

/** A boxed message: a title, a sentence, and whatever else (links, buttons). */
export function message(title, text, ...extra) {
  return h("div", { class: "notice" }, h("h2", { text: title }), text ? h("p", { text }) : null, ...extra);
}
