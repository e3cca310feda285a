import assert from "node:assert/strict";
import { Duplex, PassThrough } from "node:stream";
import { test } from "node:test";
import { ControlChannel, controlStub, serveRequests } from "../../runtime/control/channel.js";
import { ENVELOPE_HANDLER, WEAVELET_CONTROL, type WeaveletControl } from "../../runtime/control/control.js";

/** Two control channels joined back to back in memory: the envelope's end and the weavelet's. */
function pair(control: WeaveletControl) {
  const toWeavelet = new PassThrough();
  const toEnvelope = new PassThrough();
  const envelopeEnd = new ControlChannel(
    Duplex.from({ readable: toEnvelope, writable: toWeavelet }),
    serveRequests(
      ENVELOPE_HANDLER,
      {
        async activateComponent() {},
        async getListenerAddress() {
          return { address: "127.0.0.1:0" };
        },
        async exportListener() {
          return { proxyAddress: "", error: "" };
        },
        handleLogEntries() {},
        handleTraceSpans() {},
      },
      "envelope",
    ),
    "weavelet",
  );
  const weaveletEnd = new ControlChannel(
    Duplex.from({ readable: toWeavelet, writable: toEnvelope }),
    serveRequests(WEAVELET_CONTROL, control, "weavelet"),
    "envelope",
  );
  return {
    envelopeEnd,
    weaveletEnd,
    weavelet: controlStub(envelopeEnd, WEAVELET_CONTROL),
    envelope: controlStub(weaveletEnd, ENVELOPE_HANDLER),
  };
}

const unused = async (): Promise<never> => {
  throw new Error("not used by this test");
};

test("a control stub calls the served interface's method and resolves with its typed reply; errors travel back", async () => {
  const routed: string[] = [];
  const control: WeaveletControl = {
    initWeavelet: unused,
    updateComponents: unused,
    async updateRoutingInfo({ routingInfo }) {
      routed.push(`${routingInfo?.component}@${routingInfo?.assignment?.version}`);
    },
    async getHealth() {
      return { status: "UNHEALTHY" };
    },
    getLoad: unused,
    getMetrics: unused,
    async getProfile({ kind }) {
      throw new Error(`no ${kind} profile here`);
    },
    stop: unused,
    updateCertificate: unused,
  };
  const { envelopeEnd, weaveletEnd, weavelet, envelope } = pair(control);
  assert.deepEqual(await weavelet.getHealth({}), { status: "UNHEALTHY" });
  // 64-bit integers cross as decimal strings, beyond 2^53.
  await weavelet.updateRoutingInfo({
    routingInfo: { component: "a/B", local: false, replicas: [], assignment: { version: "18446744073709551615", slices: [] } },
  });
  assert.deepEqual(routed, ["a/B@18446744073709551615"]);
  await assert.rejects(weavelet.getProfile({ kind: "HEAP", durationMs: 0 }), /^Error: no HEAP profile here$/);
  assert.deepEqual(await envelope.getListenerAddress({ name: "api" }), { address: "127.0.0.1:0" });
  envelopeEnd.close();
  weaveletEnd.close();
});

test("a request the other side does not serve is refused, naming the side and the request", async () => {
  const { envelopeEnd, weaveletEnd } = pair({
    initWeavelet: unused,
    updateComponents: unused,
    updateRoutingInfo: unused,
    getHealth: unused,
    getLoad: unused,
    getMetrics: unused,
    getProfile: unused,
    stop: unused,
    updateCertificate: unused,
  });
  // The envelope's handler does not serve getHealth (the weavelet does).
  await assert.rejects(weaveletEnd.request("getHealth", {}), /envelope cannot handle control request getHealth/);
  await assert.rejects(
    envelopeEnd.request("activateComponent", { component: "x", routed: false }),
    /weavelet cannot handle control request activateComponent/,
  );
  envelopeEnd.close();
  weaveletEnd.close();
});
