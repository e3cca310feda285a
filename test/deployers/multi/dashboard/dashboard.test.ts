// The dashboard in a real headless Chromium (Debian's `chromium`, which .ci/run installs), driven by
// playwright-core, against a real multi deployment of the echo fixture.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import type { BrowserContext, Page } from "playwright-core";
import { launchChromium } from "../../../support/chromium.js";
import { type MultiDeployer } from "../../../../runtime/deployers/multi/deployer.js";
import type { TraceSummary } from "../../../../runtime/telemetry/tracestore.js";
import { CLI, ECHO_APP, getJson, tempDir, waitFor, writeConfig } from "../../../support/index.js";
import { deployForTest } from "../../../support/multi.js";
import { countPixels, decodePng } from "./png.js";

const VIEWPORT = { width: 1280, height: 900 };

describe("dashboard in headless Chromium", () => {
  const dir = tempDir();
  const stateDir = path.join(dir, "state");
  let deployer: MultiDeployer;
  let browser: BrowserContext;
  let page: Page;
  let traceId = "";
  let auth: Record<string, string> = {};

  before(async () => {
    const config = writeConfig(
      `[tsweaver]
name = "dashboard"
binary = ${JSON.stringify(ECHO_APP)}
env = { TSWEAVER_TRACE_SAMPLE = "1", TSWEAVER_TRACE_RATE = "0" }

[multi]
replicas = 2

[multi.listeners.api]
address = "127.0.0.1:0"
`,
      dir,
    );
    let base: string;
    ({ deployer, base } = await deployForTest(config, stateDir, "api"));
    auth = { authorization: `Bearer ${deployer.adminToken}` };
    await waitFor("2 echo replicas", () => deployer.pids().get("test-echo")?.length === 2);
    for (let i = 0; i < 30; i++) await getJson(`${base}/echo?s=call${i}`);
    for (let i = 0; i < 3; i++) await getJson(`${base}/fail?name=Broken&message=no`);
    traceId = (await getJson<string>(`${base}/traceparent`)).split("-")[1]!;
    // Both spans of that trace are in before the page loads.
    await waitFor("the trace", async () =>
      (await getJson<{ traces: TraceSummary[] }>(`http://${deployer.adminAddress}/api/traces?limit=100`, auth)).traces.find(
        (t) => t.traceId === traceId && t.spans === 2,
      ),
    );
    browser = await launchChromium(path.join(dir, "chromium-profile"), VIEWPORT);
    page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const url = (
      await promisify(execFile)(process.execPath, [CLI, "multi", "dashboard"], { env: { ...process.env, TSWEAVER_STATE_DIR: stateDir } })
    ).stdout.trim();
    assert.match(
      url,
      new RegExp(`^http://${deployer.adminAddress}/login\\?ticket=[\\w-]+$`),
      "tsweaver multi dashboard prints a login link",
    );
    // Without the login the page gets nothing; the link logs the browser in (a cookie) and shows the dashboard.
    assert.equal((await page.goto(`http://${deployer.adminAddress}/`))?.status(), 401);
    await page.goto(url);
    assert.equal(new URL(page.url()).pathname, "/", "the login link redirects to the dashboard");
    await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
    assert.deepEqual(errors, [], "no script errors");
  });

  after(async () => {
    await browser?.close();
    await deployer?.stop();
  });

  test("deployments, groups and replicas with health and restarts", async () => {
    assert.match((await page.textContent("#title")) ?? "", new RegExp(`dashboard · deployment ${deployer.deploymentId} · running`));
    assert.equal(await page.locator("[data-testid=deployment-row].current").count(), 1);
    assert.deepEqual((await page.locator("[data-testid=group-name]").allTextContents()).sort(), ["test-echo", "tsweaver-main"]);
    await waitFor(
      "4 healthy replicas on the page",
      async () => (await page.locator("[data-testid=replica-row][data-health=HEALTHY]").count()) === 4,
    );
    const echo = await page.locator("[data-testid=replica-row][data-group=test-echo]").allTextContents();
    assert.equal(echo.length, 2);
    // The first row of a group also holds the group's name and components (rowspan cells).
    for (const row of echo) assert.match(row, /^(test-echotest\/Echo)?test-echo-[01]\d+runningHEALTHY0$/);
    assert.match((await page.locator("[data-testid=listener-row]").textContent()) ?? "", /^apihttp:\/\/127\.0\.0\.1:\d+2 replicas$/);
  });

  test("the call graph: both components and the main → Echo edge with rate, latency and errors", async () => {
    assert.deepEqual(
      (await page.locator("[data-testid=graph-node]").evaluateAll((els) => els.map((e) => e.getAttribute("data-component")))).sort(),
      ["test/Echo", "tsweaver/Main"],
    );
    const edge = page.locator('[data-testid=graph-edge][data-caller="tsweaver/Main"][data-callee="test/Echo"]');
    await waitFor("the edge", async () => (await edge.count()) === 1);
    assert.equal(await edge.getAttribute("data-remote"), "true");
    assert.ok(Number(await edge.getAttribute("data-calls")) >= 34, "every call made so far");
    assert.match((await edge.getAttribute("class")) ?? "", /\berrors\b/, "failed calls mark the edge");
    assert.match((await edge.locator("[data-testid=edge-label]").textContent()) ?? "", /^[\d.]+\/s · [\d.]+ ms[\d.]+% errors$/);
    assert.ok((await page.locator("[data-testid=chart]").count()) >= 3, "metric charts");
    assert.match((await page.locator("#charts").textContent()) ?? "", /echo_strings_total per second/, "a chart per user metric");
  });

  test("colocation advice: main ↔ Echo, the heaviest cross-process pair, advised into one group", async () => {
    const line = await waitFor("the advice line", async () => {
      const t =
        (await page
          .locator("[data-testid=advice-line]")
          .textContent()
          .catch(() => null)) ?? "";
      return t.startsWith("colocate = ") ? t : undefined;
    });
    assert.equal(line, 'colocate = [["test/Echo", "tsweaver/Main"]]');
    assert.match(
      (await page.locator("[data-testid=advice-summary]").textContent()) ?? "",
      /^cross-process calls\/s: [\d.]+ now, 0\.0 with the advice$/,
    );
  });

  test("recent traces, and the timeline of one: client span in main, server span in Echo", async () => {
    const row = page.locator(`[data-testid=trace-row][data-trace="${traceId}"]`);
    await row.click();
    await waitFor("the timeline of the clicked trace", async () => (await page.textContent("[data-testid=timeline-trace]")) === traceId);
    const rows = await page.locator("[data-testid=span-row]").allTextContents();
    assert.equal(rows.length, 2);
    assert.match(rows[0]!, /^clienttest\/Echo\.traceparent[\d.]+ ms$/);
    assert.match(rows[1]!, /^servertest\/Echo\.traceparent[\d.]+ ms$/);
    const bars = await page.locator("[data-testid=span-bar]").evaluateAll((els) => els.map((e) => e.getBoundingClientRect().width));
    assert.ok(
      bars.every((w) => w >= 2),
      `visible bars (${bars.join(", ")})`,
    );
    assert.ok(bars[0]! >= bars[1]!, "the client span covers the server span");
    assert.ok((await page.locator("[data-testid=trace-row]").count()) >= 2);
  });

  test("the log tail, filtered by component", async () => {
    await waitFor("the api ready line", async () =>
      (await page.locator("[data-testid=log-line]").allTextContents()).some((l) =>
        /tsweaver\/Main .*\] api ready address=127\.0\.0\.1:\d+/.test(l),
      ),
    );
    await page.selectOption("#log-component", "stdout");
    await waitFor("only stdout lines", async () => {
      const lines = await page.locator("[data-testid=log-line]").allTextContents();
      return lines.length > 0 && lines.every((l) => / stdout /.test(l)) && lines.some((l) => /echo app main started/.test(l));
    });
    await page.selectOption("#log-component", "");
  });

  test("a screenshot: the page renders (dimensions, header, background, graph and timeline colors)", async () => {
    // The page redraws every 2 s: an element replaced mid-screenshot is taken again from the new one.
    const elementShot = async (selector: string): Promise<Buffer> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await page.locator(selector).screenshot();
        } catch (err) {
          if (attempt >= 5 || !/not attached to the DOM/.test(String(err))) throw err;
        }
      }
    };
    await page.evaluate(() => window.scrollTo(0, 0)); // clicking a trace row may have scrolled the page
    const shot = await page.screenshot();
    const png = decodePng(shot);
    assert.deepEqual([png.width, png.height], [VIEWPORT.width, VIEWPORT.height]);
    const near = (rgba: number[], want: number[], tol = 12) => want.every((v, i) => Math.abs(rgba[i]! - v) <= tol);
    assert.ok(near(png.pixel(4, 4), [0x11, 0x18, 0x27]), `dark header (got ${png.pixel(4, 4)})`);
    assert.ok(near(png.pixel(6, 80), [0xf3, 0xf4, 0xf6]), `light page background (got ${png.pixel(6, 80)})`);
    const colors = new Set<string>();
    for (let y = 0; y < png.height; y += 7) for (let x = 0; x < png.width; x += 7) colors.add(png.pixel(x, y).slice(0, 3).join(","));
    assert.ok(colors.size > 40, `a rendered page, not a blank one (${colors.size} colors sampled)`);

    // The graph: the failing edge is drawn red; the node boxes have their group colors.
    const graph = decodePng(await elementShot("#graph svg"));
    assert.ok(countPixels(graph, (r, g, b) => r > 180 && g < 90 && b < 90) > 50, "a red (failing) edge");
    assert.ok(countPixels(graph, (r, g, b) => r > 235 && g > 235 && b > 235) > graph.width * graph.height * 0.5, "mostly white background");
    // The timeline: a blue client bar and a purple server bar.
    const timeline = decodePng(await elementShot("#timeline"));
    assert.ok(countPixels(timeline, (r, g, b) => near([r, g, b], [0x25, 0x63, 0xeb], 20)) > 100, "blue client bar");
    assert.ok(countPixels(timeline, (r, g, b) => near([r, g, b], [0x7c, 0x3a, 0xed], 20)) > 20, "purple server bar");

    const out = path.join(dir, "dashboard.png");
    writeFileSync(out, await page.screenshot({ fullPage: true }));
    const keep = process.env["TSWEAVER_SCREENSHOT_DIR"];
    if (keep) {
      mkdirSync(keep, { recursive: true });
      copyFileSync(out, path.join(keep, "dashboard-echo.png"));
    }
  });
});
