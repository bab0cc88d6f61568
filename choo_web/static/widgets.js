// Small pieces shared by the views.

import { h } from "./dom.js";

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, text: status });
}

/** A boxed message: a title, a sentence, and whatever else (links, buttons). */
export function message(title, text, ...extra) {
  return h("div", { class: "notice" }, h("h2", { text: title }), text ? h("p", { text }) : null, ...extra);
}
