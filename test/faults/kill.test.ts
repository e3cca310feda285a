import assert from "node:assert/strict";
import http from "node:http";
import path from "node:path";
import { test } from "node:test";
import { loadConfig } from "../../runtime/core/config.js";
import { MultiDeployer } from "../../runtime/deployers/multi/deployer.js";
import { ECHO_APP, tempDir, waitFor, writeConfig } from "../support/index.js";

/** How long replicas are killed; FAULT_SECONDS=60 for the figures in docs/reliability.md. */
const SECONDS = Number(process.env["FAULT_SECONDS"] ?? 30);
/** A request's deadline at the client: one answered later (or not at all) counts as a failure. */
const DEADLINE_MS = 5_000;

interface Tally {
  ok: number;
  failed: number;
  late: number;
  maxMs: number;
  errors: string[];
}

function request(url: string, method: string, tally: Tally): Promise<void> {
  const started = Date.now();
  return new Promise((resolve) => {
    const done = (ok: boolean, why = "") => {
      const ms = Date.now() - started;
      tally.maxMs = Math.max(tally.maxMs, ms);
      if (ms > DEADLINE_MS) tally.late++;
      if (ok) tally.ok++;
      else {
        tally.failed++;
        if (tally.errors.length < 10) tally.errors.push(why);
      }
      resolve();
    };
    const req = http.request(url, { method, agent: false, timeout: DEADLINE_MS }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => done(res.statusCode === 200, `${res.statusCode} ${body.trim()}`));
      res.on("error", (err) => done(false, err.message));
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${DEADLINE_MS} ms`)));
    req.on("error", (err) => done(false, err.message));
    req.end();
  });
}

test(
  `kill -9 of a replica every 5 s under load for ${SECONDS} s: no idempotent request fails`,
  { timeout: (SECONDS + 90) * 1000 },
  async (t) => {
    const dir = tempDir();
    const config = writeConfig(
      `[tsweaver]\nname = "kill"\nbinary = ${JSON.stringify(ECHO_APP)}\n[multi]\nreplicas = 2\n[multi.listeners.api]\naddress = "127.0.0.1:0"\n`,
      dir,
    );
    const lines: string[] = [];
    const deployer = new MultiDeployer(loadConfig(config), {
      stateDir: path.join(dir, "state"),
      printLogs: false,
      progress: (l) => lines.push(l),
    });
    try {
      await deployer.deploy();
      const addr = await waitFor("the api proxy", async () => (await deployer.listenerAddresses()).get("api"));
      await waitFor("2 echo replicas", () => deployer.pids().get("test-echo")?.length === 2);
      await waitFor("2 main replicas behind the proxy", () => deployer.status().listeners[0]?.replicas === 2);
      const base = `http://${addr}`;
      // Idempotent: GET through the proxy (retried there), Echo.echo (retried by the caller).
      // Not idempotent: POST through the proxy (not retried), Echo.once (declared noRetry).
      const idempotent: Tally = { ok: 0, failed: 0, late: 0, maxMs: 0, errors: [] };
      const once: Tally = { ok: 0, failed: 0, late: 0, maxMs: 0, errors: [] };
      const end = Date.now() + SECONDS * 1000;
      const loop = async (url: string, method: string, tally: Tally) => {
        while (Date.now() < end) await request(url, method, tally);
      };
      const victims = ["test-echo-0", "tsweaver-main-0", "test-echo-1", "tsweaver-main-1"];
      let kills = 0;
      const killer = (async () => {
        for (let i = 0; Date.now() + 5_000 < end; i++) {
          await new Promise((r) => setTimeout(r, 5_000));
          const id = victims[i % victims.length]!;
          const r = deployer
            .status()
            .groups.flatMap((g) => g.replicas)
            .find((x) => x.id === id);
          if (r && r.pid > 0 && r.state === "running") {
            process.kill(r.pid, "SIGKILL");
            kills++;
          }
        }
      })();
      await Promise.all([
        ...Array.from({ length: 4 }, () => loop(`${base}/echo?s=x`, "GET", idempotent)),
        loop(`${base}/once`, "POST", once),
        killer,
      ]);
      const delays = lines.map((l) => /restart \d+ in (\d+) ms/.exec(l)?.[1]).filter((d) => d !== undefined);
      t.diagnostic(
        `${SECONDS} s, ${kills} kills; idempotent: ${idempotent.ok} ok, ${idempotent.failed} failed, ${idempotent.late} past ${DEADLINE_MS} ms, max ${idempotent.maxMs} ms; ` +
          `non-idempotent: ${once.ok} ok, ${once.failed} failed (${once.errors.join(" | ")}), ${once.late} past ${DEADLINE_MS} ms, max ${once.maxMs} ms; ` +
          `restart delays (ms): ${delays.join(",")}`,
      );
      assert.ok(kills >= Math.floor(SECONDS / 5) - 2, `${kills} replicas killed`);
      assert.ok(idempotent.ok > 0 && once.ok > 0, "requests succeeded");
      assert.deepEqual(idempotent.errors, [], "no idempotent request fails");
      assert.equal(idempotent.late, 0, "no idempotent request outlives its deadline");
      assert.ok(!lines.some((l) => /crash-loops/.test(l)), "killing healthy replicas is not a crash loop");
      assert.ok(
        delays.every((d) => Number(d) <= 200),
        `restart backoff stays short: replicas are healthy between kills (${delays.join(",")})`,
      );
    } finally {
      await deployer.stop();
    }
  },
);
