// The top bar's time toggle: local (with the zone's name), UTC, or relative.
// The choice is kept by format.js (localStorage); views redraw their times
// on the "choo:time" event.

import { h, put } from "./dom.js";
import { setTimeMode, TIME_MODES, timeMode, zoneName } from "./format.js";

const NAMES = { local: "Local", utc: "UTC", relative: "Relative" };

function titleOf(mode) {
  if (mode === "local") return `Times in your zone (${zoneName()})`;
  if (mode === "utc") return "Times in UTC";
  return "A run's events from its start; other times from now";
}

/** Fill `root` with the toggle and keep it in step with the choice. */
export function mountTimeToggle(root) {
  const buttons = TIME_MODES.map((mode) =>
    h("button", {
      type: "button",
      class: "chip time-chip",
      "data-time": mode,
      title: titleOf(mode),
      text: NAMES[mode],
      on: { click: () => setTimeMode(mode) },
    }),
  );
  const sync = () => {
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.time === timeMode()));
  };
  put(root, h("div", { class: "chips", role: "group", "aria-label": "show times as" }, buttons));
  sync();
  window.addEventListener("choo:time", sync);
}
