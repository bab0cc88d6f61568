// The dependency graph as SVG: a node per unit, colored by its status, with
// its task progress and what its agents cost (and in how many attempts);
// clicking a node (or Enter on it) selects its unit. The graph fits its box
// at first; the buttons, the wheel and dragging zoom and pan it.

import { h, put, s } from "./dom.js";
import { PanZoom } from "./panzoom.js";
import { layout, NODE_H, NODE_W } from "./layout.js";
import { count, plural, tokens, usd } from "./format.js";
import { UNIT_STATUSES } from "./units.js";

const INSET = 12; // text inside a node's box, either side
const LARGE = 12; // nodes above which the graph takes the room it needs, the events below
const PLANNED = "planned"; // a dry run's units (not a unit status: nothing ran)

const clip = (text, n) => (text.length > n ? `${text.slice(0, Math.max(1, n - 1))}…` : text);

/** Set `el`'s text to `text`, cut with "…" to fit `width` px (measured; estimated if not laid out). */
function fitText(el, text, width) {
  el.textContent = text;
  const full = el.getComputedTextLength();
  if (full <= width) return;
  if (full === 0) {
    el.textContent = clip(text, Math.floor(width / 7.5));
    return;
  }
  let lo = 1;
  let hi = text.length - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    el.textContent = clip(text, mid);
    if (el.getComputedTextLength() <= width) lo = mid;
    else hi = mid - 1;
  }
  el.textContent = clip(text, lo);
}

/** From the dependency's right side to the dependent's left side, through the waypoints. */
function edgePath(from, to, via) {
  let x = from.x + NODE_W;
  let y = from.y + NODE_H / 2;
  let d = `M${x},${y}`;
  const curve = (x2, y2) => {
    const bend = (x2 - x) / 2; // control points stay between the columns
    d += ` C${x + bend},${y} ${x2 - bend},${y2} ${x2},${y2}`;
    [x, y] = [x2, y2];
  };
  for (const way of via) {
    curve(way.x1, way.y);
    d += ` L${way.x2},${way.y}`;
    x = way.x2;
  }
  curve(to.x - 6, to.y + NODE_H / 2);
  return d;
}

/** "; 3 attempts, cost ~$0.12, 12.3k tokens in, 4.5k out, 40 tool calls" for a node's title. */
function usageLine(u) {
  return (
    `; ${plural(u.attempts, "attempt")}, cost ${usd(u.cost_usd || null, u.cost_estimated)}` +
    `, ${tokens(u.input_tokens)} tokens in, ${tokens(u.output_tokens)} out` +
    `, ${count(u.tool_calls ?? 0)} tool calls`
  );
}

export class GraphView {
  /**
   * `onSelect(unitId)` is called when a node is clicked (or Enter is pressed
   * on it); `laid`: the graph's layout, if made already (the compare page
   * draws two graphs with one); `dryRun`: nothing ran, units are "planned".
   */
  constructor(root, graph, { onSelect, laid = null, dryRun = false }) {
    this.root = root;
    this.onSelect = onSelect;
    this.dryRun = dryRun;
    this.selected = null;
    this.nodes = new Map(); // id → {group, title, name, meta, cost, progress, bar, key}
    this.edges = []; // {path, from, to}
    this.laid = laid || layout(graph);
    this.legend = h("div", { class: "legend" });
    this.svg = this.draw();
    this.box = h("div", { class: "graph-box" }, this.svg);
    this.zoom = new PanZoom(this.box, this.svg, {
      width: this.laid.width,
      height: this.laid.height,
      label: "dependency graph",
    });
    this.box.append(this.zoom.controls);
    root.closest(".run")?.classList.toggle("graph-large", this.laid.nodes.size > LARGE);
    put(root, this.box, this.legend);
  }

  draw() {
    const { nodes, edges } = this.laid;
    const svg = s("svg", {
      class: "graph",
      role: "group",
      "aria-label": `dependency graph of ${nodes.size} units`,
    });
    const defs = s(
      "defs",
      {},
      s(
        "marker",
        {
          id: "arrow",
          viewBox: "0 0 10 10",
          refX: 9,
          refY: 5,
          markerWidth: 7,
          markerHeight: 7,
          orient: "auto",
        },
        s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }),
      ),
    );
    const edgeLayer = s("g", { class: "edges", "aria-hidden": "true" });
    for (const e of edges) {
      // Drawn from the dependency (e.to) to the dependent (e.from).
      const path = s("path", {
        d: edgePath(nodes.get(e.to), nodes.get(e.from), e.via),
        class: "edge",
        "marker-end": "url(#arrow)",
        "data-from": e.from,
        "data-to": e.to,
      });
      edgeLayer.append(path);
      this.edges.push({ path, from: e.from, to: e.to });
    }
    const nodeLayer = s("g", { class: "nodes" });
    for (const [id, at] of nodes) nodeLayer.append(this.drawNode(id, at));
    svg.append(defs, edgeLayer, nodeLayer);
    return svg;
  }

  drawNode(id, at) {
    const title = s("title", { text: id });
    const name = s("text", { x: at.x + INSET, y: at.y + 19, class: "node-name", text: id });
    const meta = s("text", { x: at.x + INSET, y: at.y + 35, class: "node-meta", text: "pending" });
    const right = { x: at.x + NODE_W - INSET, "text-anchor": "end" };
    const cost = s("text", { ...right, y: at.y + 35, class: "node-cost" });
    const progress = s("text", { ...right, y: at.y + 19, class: "node-progress" });
    const bar = (cls) =>
      s("rect", {
        x: at.x + INSET,
        y: at.y + NODE_H - 8,
        width: NODE_W - 2 * INSET,
        height: 3,
        rx: 1.5,
        class: cls,
      });
    const track = bar("node-track");
    const done = bar("node-bar");
    done.setAttribute("width", 0);
    const box = s("rect", { x: at.x, y: at.y, width: NODE_W, height: NODE_H, rx: 8, class: "node-box" });
    const group = s(
      "g",
      {
        class: "node status-pending",
        tabindex: 0,
        role: "button",
        "aria-label": id,
        "data-unit": id,
        "data-status": "pending",
        on: {
          click: () => this.onSelect(id),
          focus: () => this.zoom.reveal({ ...at, width: NODE_W, height: NODE_H }),
          keydown: (event) => {
            if (event.key === "Enter" || event.key === " ") {
              event.preventDefault();
              this.onSelect(id);
            }
          },
        },
      },
      title,
      box,
      name,
      progress,
      meta,
      cost,
      track,
      done,
    );
    this.nodes.set(id, { id, group, title, name, meta, cost, progress, bar: done, key: "" });
    return group;
  }

  /**
   * Cut the texts so that none runs into another: the name gives way to the
   * task count; on the second line the status gives way to the cost (the
   * status is also the box's color), which keeps at least most of the line.
   */
  fitLabels(node, status, costText) {
    const inner = NODE_W - 2 * INSET;
    const gap = 6;
    const progress = node.progress.textContent ? node.progress.getComputedTextLength() + gap : 0;
    fitText(node.name, node.id, inner - progress);
    fitText(node.cost, costText, inner * 0.7);
    const cost = costText ? node.cost.getComputedTextLength() + gap : 0;
    fitText(node.meta, status, inner - cost);
  }

  /** Recolor nodes from the unit states (cheap when nothing changed). */
  update(units, runStatus) {
    const counts = Object.fromEntries([...UNIT_STATUSES, PLANNED].map((st) => [st, 0]));
    for (const [id, node] of this.nodes) {
      const shown = units.view(id, runStatus);
      const { done, tasks, usage } = shown;
      // A dry run ran nothing: its units were planned, not left pending or stopped.
      const status = this.dryRun ? PLANNED : shown.status;
      counts[status] += 1;
      const used = usage && usage.attempts ? usage : null;
      const spend = used ? `${used.attempts}|${used.cost_usd}|${used.tool_calls}` : "";
      const key = `${status}|${done}|${tasks}|${spend}`;
      if (key === node.key) continue;
      node.key = key;
      node.group.setAttribute("class", `node status-${status}${id === this.selected ? " selected" : ""}`);
      node.group.dataset.status = status;
      node.group.dataset.done = String(done);
      node.progress.textContent = tasks ? `${done}/${tasks}` : "";
      node.bar.setAttribute("width", tasks ? ((NODE_W - 2 * INSET) * done) / tasks : 0);
      const spent = used && used.cost_usd ? `${usd(used.cost_usd, used.cost_estimated)} · ` : "";
      this.fitLabels(node, status, used ? `${spent}${used.attempts} att` : "");
      node.group.dataset.attempts = used ? String(used.attempts) : "";
      node.group.dataset.cost = used && used.cost_usd !== null ? String(used.cost_usd) : "";
      const text = `${id}: ${status}, ${done} of ${tasks} tasks done${used ? usageLine(used) : ""}`;
      node.title.textContent = text;
      node.group.setAttribute("aria-label", text);
    }
    this.drawLegend(counts);
  }

  drawLegend(counts) {
    const items = [...UNIT_STATUSES, PLANNED]
      .filter((st) => counts[st] > 0)
      .map((st) =>
        h("span", { class: `legend-item status-${st}` }, h("i", { class: "swatch" }), `${st} ${counts[st]}`),
      );
    put(this.legend, ...items);
  }

  select(id) {
    this.selected = id || null;
    for (const [nodeId, node] of this.nodes)
      node.group.classList.toggle("selected", nodeId === this.selected);
    for (const edge of this.edges) {
      edge.path.classList.toggle("near", edge.from === this.selected || edge.to === this.selected);
    }
    this.svg.classList.toggle("has-selection", Boolean(this.selected));
  }

  destroy() {
    this.zoom.destroy();
  }
}
