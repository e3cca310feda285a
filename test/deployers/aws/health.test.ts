/**
 * The group container's health check, run as ECS runs it (the stack's `healthCheck.command`, here with
 * this node) against the agent's health endpoint in front of a real weavelet: healthy, hung (SIGSTOP:
 * alive but answering nothing), recovered, and exited. ECS's own health-check scheduling (interval,
 * retries, start period, replacing the task) is not exercised: neither the emulator nor the harness runs
 * ECS health checks (docs/aws.md).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import type { Server } from "node:http";
import { after, before, describe, test } from "node:test";
import { Envelope, type EnvelopeHandler } from "../../../runtime/deployer.js";
import { healthCheckCommand } from "../../../runtime/deployers/aws/contract.js";
import { healthPort, serveHealth } from "../../../runtime/deployers/aws/health.js";
import { ECHO_APP, get, waitFor } from "../../support/index.js";

const handler: EnvelopeHandler = {
  async activateComponent() {},
  async getListenerAddress() {
    return { address: "127.0.0.1:0" };
  },
  async exportListener() {
    return { proxyAddress: "", error: "" };
  },
  handleLogEntries() {},
  handleTraceSpans() {},
};

/** Runs the health check command as the container would; resolves with its exit code. */
function runHealthCheck(port: number): Promise<number> {
  const [cmd, program, ...args] = healthCheckCommand(port);
  assert.deepEqual([cmd, program], ["CMD", "node"]);
  return new Promise((resolve) => {
    execFile(process.execPath, args, { timeout: 20_000 }, (err) => resolve(err ? ((err as { code?: number }).code ?? -1) : 0));
  });
}

describe("the container health check follows the weavelet's health", () => {
  let envelope: Envelope;
  let server: Server;
  let port: number;

  before(async () => {
    envelope = new Envelope({
      binary: ECHO_APP,
      weaveletArgs: {
        app: "t",
        deploymentId: "d1",
        id: "w1",
        internalAddress: "127.0.0.1:0",
        config: {},
        runMain: true,
        group: "main",
        components: ["tsweaver/Main"],
      },
    });
    await envelope.serve(handler);
    // The agent's probe: the weavelet's health while it runs, nothing otherwise.
    server = await serveHealth(0, "127.0.0.1", async (timeoutMs) => (envelope.running ? envelope.getHealth(timeoutMs) : undefined));
    port = healthPort(server);
  });
  after(async () => {
    server?.close();
    await envelope?.stop(2000);
  });

  test("healthy weavelet: the check passes (exit 0), the endpoint says HEALTHY", async () => {
    assert.equal(await runHealthCheck(port), 0);
    const reply = await get(`http://127.0.0.1:${port}/health`);
    assert.deepEqual([reply.status, reply.body.trim()], [200, "HEALTHY"]);
  });

  test("hung weavelet: the check fails (exit 1); once it answers again, it passes", async () => {
    process.kill(envelope.pid, "SIGSTOP");
    try {
      assert.equal(await runHealthCheck(port), 1);
      const reply = await get(`http://127.0.0.1:${port}/health`);
      assert.deepEqual([reply.status, reply.body.trim()], [503, "UNHEALTHY"]);
    } finally {
      process.kill(envelope.pid, "SIGCONT");
    }
    assert.equal(await waitFor("healthy again", async () => (await runHealthCheck(port)) === 0), true);
  });

  test("a weavelet that exited fails the check; nothing listens beyond loopback", async () => {
    await envelope.stop(2000);
    assert.equal(await runHealthCheck(port), 1);
    assert.equal((server.address() as { address: string }).address, "127.0.0.1");
  });
});

test("no endpoint (the agent is gone): the check fails", async () => {
  const server = await serveHealth(0, "127.0.0.1", async () => "HEALTHY");
  const port = healthPort(server);
  await new Promise((r) => server.close(r));
  assert.equal(await runHealthCheck(port), 1);
});
