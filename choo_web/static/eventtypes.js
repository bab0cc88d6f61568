// The event catalogue, as the daemon serves it (GET /api/event-types): every
// event type with its kind, the unit status it sets, whether it completes a
// task, whether it marks a stop or a resume of the run. The UI keeps no list
// of its own: what a type means is looked up here (see protocol/events.py).
//
// Modules that import this wait for the catalogue (a top-level await);
// boot.js asks for it before they load. If the daemon does not answer, the
// banner shows and the catalogue is asked for again once it is back.

import { getJSON, onReconnect } from "./api.js";
import { EVENT_TYPES_URL } from "./boot.js";

const RETRY_MS = 1500;

async function load() {
  for (;;) {
    try {
      return await getJSON(EVENT_TYPES_URL);
    } catch (error) {
      await new Promise((resolve) => {
        if (error.status !== 0) {
          setTimeout(resolve, RETRY_MS);
          return;
        }
        const stop = onReconnect(() => {
          stop();
          resolve();
        });
      });
    }
  }
}

const catalogue = await load();
const byName = new Map(catalogue.types.map((t) => [t.name, t]));

/** Every type's name, in the catalogue's order. */
export const EVENT_TYPES = catalogue.types.map((t) => t.name);
/** What the types group by (a name's first part), in order. */
export const KINDS = catalogue.kinds;
/** Every status a unit can show, in order ("pending" first). */
export const UNIT_STATUSES = catalogue.unit_statuses;
/** The statuses of a unit that is over (completed, failed, blocked). */
export const UNIT_FINISHED = catalogue.unit_finished;
/** The types whose payload carries the run's graph. */
export const GRAPH_TYPES = catalogue.types.filter((t) => t.graph).map((t) => t.name);

/** The status an event of `type` gives its unit, or null. */
export const unitStatusOf = (type) => byName.get(type)?.unit_status ?? null;
/** Does an event of `type` mark one more of its unit's tasks done? */
export const isTaskDone = (type) => Boolean(byName.get(type)?.task_done);
/** "stop", "resume", or null: does an event of `type` mark a stop or resume of the run? */
export const markerOf = (type) => byName.get(type)?.marker ?? null;
/** The kind of `type` ("orch", "unit", …): its first part if that is a kind, else "other". */
export function kindOf(type) {
  const known = byName.get(type);
  if (known) return known.kind;
  const head = String(type).split(".")[0];
  return KINDS.includes(head) ? head : "other";
}
