// Zoom and pan for an SVG drawing in a box: it fits the box at first (never
// enlarged past 1:1); the buttons, the wheel (about the pointer) and
// dragging change the view, which is the SVG's viewBox. A drag does not
// click what it started on. The box's height follows the drawing's, up to
// what its container leaves it (CSS max-height / flex). With the focus in
// the box, + and - zoom and 0 fits.

import { h } from "./dom.js";

const MAX_ZOOM = 3;
const STEP = 1.25;
const DRAG_PX = 4; // a pointer that moves less than this clicks rather than pans
const KEEP_PX = 40; // of the drawing, always left in view

export class PanZoom {
  /** `box` holds `svg`, a drawing `width` × `height` in SVG units. */
  constructor(box, svg, { width, height, label = "graph" }) {
    this.box = box;
    this.svg = svg;
    this.width = Math.max(1, width);
    this.height = Math.max(1, height);
    this.view = { x: 0, y: 0, k: 1 };
    this.fitted = true; // until the user zooms or pans, the view follows the box's size
    this.drag = null;
    this.dragged = false;
    svg.setAttribute("width", "100%");
    svg.setAttribute("height", "100%");
    this.controls = this.buildControls(label);
    box.addEventListener("wheel", (e) => this.wheel(e), { passive: false });
    box.addEventListener("keydown", (e) => this.key(e));
    box.addEventListener("pointerdown", (e) => this.down(e));
    box.addEventListener("pointermove", (e) => this.move(e));
    box.addEventListener("pointerup", (e) => this.up(e));
    box.addEventListener("pointercancel", (e) => this.up(e));
    // A drag ends with a click on whatever it started on: swallow that one.
    box.addEventListener("click", (e) => this.dragged && (e.stopPropagation(), (this.dragged = false)), true);
    this.resize = new ResizeObserver(() => this.resized());
    this.resize.observe(box);
  }

  buildControls(label) {
    const button = (text, name, action) =>
      h("button", {
        type: "button",
        class: "zoom-button",
        "aria-label": name,
        title: name,
        text,
        on: { click: action },
      });
    return h(
      "div",
      { class: "zoom-controls", role: "group", "aria-label": `${label} zoom` },
      button("−", "zoom out", () => this.zoomBy(1 / STEP)),
      button("+", "zoom in", () => this.zoomBy(STEP)),
      button("Fit", "fit to the box", () => this.fit()),
    );
  }

  size() {
    return { w: this.box.clientWidth || 1, h: this.box.clientHeight || 1 };
  }

  /** The zoom at which the whole drawing shows (at most 1:1). */
  fitZoom() {
    const { w, h: hgt } = this.size();
    return Math.min(1, w / this.width, hgt / this.height);
  }

  resized() {
    // As tall as the drawing is at the width's fit; CSS may cap it.
    const w = this.box.clientWidth || this.width;
    const want = `${Math.ceil(this.height * Math.min(1, w / this.width)) + 2}px`;
    if (this.box.style.height !== want) this.box.style.height = want;
    if (this.fitted) this.fit();
    else this.apply();
  }

  fit() {
    const k = this.fitZoom();
    const { w, h: hgt } = this.size();
    this.view = { k, x: (this.width - w / k) / 2, y: (this.height - hgt / k) / 2 };
    this.fitted = true;
    this.apply();
  }

  /** Zoom by `factor` about the box point (cx, cy), the centre by default. */
  zoomBy(factor, cx = null, cy = null) {
    const { w, h: hgt } = this.size();
    const px = cx ?? w / 2;
    const py = cy ?? hgt / 2;
    const { x, y, k } = this.view;
    const next = Math.min(MAX_ZOOM, Math.max(this.fitZoom(), k * factor));
    if (next === k) return;
    this.view = { k: next, x: x + px / k - px / next, y: y + py / k - py / next };
    this.fitted = false;
    this.apply();
  }

  panBy(dx, dy) {
    this.view.x -= dx / this.view.k;
    this.view.y -= dy / this.view.k;
    this.fitted = false;
    this.apply();
  }

  /** Pan so that the rectangle (SVG units) is in view, if it is not. */
  reveal({ x, y, width, height }) {
    const { w, h: hgt } = this.size();
    const { k } = this.view;
    const [vw, vh] = [w / k, hgt / k];
    const v = this.view;
    if (x >= v.x && y >= v.y && x + width <= v.x + vw && y + height <= v.y + vh) return;
    v.x = x + width / 2 - vw / 2;
    v.y = y + height / 2 - vh / 2;
    this.fitted = false;
    this.apply();
  }

  apply() {
    const { w, h: hgt } = this.size();
    const v = this.view;
    const [vw, vh] = [w / v.k, hgt / v.k];
    const keep = KEEP_PX / v.k;
    // Never pan the drawing out of sight.
    v.x = Math.min(this.width - keep, Math.max(keep - vw, v.x));
    v.y = Math.min(this.height - keep, Math.max(keep - vh, v.y));
    this.svg.setAttribute("viewBox", `${v.x} ${v.y} ${vw} ${vh}`);
    this.box.dataset.zoom = v.k.toFixed(3);
    this.box.classList.toggle("zoomed", !this.fitted);
  }

  wheel(event) {
    const fitK = this.fitZoom();
    // Zoomed all the way out, scrolling down is the page's.
    if (event.deltaY > 0 && this.view.k <= fitK + 1e-6) return;
    event.preventDefault();
    const rect = this.box.getBoundingClientRect();
    this.zoomBy(Math.exp(-event.deltaY * 0.0015), event.clientX - rect.left, event.clientY - rect.top);
  }

  /** With the focus inside: + and - zoom, 0 fits. */
  key(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const action = {
      "+": () => this.zoomBy(STEP),
      "=": () => this.zoomBy(STEP),
      "-": () => this.zoomBy(1 / STEP),
      0: () => this.fit(),
    };
    if (!(event.key in action)) return;
    event.preventDefault();
    action[event.key]();
  }

  down(event) {
    if (event.button !== 0 || event.target.closest(".zoom-controls")) return;
    this.drag = { x: event.clientX, y: event.clientY, id: event.pointerId, moving: false };
    this.dragged = false;
  }

  move(event) {
    const drag = this.drag;
    if (!drag || event.pointerId !== drag.id) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (!drag.moving && Math.hypot(dx, dy) < DRAG_PX) return;
    if (!drag.moving) {
      drag.moving = true;
      this.box.setPointerCapture(drag.id);
      this.box.classList.add("panning");
    }
    this.panBy(dx, dy);
    drag.x = event.clientX;
    drag.y = event.clientY;
  }

  up(event) {
    const drag = this.drag;
    if (!drag || event.pointerId !== drag.id) return;
    this.drag = null;
    this.dragged = drag.moving;
    this.box.classList.remove("panning");
  }

  destroy() {
    this.resize.disconnect();
  }
}
