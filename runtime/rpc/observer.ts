// The call observer and its clocks live in core (in-process calls use them too); the RPC client and
// server import them from here.
export { type CallObserver, turnClock, turnNow } from "../core/observer.js";
