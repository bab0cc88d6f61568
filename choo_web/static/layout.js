// Laying out a dependency graph by levels: one column per level, and within
// a column an order that keeps edges from crossing where it can
// (barycenter sweeps, keeping the best order seen).
//
// An edge that spans several levels gets a waypoint in each column between
// its ends: a thin slot of its own in that column's order, so that the edge
// crosses the column in a gap between nodes rather than through one.
//
// Edges go from a unit to a unit it depends on ({from, to}); they are drawn
// from the dependency (left) to the dependent (right).

export const NODE_W = 172;
export const NODE_H = 48;
const COL_GAP = 56;
const ROW_GAP = 10;
const WAY_GAP = 7; // between a waypoint and its neighbours in a column
const PAD = 14;
const SWEEPS = 8;
const MAX_EDGES_SCORED = 1500; // above this, crossing counts cost more than they save

const WAY = "\u0000way:"; // waypoint ids cannot clash with a unit's name
const isWay = (id) => id.startsWith(WAY);

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

/**
 * Split each edge into one segment per pair of adjacent columns, adding a
 * waypoint in every column it crosses; a dependency's long edges share their
 * waypoints. Returns {segments, ways: edge index → [waypoint ids]}.
 */
function splitEdges(cols, edges) {
  const level = new Map();
  cols.forEach((col, l) => col.forEach((id) => level.set(id, l)));
  const placed = new Set();
  const segments = new Map(); // "from → to" → segment, each once
  const ways = edges.map((e) => {
    const chain = [];
    for (let l = level.get(e.to) + 1; l < level.get(e.from); l++) {
      const id = `${WAY}${l}:${e.to}`;
      if (!placed.has(id)) cols[l].push(id);
      placed.add(id);
      chain.push(id);
    }
    const stops = [e.to, ...chain, e.from];
    for (let i = 1; i < stops.length; i++)
      segments.set(`${stops[i]} → ${stops[i - 1]}`, { from: stops[i], to: stops[i - 1] });
    return chain;
  });
  return { segments: [...segments.values()], ways };
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

/** A column's height: nodes, waypoints and the gaps between them. */
function stack(col) {
  const tops = [];
  let y = 0;
  col.forEach((id, i) => {
    if (i > 0) y += isWay(id) || isWay(col[i - 1]) ? WAY_GAP : ROW_GAP;
    tops.push(y);
    y += isWay(id) ? 0 : NODE_H;
  });
  return { tops, height: y };
}

/** y of each item's centre (a waypoint's line) when every column is centred on the tallest. */
function centres(cols) {
  const stacks = cols.map(stack);
  const tallest = Math.max(0, ...stacks.map((st) => st.height));
  const y = new Map();
  cols.forEach((col, l) => {
    const offset = (tallest - stacks[l].height) / 2;
    col.forEach((id, i) => y.set(id, PAD + offset + stacks[l].tops[i] + (isWay(id) ? 0 : NODE_H / 2)));
  });
  return { y, tallest };
}

/** Crossings of straight segments between column positions (a proxy for the curves). */
export function crossings(cols, edges) {
  const level = new Map();
  cols.forEach((col, l) => col.forEach((id) => level.set(id, l)));
  const { y } = centres(cols);
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

function adjacency(segments) {
  const deps = new Map();
  const dependents = new Map();
  for (const e of segments) {
    if (!deps.has(e.from)) deps.set(e.from, []);
    if (!dependents.has(e.to)) dependents.set(e.to, []);
    deps.get(e.from).push(e.to);
    dependents.get(e.to).push(e.from);
  }
  return { deps, dependents };
}

/** The column order with the fewest crossings the sweeps found. */
function order(cols, segments) {
  const { deps, dependents } = adjacency(segments);
  const scored = segments.length <= MAX_EDGES_SCORED;
  let best = cols.map((c) => [...c]);
  let bestScore = scored ? crossings(best, segments) : 0;
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
    const score = crossings(cols, segments);
    if (score < bestScore) {
      best = cols.map((c) => [...c]);
      bestScore = score;
    }
  }
  return { cols: best, crossings: scored ? bestScore : null };
}

const columnX = (level) => PAD + level * (NODE_W + COL_GAP);

/**
 * {nodes: Map id → {x, y, level}, edges: [{from, to, via: [{x1, x2, y}]}],
 * columns, width, height, crossings}. An edge's `via` are the lines where it
 * crosses the columns between its ends (x1..x2 at height y), left to right.
 */
export function layout(graph) {
  const cols = columns(graph);
  const ids = new Set(cols.flat());
  const level = new Map();
  cols.forEach((col, l) => col.forEach((id) => level.set(id, l)));
  const edges = (graph.edges || []).filter((e) => ids.has(e.from) && ids.has(e.to));
  // An edge drawn left to right spans from its dependency's level to its dependent's.
  const forward = edges.map((e) => (level.get(e.to) <= level.get(e.from) ? e : { from: e.to, to: e.from }));
  const { segments, ways } = splitEdges(cols, forward);
  const best = order(cols, segments);
  const { y, tallest } = centres(best.cols);
  const nodes = new Map();
  best.cols.forEach((col, l) =>
    col.forEach((id) => {
      if (!isWay(id)) nodes.set(id, { x: columnX(l), y: y.get(id) - NODE_H / 2, level: l });
    }),
  );
  const routed = edges.map((e, n) => ({
    from: e.from,
    to: e.to,
    via: ways[n].map((id) => {
      const x = columnX(Number(id.slice(WAY.length, id.indexOf(":", WAY.length))));
      return { x1: x, x2: x + NODE_W, y: y.get(id) };
    }),
  }));
  return {
    nodes,
    edges: routed,
    columns: best.cols.map((col) => col.filter((id) => !isWay(id))),
    width: PAD * 2 + cols.length * NODE_W + Math.max(0, cols.length - 1) * COL_GAP,
    height: PAD * 2 + tallest,
    crossings: best.crossings,
  };
}
