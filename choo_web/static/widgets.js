// Small pieces shared by the views.

import { h } from "./dom.js";

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, text: status });
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
