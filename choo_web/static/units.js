// Each unit's status and task progress in a run.
//
// The server folds them from the run's events (GET .../units, where `seq`
// says up to which event); what happens after that comes with the live
// events, whose meaning the catalogue gives (eventtypes.js): an event that
// sets a unit's status (the latest by seq wins, so events may arrive in any
// order), a start that says how many of its tasks were already done
// (tasks - pending), a task completed, which adds one. What each unit's
// agents used (attempts, tokens, cost, tool calls) comes only from the
// server's roll-ups, as of the latest GET .../units.

import { isTaskDone, UNIT_STATUSES, unitStatusOf } from "./eventtypes.js";

export { UNIT_STATUSES };

export const isUnitEvent = (type) => unitStatusOf(type) !== null || isTaskDone(type);

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
        doneTasks: new Map(), // task → seq of its latest completion
        usage: null, // the server's roll-up: {attempts, cost_usd, …}, or null
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

  /** The server's outcomes (GET .../units): each unit as of event `seq`, unless already newer. */
  seed({ seq, units }) {
    for (const outcome of units) {
      const unit = this.unit(outcome.unit);
      if (outcome.attempts !== undefined) unit.usage = outcome;
      if (seq > unit.seq) {
        unit.status = outcome.status;
        unit.seq = seq;
      }
      if (seq > unit.baseSeq) {
        unit.tasks = outcome.tasks || unit.tasks;
        unit.base = outcome.done;
        unit.baseSeq = seq;
      }
    }
  }

  /** Take one event into account; true if it changed anything. */
  apply(event) {
    if (!event.unit || !isUnitEvent(event.type)) return false;
    const unit = this.unit(event.unit);
    const payload = event.payload && typeof event.payload === "object" ? event.payload : {};
    if (isTaskDone(event.type)) {
      if (event.task === null || event.task === undefined) return false;
      const known = unit.doneTasks.get(event.task) || 0;
      if (event.seq <= known) return false;
      unit.doneTasks.set(event.task, event.seq);
      return true;
    }
    const status = unitStatusOf(event.type);
    const start = status === "running"; // a (re)start says how many tasks are left
    if (start && event.seq > unit.baseSeq) {
      const tasks = Number(payload.tasks);
      const pending = Number(payload.pending);
      if (Number.isFinite(tasks)) unit.tasks = tasks;
      if (Number.isFinite(tasks) && Number.isFinite(pending)) {
        unit.base = Math.max(0, tasks - pending);
        unit.baseSeq = event.seq;
      }
    }
    if (event.seq <= unit.seq) return start;
    unit.status = status;
    unit.seq = event.seq;
    return true;
  }

  /** {status, done, tasks, usage} as shown, given the run's own status. */
  view(id, runStatus) {
    const unit = this.units.get(id) || this.unit(id);
    let status = unit.status;
    // A run that is over leaves nothing running: those units were interrupted.
    if (runStatus && runStatus !== "running" && (status === "running" || status === "queued")) {
      status = "stopped";
    }
    let done = unit.base;
    for (const seq of unit.doneTasks.values()) if (seq > unit.baseSeq) done += 1;
    if (unit.status === "completed") done = Math.max(done, unit.tasks);
    return { status, done: Math.min(done, unit.tasks || done), tasks: unit.tasks, usage: unit.usage };
  }

  counts(runStatus) {
    const counts = Object.fromEntries(UNIT_STATUSES.map((s) => [s, 0]));
    for (const id of this.units.keys()) counts[this.view(id, runStatus).status] += 1;
    return counts;
  }
}
