import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { test } from "node:test";
import { loadConfig } from "../../../runtime/core/config.js";
import type { ColocationAdvice } from "../../../runtime/telemetry/advise.js";
import type { CallGraph } from "../../../runtime/telemetry/graph.js";
import type { StoredSeries } from "../../../runtime/telemetry/metricstore.js";
import { CLI, ROOT, getJson, tempDir, waitFor, writeConfig } from "../../support/index.js";
import { deployForTest } from "../../support/multi.js";

const run = promisify(execFile);
const FIVE_APP = path.join(ROOT, "dist/examples/five/main.js");

function fiveConfig(colocate: string): string {
  return writeConfig(
    `[tsweaver]\nname = "five"\nbinary = ${JSON.stringify(FIVE_APP)}\n${colocate}\n\n[multi]\nreplicas = 1\n\n[multi.listeners.shop]\naddress = "127.0.0.1:0"\n`,
  );
}

/** The five-component shop's two pages, `n` times each. */
async function traffic(base: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await getJson(`${base}/quote?item=mug:2&item=cap:1&currency=EUR`);
    await getJson(`${base}/products?currency=EUR`);
  }
}

test("tsweaver multi advise: measured edges → colocate groups that, deployed, turn those calls in-process", async () => {
  const stateDir = path.join(tempDir(), "state");
  const cli = async (...args: string[]) =>
    run(process.execPath, [CLI, "multi", "advise", ...args], { env: { ...process.env, TSWEAVER_STATE_DIR: stateDir } });

  // One group per component: every call crosses processes.
  const first = await deployForTest(fiveConfig(""), stateDir, "shop");
  let advice: ColocationAdvice;
  try {
    const auth = { authorization: `Bearer ${first.deployer.adminToken}` };
    const admin = `http://${first.deployer.adminAddress}`;
    await traffic(first.base, 40);
    // Rates need two metric history points over a window with calls.
    advice = await waitFor("advice with measured rates", async () => {
      await traffic(first.base, 5);
      const a = JSON.parse((await cli("--json", "--window", "5m")).stdout) as ColocationAdvice;
      return a.windowSec > 0 && a.edges.length > 0 ? a : undefined;
    });
    // The served side counts payload bytes per method, so every cross-process edge has a bytes/s estimate.
    const { series } = await getJson<{ series: StoredSeries[] }>(`${admin}/api/metrics?name=served_bytes`, auth);
    assert.ok(
      series.some((s) => s.labels["component"] === "five/Checkout" && s.value > 0),
      JSON.stringify(series),
    );
    const graph = await getJson<CallGraph>(`${admin}/api/graph?window=300`, auth);
    for (const e of graph.edges.filter((x) => x.remote && x.callsPerSec > 0)) assert.ok((e.bytesPerSec ?? 0) > 0, JSON.stringify(e));

    assert.ok(advice.changed);
    assert.ok(advice.now.callsPerSec > advice.advised.callsPerSec, JSON.stringify(advice));
    for (const g of advice.colocate) assert.ok(g.length >= 2 && g.length <= 4, JSON.stringify(advice.colocate));
    // The line to paste comes with the advice (the dashboard shows it as is).
    assert.match((advice as ColocationAdvice & { toml?: string }).toml ?? "", /^colocate = \[\[".*"\]\]$/);
    // Pricing calls Currency on every price: the heaviest pair, always advised together.
    assert.ok(
      advice.colocate.some((g) => g.includes("five/Pricing") && g.includes("five/Currency")),
      JSON.stringify(advice.colocate),
    );

    // The text form: the table, and the weaver.toml line to paste.
    const text = (await cli("--window", "5m")).stdout;
    assert.match(text, /^Colocation advice for deployment \S+ \(app five\)/);
    assert.match(text, /five\/Currency ↔ five\/Pricing/);
    assert.match(text, /^ {2}colocate = \[\[".*"\]\]$/m);

    // Limits: --separate keeps a component alone; an unknown one is a clear error.
    const alone = JSON.parse((await cli("--json", "--window", "5m", "--separate", "five/Pricing")).stdout) as ColocationAdvice;
    assert.ok(!alone.colocate.flat().includes("five/Pricing"));
    await assert.rejects(cli("--separate", "five/Nope"), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr, /separate: unknown component five\/Nope \(components: /);
      return true;
    });
    await assert.rejects(cli("--max-components", "0"), /max: the most components per group, an integer ≥ 1/);
  } finally {
    await first.deployer.stop();
  }

  // Deployed as advised: the advised pairs' calls no longer cross processes.
  const line = (await import("../../../runtime/telemetry/advise.js")).colocateToml(advice.colocate);
  const advisedConfig = fiveConfig(line);
  assert.deepEqual(
    loadConfig(advisedConfig).colocate.map((g) => [...g].sort()),
    advice.colocate,
    "the printed line is valid weaver.toml",
  );
  const second = await deployForTest(advisedConfig, stateDir, "shop");
  try {
    const auth = { authorization: `Bearer ${second.deployer.adminToken}` };
    await traffic(second.base, 20);
    const graph = await waitFor("the advised deployment's call graph", async () => {
      await traffic(second.base, 2);
      const g = await getJson<CallGraph>(`http://${second.deployer.adminAddress}/api/graph?window=300`, auth);
      return g.edges.length > 0 ? g : undefined;
    });
    for (const pair of advice.edges.filter((e) => !e.remoteAdvised)) {
      const edges = graph.edges.filter((e) => [e.caller, e.callee].sort().join() === [pair.a, pair.b].join());
      assert.ok(edges.length > 0, `${pair.a} ↔ ${pair.b} still called`);
      for (const e of edges) assert.equal(e.remote, false, `${e.caller} → ${e.callee} is in-process once colocated`);
    }
  } finally {
    await second.deployer.stop();
  }
});
