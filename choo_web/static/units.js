// Each unit's status and task progress, derived from a run's events.
//
// The graph API gives the plan as it was when the run started; what
// happened since is in the events: unit.queued/started/completed/failed/
// blocked set a unit's status (the latest by seq wins, so pages may arrive
// in any order), unit.started says how many of its tasks were already done
// (tasks - pending) and each later task.completed adds one.

export const UNIT_STATUSES = ["pending", "queued", "running", "completed", "failed", "blocked", "stopped"];

const BY_TYPE = {
  "unit.queued": "queued",
  "unit.started": "running",
  "unit.completed": "completed",
  "unit.failed": "failed",
  "unit.blocked": "blocked",
};

export const isUnitEvent = (type) => type in BY_TYPE || type === "task.completed";

export class UnitStates {
  constructor(nodes = []) {
    this.units = new Map();
    for (const node of nodes) this.unit(node.id, node);
  }

  unit(id, node = {}) {
    let unit = this.units.get(id);
    if (!unit) {
      const done = Number(node.done) || 0;
      unit = {
        tasks: Number(node.tasks) || 0,
        status: "pending",
        seq: 0,
        base: done,
        baseSeq: 0,
        completed: new Map(),
      };
      this.units.set(id, unit);
    }
    return unit;
  }

  /** The plan arrived (maybe after some events): its task counts are the starting point. */
  plan(nodes) {
    for (const node of nodes) {
      const unit = this.unit(node.id, node);
      if (!unit.tasks) unit.tasks = Number(node.tasks) || 0;
      if (unit.baseSeq === 0) unit.base = Number(node.done) || 0;
    }
  }

  /** Take one event into account; true if it changed anything. */
  apply(event) {
    if (!event.unit || !isUnitEvent(event.type)) return false;
    const unit = this.unit(event.unit);
    const payload = event.payload && typeof event.payload === "object" ? event.payload : {};
    if (event.type === "task.completed") {
      if (event.task === null || event.task === undefined) return false;
      const known = unit.completed.get(event.task) || 0;
      if (event.seq <= known) return false;
      unit.completed.set(event.task, event.seq);
      return true;
    }
    if (event.type === "unit.started" && event.seq > unit.baseSeq) {
      const tasks = Number(payload.tasks);
      const pending = Number(payload.pending);
      if (Number.isFinite(tasks)) unit.tasks = tasks;
      if (Number.isFinite(tasks) && Number.isFinite(pending)) {
        unit.base = Math.max(0, tasks - pending);
        unit.baseSeq = event.seq;
      }
    }
    if (event.seq <= unit.seq) return event.type === "unit.started";
    unit.status = BY_TYPE[event.type];
    unit.seq = event.seq;
    return true;
  }

  /** {status, done, tasks} as shown, given the run's own status. */
  view(id, runStatus) {
    const unit = this.units.get(id) || this.unit(id);
    let status = unit.status;
    // A run that is over leaves nothing running: those units were interrupted.
    if (runStatus && runStatus !== "running" && (status === "running" || status === "queued")) {
      status = "stopped";
    }
    let done = unit.base;
    for (const seq of unit.completed.values()) if (seq > unit.baseSeq) done += 1;
    if (unit.status === "completed") done = Math.max(done, unit.tasks);
    return { status, done: Math.min(done, unit.tasks || done), tasks: unit.tasks };
  }

  counts(runStatus) {
    const counts = Object.fromEntries(UNIT_STATUSES.map((s) => [s, 0]));
    for (const id of this.units.keys()) counts[this.view(id, runStatus).status] += 1;
    return counts;
  }
}
