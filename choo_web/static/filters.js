// The timeline's filters: category chips, a type box (exact type, or a
// prefix like "task."), a unit picker. They change the URL; the run view
// follows the URL (see state.js). The types and their kinds (the chips) are
// the daemon's catalogue (eventtypes.js).

import { h, put } from "./dom.js";
import { EVENT_TYPES, KINDS } from "./eventtypes.js";
import { navigate } from "./state.js";

const CATEGORIES = KINDS.map((kind) => `${kind}.`);

/** What the type box holds, as the API's filter: a bare category ("task") means its prefix. */
function typeFilter(text) {
  const value = text.trim();
  if (!value || value === ".") return null;
  return CATEGORIES.includes(`${value}.`) ? `${value}.` : value;
}

export class FilterBar {
  constructor({ onLatest }) {
    this.chips = [null, ...CATEGORIES].map((type) =>
      h("button", {
        type: "button",
        class: `chip${type ? ` cat-${type.slice(0, -1)}` : ""}`,
        "data-type": type || "",
        text: type ? type.slice(0, -1) : "all",
        on: { click: () => navigate({ type, event: null }) },
      }),
    );
    this.typeInput = h("input", {
      type: "search",
      class: "type-filter",
      list: "event-types",
      placeholder: "type, or prefix like task.",
      "aria-label": "event type filter",
      on: { change: () => navigate({ type: typeFilter(this.typeInput.value), event: null }) },
    });
    this.unitSelect = h("select", {
      class: "unit-filter",
      "aria-label": "unit filter",
      on: { change: () => navigate({ unit: this.unitSelect.value || null, event: null }) },
    });
    this.clearButton = h("button", {
      type: "button",
      class: "link clear-filters",
      text: "Clear filters",
      on: { click: () => navigate({ type: null, unit: null, event: null }) },
    });
    const types = h(
      "datalist",
      { id: "event-types" },
      [...CATEGORIES, ...EVENT_TYPES].map((t) => h("option", { value: t })),
    );
    this.element = h(
      "div",
      { class: "tl-toolbar" },
      h("div", { class: "chips", role: "group", "aria-label": "event category" }, this.chips),
      this.typeInput,
      types,
      this.unitSelect,
      this.clearButton,
      h("span", { class: "spacer" }),
      h("button", { type: "button", class: "link", text: "Latest ↓", on: { click: onLatest } }),
    );
  }

  /** Show `filter` ({type, unit}); `units` are the run's units, in graph order. */
  sync({ type, unit }, units) {
    for (const chip of this.chips)
      chip.setAttribute("aria-pressed", String((chip.dataset.type || null) === type));
    if (document.activeElement !== this.typeInput) this.typeInput.value = type || "";
    const choices = new Set(units);
    if (unit) choices.add(unit);
    put(
      this.unitSelect,
      h("option", { value: "", text: "all units" }),
      [...choices].map((u) => h("option", { value: u, text: u, selected: u === unit })),
    );
    this.clearButton.hidden = !type && !unit;
  }
}
