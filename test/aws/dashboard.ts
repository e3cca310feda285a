/**
 * `tsweaver aws dashboard` against an app activated on the emulator, checked in a real headless Chromium
 * (Debian's `chromium`, driven by playwright-core) like the multi dashboard: the page, its login flow and
 * what it shows (groups and replicas from ECS and Cloud Map, the call graph from CloudWatch metrics, the
 * log tail from CloudWatch Logs, recent traces from X-Ray). The harness plays CloudWatch's EMF extraction
 * meanwhile, and the collector sidecars that put the weavelets' spans into X-Ray (test/aws/xray.ts); the CLI
 * reaches the emulator through the proxy that plays what moto lacks (X-Ray filter expressions, gaps.ts).
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { CloudWatchClient, ListMetricsCommand } from "@aws-sdk/client-cloudwatch";
import { CloudWatchLogsClient } from "@aws-sdk/client-cloudwatch-logs";
import {
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import type { BrowserContext } from "playwright-core";
import { launchChromium } from "../support/chromium.js";
import { METRICS, targetGroupName, versionedServiceName } from "../../runtime/deployers/aws/contract.js";
import { CLI, Proc, get, tempDir, waitFor } from "../support/index.js";
import { decodePng } from "../deployers/multi/dashboard/png.js";
import { startEmfExtraction } from "./emf.js";
import type { FargateSimulator } from "./fargate.js";
import { awsGaps } from "./gaps.js";
import { clientConfig } from "./moto.js";
import type { AppResources } from "./stack.js";
import { startThrottleProxy, type ThrottleProxy } from "./throttle.js";
import type { XRayCollector } from "./xray.js";

const VIEWPORT = { width: 1400, height: 900 };

/** The boutique activated on the emulator (main's group serving): its dashboard shows its groups, call graph and traces. */
export async function checkAwsDashboard(o: {
  res: AppResources;
  sim: FargateSimulator;
  endpoint: string;
  /** The played collector sidecars (the stack has `[aws] tracing = "xray"`). */
  collector: XRayCollector;
}): Promise<void> {
  const { res, sim } = o;
  const dir = tempDir("tsweaver-aws-dashboard-");
  const logs = new CloudWatchLogsClient(clientConfig(o.endpoint));
  // moto 5.2.1 fails on the SDK's gzip-compressed PutMetricData bodies (over 10 kB): "Not a gzipped file".
  const cloudWatch = new CloudWatchClient({ ...clientConfig(o.endpoint), disableRequestCompression: true });
  const elb = new ElasticLoadBalancingV2Client(clientConfig(o.endpoint));
  const extraction = startEmfExtraction(logs, cloudWatch, res.logGroup, 2000);
  let cli: Proc | undefined;
  let browser: BrowserContext | undefined;
  const gaps = awsGaps();
  let proxy: ThrottleProxy | undefined;
  try {
    proxy = await startThrottleProxy({ target: o.endpoint, intercept: gaps.intercept });
    // Traffic through main's target (the ALB's place): the home page calls five components.
    const tg = await elb.send(new DescribeTargetGroupsCommand({ Names: [targetGroupName(res.stack, "boutique", res.version)] }));
    const health = await elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg.TargetGroups![0]!.TargetGroupArn! }));
    const target = health.TargetHealthDescriptions![0]!.Target!;
    for (let i = 0; i < 5; i++) assert.equal((await get(`http://${target.Id}:${target.Port}/api/home`, 30_000)).status, 200);
    const D = METRICS.DIM;
    await waitFor(
      "main → ProductCatalog calls in CloudWatch",
      async () => {
        const out = await cloudWatch.send(
          new ListMetricsCommand({
            Namespace: METRICS.NAMESPACE,
            MetricName: METRICS.CALLS,
            Dimensions: [
              { Name: D.CALLER, Value: "tsweaver/Main" },
              { Name: D.COMPONENT, Value: "boutique/ProductCatalog" },
            ],
          }),
        );
        if (extraction.lastError) throw new Error(`the EMF extraction fails: ${extraction.lastError}`);
        return (out.Metrics ?? []).length > 0;
      },
      180_000,
      500,
    );
    assert.deepEqual(extraction.rejected, [], "every EMF line is one CloudWatch accepts");
    // The home pages' calls from main, as the sidecars sent them to X-Ray.
    await waitFor("main's spans at the collector", () => o.collector.spans >= 10, 60_000);
    assert.equal(o.collector.lastError, undefined);
    assert.deepEqual(o.collector.unprocessed, [], "X-Ray takes every segment");

    // The browser first: the login link printed below is valid for 60 s.
    browser = await launchChromium(path.join(dir, "chromium-profile"), VIEWPORT);
    const tokenFile = path.join(dir, "admin-token");
    cli = new Proc(
      process.execPath,
      [CLI, "aws", "dashboard", res.configFile, "--refresh", "3", "--metrics-refresh", "2", "--token-file", tokenFile],
      { AWS_ENDPOINT_URL: proxy.endpoint },
    );
    const [loginUrl] = await cli.waitForOutput(/http:\/\/127\.0\.0\.1:\d+\/login\?ticket=[\w-]+/, 300_000);
    assert.match(cli.out, /^reading the stack's outputs/m, "progress before the link");
    assert.match(cli.out, /version v[0-9a-f]{10}: 10 group\(s\), \d+ task\(s\) read in [\d.]+ s/);
    const base = new URL(loginUrl).origin;
    // The same token rules as the multi admin server: nothing without it, programs with the Bearer token.
    assert.equal((await get(`${base}/api/status`)).status, 401);
    const token = readFileSync(tokenFile, "utf8").trim();
    const status = JSON.parse((await get(`${base}/api/status`, 180_000, { authorization: `Bearer ${token}` })).body) as {
      deploymentId: string;
      groups: { name: string; components: string[] }[];
    };
    assert.equal(status.deploymentId, res.version);
    assert.deepEqual(
      status.groups.find((g) => g.name === res.mainGroup)?.components,
      ["tsweaver/Main"],
      "components from the group's task definition",
    );

    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    assert.equal((await page.goto(`${base}/`))?.status(), 401);
    await page.goto(loginUrl);
    assert.equal(new URL(page.url()).pathname, "/", "the login link redirects to the dashboard");
    // The first refresh reads ECS, Cloud Map, the ALB, CloudWatch and the logs: slow on a loaded machine.
    await page.waitForSelector("body[data-ready=true]", { timeout: 240_000 });
    assert.deepEqual(errors, [], "no script errors");
    assert.match((await page.textContent("#title")) ?? "", new RegExp(`^boutique · deployment ${res.version} · running`));

    // Groups: every group of the stack, and a HEALTHY replica (registered in Cloud Map) for each one that runs.
    assert.deepEqual((await page.locator("[data-testid=group-name]").allTextContents()).sort(), Object.keys(res.groups).sort());
    const runningGroups = [...new Set(sim.runningTasks().map((t) => t.group))];
    const expected = Object.keys(res.groups).filter((g) => runningGroups.includes(`service:${versionedServiceName(g, res.version)}`));
    assert.ok(expected.length >= 6, `main and the five components the pages call run (${expected.join(", ")})`);
    await waitFor(
      "a healthy replica of every running group",
      async () => {
        const healthy = await page
          .locator("[data-testid=replica-row][data-health=HEALTHY]")
          .evaluateAll((els) => els.map((e) => e.getAttribute("data-group")));
        return expected.every((g) => healthy.includes(g));
      },
      120_000,
    );
    assert.match((await page.locator("[data-testid=listener-row]").textContent()) ?? "", /^boutique/);

    // The call graph: every component (from the task definitions) and main's calls (from CloudWatch).
    const nodes = await page.locator("[data-testid=graph-node]").evaluateAll((els) => els.map((e) => e.getAttribute("data-component")));
    assert.deepEqual([...nodes].sort(), [...res.components].sort());
    const edge = page.locator('[data-testid=graph-edge][data-caller="tsweaver/Main"][data-callee="boutique/ProductCatalog"]');
    await waitFor("the main → ProductCatalog edge", async () => (await edge.count()) === 1, 120_000);
    assert.equal(await edge.getAttribute("data-remote"), "true");
    assert.ok(Number(await edge.getAttribute("data-calls")) >= 5, "every listProducts call of the home pages");
    for (const callee of ["boutique/Currency", "boutique/Cart", "boutique/Ad"])
      assert.equal(await page.locator(`[data-testid=graph-edge][data-caller="tsweaver/Main"][data-callee="${callee}"]`).count(), 1, callee);
    assert.ok((await page.locator("[data-testid=chart]").count()) >= 3, "metric charts");

    // The log tail from CloudWatch Logs.
    await waitFor(
      "the frontend's ready line",
      async () => (await page.locator("[data-testid=log-line]").allTextContents()).some((l) => /boutique frontend ready/.test(l)),
      120_000,
    );

    // Recent traces from X-Ray: each of main's calls is a trace's root (the HTTP handler is not traced),
    // its client span in main and the callee's server span under it.
    assert.match(
      (await page.textContent("[data-testid=traces-source]")) ?? "",
      new RegExp(`^X-Ray: traces of boutique version ${res.version}`),
    );
    // Every root is a call of main; Currency's and ProductCatalog's serve it alone (two spans). The panel
    // lists the 30 newest traces, where the home pages' many currency conversions are sure to be.
    const direct = /boutique\/(Currency|ProductCatalog)\./;
    await waitFor(
      "a trace of main's call to Currency or ProductCatalog",
      async () => (await page.locator("[data-testid=trace-row]").allTextContents()).some((r) => direct.test(r)),
      120_000,
    );
    assert.equal(await page.locator("[data-testid=traces-error]").count(), 0, "no X-Ray error");
    assert.ok(
      gaps.xrayFilters().length > 0 && gaps.xrayFilters().every((f) => f === 'service("boutique")'),
      `the filter sent: ${gaps.xrayFilters().join(", ")}`,
    );
    await page.locator("[data-testid=trace-row]", { hasText: direct }).first().click();
    await waitFor(
      "the call's client and server spans in the timeline",
      async () => {
        const rows = (await page.locator("[data-testid=span-row] .label").allTextContents()).map((r) => r.trim());
        return (
          rows.length === 2 &&
          /^clientboutique\/(Currency|ProductCatalog)\.\w+$/.test(rows[0]!) &&
          rows[1] === rows[0]!.replace(/^client/, "server")
        );
      },
      30_000,
    );
    const indents = await page
      .locator("[data-testid=span-row] .label")
      .evaluateAll((els) => els.map((e) => (e as HTMLElement).style.paddingLeft));
    assert.deepEqual(indents, ["0px", "14px"], "the server span under main's client span");

    await page.locator("#live").uncheck(); // hold the page still
    const shot = await page.screenshot({ fullPage: true });
    const png = decodePng(shot);
    assert.ok(png.width >= VIEWPORT.width, `the whole page (${png.width} px wide)`);
    const [r, g, b] = png.pixel(4, 4);
    assert.ok(r < 40 && g < 40 && b < 60, `the page's dark header is drawn (got ${r},${g},${b})`);
    const out = path.join(dir, "aws-dashboard.png");
    writeFileSync(out, shot);
    const keep = process.env["TSWEAVER_SCREENSHOT_DIR"];
    if (keep) {
      mkdirSync(keep, { recursive: true });
      copyFileSync(out, path.join(keep, "aws-dashboard.png"));
    }
    await browser.close();
    browser = undefined;
    cli.kill("SIGTERM");
    assert.deepEqual(await cli.exited, { code: 0, signal: null }, `tsweaver aws dashboard exits 0 on SIGTERM (${cli.err})`);
  } catch (err) {
    if (cli) (err as Error).message += `\ntsweaver aws dashboard printed:\n${cli.out}${cli.err}`;
    throw err;
  } finally {
    await browser?.close();
    cli?.kill("SIGTERM");
    await cli?.exited;
    await extraction.stop().catch(() => {});
    await proxy?.stop();
    logs.destroy();
    cloudWatch.destroy();
    elb.destroy();
  }
}
