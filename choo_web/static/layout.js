// Laying out a dependency graph by levels: one column per level, and within
// a column an order that keeps edges from crossing where it can
// (barycenter sweeps, keeping the best order seen).
//
// Edges go from a unit to a unit it depends on ({from, to}); they are drawn
// from the dependency (left) to the dependent (right).

export const NODE_W = 172;
export const NODE_H = 50;
const COL_GAP = 76;
const ROW_GAP = 14;
const PAD = 14;
const SWEEPS = 8;
const MAX_EDGES_SCORED = 1500; // above this, crossing counts cost more than they save

/** Columns of node ids: the API's levels, plus any node they forgot. */
function columns(graph) {
  const ids = new Set((graph.nodes || []).map((n) => n.id));
  const seen = new Set();
  const cols = [];
  for (const level of graph.levels || []) {
    const col = level.filter((id) => ids.has(id) && !seen.has(id));
    col.forEach((id) => seen.add(id));
    cols.push(col);
  }
  const rest = [...ids].filter((id) => !seen.has(id));
  if (rest.length) cols.push(rest);
  return cols.filter((col) => col.length);
}

function positionsOf(cols) {
  const pos = new Map();
  cols.forEach((col, level) =>
    col.forEach((id, i) => pos.set(id, { level, rel: (i + 0.5) / col.length, i })),
  );
  return pos;
}

/** Reorder each column by the mean position of its neighbours in `adjacent`. */
function sweep(cols, adjacent, order) {
  for (const level of order) {
    const pos = positionsOf(cols);
    const keyed = cols[level].map((id) => {
      const near = (adjacent.get(id) || []).map((n) => pos.get(n)).filter(Boolean);
      const own = pos.get(id).rel;
      const bary = near.length ? near.reduce((sum, p) => sum + p.rel, 0) / near.length : own;
      return { id, bary, own };
    });
    keyed.sort((a, b) => a.bary - b.bary || a.own - b.own);
    cols[level] = keyed.map((k) => k.id);
  }
}

/** y of each node's centre when every column is centred on the tallest. */
function centres(cols) {
  const tallest = Math.max(...cols.map((c) => c.length));
  const y = new Map();
  cols.forEach((col) => {
    const offset = ((tallest - col.length) * (NODE_H + ROW_GAP)) / 2;
    col.forEach((id, i) => y.set(id, PAD + offset + i * (NODE_H + ROW_GAP) + NODE_H / 2));
  });
  return y;
}

/** Crossings of straight segments between column positions (a proxy for the curves). */
export function crossings(cols, edges) {
  const level = new Map();
  cols.forEach((col, l) => col.forEach((id) => level.set(id, l)));
  const y = centres(cols);
  const segs = edges
    .filter((e) => level.has(e.from) && level.has(e.to))
    .map((e) => {
      const [a, b] = level.get(e.to) <= level.get(e.from) ? [e.to, e.from] : [e.from, e.to];
      return { x1: level.get(a), y1: y.get(a), x2: level.get(b), y2: y.get(b), a, b };
    })
    .filter((s) => s.x2 > s.x1);
  const at = (s, x) => s.y1 + ((s.y2 - s.y1) * (x - s.x1)) / (s.x2 - s.x1);
  let count = 0;
  for (let i = 0; i < segs.length; i++) {
    for (let j = i + 1; j < segs.length; j++) {
      const p = segs[i];
      const q = segs[j];
      if (p.a === q.a || p.b === q.b || p.a === q.b || p.b === q.a) continue;
      const lo = Math.max(p.x1, q.x1);
      const hi = Math.min(p.x2, q.x2);
      if (hi <= lo) continue;
      if ((at(p, lo) - at(q, lo)) * (at(p, hi) - at(q, hi)) < 0) count += 1;
    }
  }
  return count;
}

/** {nodes: Map id → {x, y, level}, edges: [{from, to}], width, height, crossings}. */
export function layout(graph) {
  let cols = columns(graph);
  const ids = new Set(cols.flat());
  const edges = (graph.edges || []).filter((e) => ids.has(e.from) && ids.has(e.to));
  const deps = new Map();
  const dependents = new Map();
  for (const e of edges) {
    if (!deps.has(e.from)) deps.set(e.from, []);
    if (!dependents.has(e.to)) dependents.set(e.to, []);
    deps.get(e.from).push(e.to);
    dependents.get(e.to).push(e.from);
  }
  const scored = edges.length <= MAX_EDGES_SCORED;
  let best = cols.map((c) => [...c]);
  let bestScore = scored ? crossings(best, edges) : 0;
  const down = cols.map((_, l) => l).slice(1);
  const up = cols
    .map((_, l) => l)
    .reverse()
    .slice(1);
  for (let i = 0; i < SWEEPS && (!scored || bestScore > 0); i++) {
    sweep(cols, i % 2 === 0 ? deps : dependents, i % 2 === 0 ? down : up);
    if (!scored) {
      best = cols.map((c) => [...c]);
      continue;
    }
    const score = crossings(cols, edges);
    if (score < bestScore) {
      best = cols.map((c) => [...c]);
      bestScore = score;
    }
  }
  cols = best;
  const y = centres(cols);
  const nodes = new Map();
  cols.forEach((col, level) =>
    col.forEach((id) =>
      nodes.set(id, { x: PAD + level * (NODE_W + COL_GAP), y: y.get(id) - NODE_H / 2, level }),
    ),
  );
  const tallest = Math.max(0, ...cols.map((c) => c.length));
  return {
    nodes,
    edges,
    columns: cols,
    width: PAD * 2 + cols.length * NODE_W + Math.max(0, cols.length - 1) * COL_GAP,
    height: PAD * 2 + tallest * NODE_H + Math.max(0, tallest - 1) * ROW_GAP,
    crossings: scored ? bestScore : null,
  };
}
