// The dependency graph as SVG: a node per unit, colored by its status, with
// its task progress and what its agents cost (and in how many attempts);
// clicking a node selects its unit.

import { h, put, s } from "./dom.js";
import { layout, NODE_H, NODE_W } from "./layout.js";
import { count, plural, tokens, usd } from "./format.js";
import { UNIT_STATUSES } from "./units.js";

const NAME_CHARS = 20;
const PLANNED = "planned"; // a dry run's units (not a unit status: nothing ran)

const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

function edgePath(from, to) {
  // From the dependency's right side to the dependent's left side.
  const x1 = from.x + NODE_W;
  const y1 = from.y + NODE_H / 2;
  const x2 = to.x - 6;
  const y2 = to.y + NODE_H / 2;
  const bend = Math.max(24, (x2 - x1) / 2);
  return `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`;
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
  /** `onSelect(unitId)` is called when a node is clicked; `dryRun`: nothing ran, units are "planned". */
  constructor(root, graph, { onSelect, dryRun = false }) {
    this.root = root;
    this.onSelect = onSelect;
    this.dryRun = dryRun;
    this.selected = null;
    this.nodes = new Map(); // id → {group, status, fill, label, meta}
    this.edges = []; // {path, from, to}
    this.laid = layout(graph);
    this.legend = h("div", { class: "legend" });
    this.svg = this.draw();
    put(root, h("div", { class: "graph-scroll" }, this.svg), this.legend);
  }

  draw() {
    const { nodes, edges, width, height } = this.laid;
    const svg = s("svg", {
      class: "graph",
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
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
    const edgeLayer = s("g", { class: "edges" });
    for (const e of edges) {
      const path = s("path", {
        d: edgePath(nodes.get(e.to), nodes.get(e.from)),
        class: "edge",
        "marker-end": "url(#arrow)",
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
    const label = s("text", { x: at.x + 12, y: at.y + 20, class: "node-name", text: clip(id, NAME_CHARS) });
    const meta = s("text", { x: at.x + 12, y: at.y + 37, class: "node-meta", text: "pending" });
    const cost = s("text", {
      x: at.x + NODE_W - 12,
      y: at.y + 37,
      class: "node-cost",
      "text-anchor": "end",
    });
    const progress = s("text", {
      x: at.x + NODE_W - 12,
      y: at.y + 20,
      class: "node-progress",
      "text-anchor": "end",
    });
    const track = s("rect", {
      x: at.x + 12,
      y: at.y + NODE_H - 8,
      width: NODE_W - 24,
      height: 3,
      rx: 1.5,
      class: "node-track",
    });
    const bar = s("rect", {
      x: at.x + 12,
      y: at.y + NODE_H - 8,
      width: 0,
      height: 3,
      rx: 1.5,
      class: "node-bar",
    });
    const box = s("rect", { x: at.x, y: at.y, width: NODE_W, height: NODE_H, rx: 8, class: "node-box" });
    const group = s(
      "g",
      {
        class: "node status-pending",
        tabindex: 0,
        role: "button",
        "data-unit": id,
        "data-status": "pending",
        on: {
          click: () => this.onSelect(id),
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
      label,
      progress,
      meta,
      cost,
      track,
      bar,
    );
    this.nodes.set(id, { group, title, meta, cost, progress, bar, key: "" });
    return group;
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
      node.meta.textContent = status;
      node.progress.textContent = tasks ? `${done}/${tasks}` : "";
      node.bar.setAttribute("width", tasks ? ((NODE_W - 24) * done) / tasks : 0);
      const spent = used && used.cost_usd ? `${usd(used.cost_usd, used.cost_estimated)} · ` : "";
      node.cost.textContent = used ? `${spent}${used.attempts} att` : "";
      node.group.dataset.attempts = used ? String(used.attempts) : "";
      node.group.dataset.cost = used && used.cost_usd !== null ? String(used.cost_usd) : "";
      node.title.textContent = `${id}: ${status}, ${done} of ${tasks} tasks done${used ? usageLine(used) : ""}`;
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
}
