// The call observer and its clock live in core (in-process calls use them too); the RPC client and
// server import them from here.
export { type CallObserver, turnClock } from "../core/observer.js";
