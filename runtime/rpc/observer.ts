/**
 * Told the outcome and latency (ms) of each call: how the per-method metrics hook into the RPC client
 * (the balancer) and server without a wrapper promise per call. The telemetry's MethodStats is one.
 */
export interface CallObserver {
  ok(ms: number): void;
  fail(ms: number): void;
}

let turnTime: number | undefined;
let turnDate: number | undefined;
let turnEnding = false;

function endTurn(): void {
  turnTime = undefined;
  turnDate = undefined;
  turnEnding = false;
}

function endTurnSoon(): void {
  if (turnEnding) return;
  turnEnding = true;
  process.nextTick(endTurn);
}

/**
 * `performance.now()` read once per event-loop turn (one I/O or timer callback and the promise reactions
 * it sets off): the clock of the per-method latency metrics of remote calls. A clock read costs ~0.2 µs on
 * some VMs (kvm-clock), four per remote call were ~8% of a small call's CPU, and the calls issued or
 * settled in one turn share it. Latency is then measured between the turns in which a call was issued
 * and its response handled: its resolution is one turn's work, never a call's own.
 */
export function turnClock(): number {
  if (turnTime === undefined) {
    turnTime = performance.now();
    endTurnSoon();
  }
  return turnTime;
}

/**
 * `Date.now()` read once per event-loop turn, like {@link turnClock}: the RPC server's clock for deadlines
 * (a request's deadline is its remaining time from the turn it arrived in) and idle times, read for every
 * batch of requests or responses instead of two or three times per call.
 */
export function turnDateNow(): number {
  if (turnDate === undefined) {
    turnDate = Date.now();
    endTurnSoon();
  }
  return turnDate;
}
