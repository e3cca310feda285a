/**
 * Told the outcome and latency (ms) of each call: how the per-method metrics hook into the RPC client
 * (the balancer), the RPC server and in-process calls (`callInProcess`) without a wrapper promise per
 * call. The telemetry's MethodStats is one.
 */
export interface CallObserver {
  ok(ms: number): void;
  fail(ms: number): void;
}

let turnTime: number | undefined;
let turnWall: number | undefined;
let turnEnding = false;

function endTurn(): void {
  turnTime = undefined;
  turnWall = undefined;
  turnEnding = false;
}

function clearAtEndOfTurn(): void {
  if (turnEnding) return;
  turnEnding = true;
  process.nextTick(endTurn);
}

/**
 * `performance.now()` read once per event-loop turn (one I/O or timer callback and the promise reactions
 * it sets off): the clock of the per-method latency metrics of calls, local and remote. A clock read costs ~0.2 µs on
 * some VMs (kvm-clock), four per remote call were ~8% of a small call's CPU (two per local call were
 * more than the call itself), and the calls issued or settled in one turn share it. Latency is then
 * measured between the turns in which a call was issued and its result handled: its resolution is one
 * turn's work, never a call's own (a local call that completes within its turn measures 0).
 */
export function turnClock(): number {
  if (turnTime === undefined) {
    turnTime = performance.now();
    clearAtEndOfTurn();
  }
  return turnTime;
}

/**
 * `Date.now()` read once per event-loop turn, like {@link turnClock}: the start of the default deadline
 * of the calls made in a turn (at most one turn's work early, against 30 s by default), and the RPC
 * server's clock for a request's deadline on arrival, its expiry check and idle times.
 */
export function turnNow(): number {
  if (turnWall === undefined) {
    turnWall = Date.now();
    clearAtEndOfTurn();
  }
  return turnWall;
}
