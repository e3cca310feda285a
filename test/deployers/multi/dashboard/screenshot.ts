// Regenerates the README's dashboard screenshot: deploys examples/five on the multi deployer (every call
// traced), drives some shop traffic (including failing quotes), and screenshots the dashboard in headless
// Chromium. Usage: npm run build && node dist/test/deployers/multi/dashboard/screenshot.js [docs/dashboard.png]
import path from "node:path";
import { launchChromium } from "../../../support/chromium.js";
import { ROOT, get, tempDir, writeConfig } from "../../../support/index.js";
import { deployForTest } from "../../../support/multi.js";

const out = path.resolve(process.argv[2] ?? path.join(ROOT, "docs", "dashboard.png"));
const dir = tempDir("tsweaver-screenshot-");
const config = writeConfig(
  `[tsweaver]
name = "five"
binary = ${JSON.stringify(path.join(ROOT, "dist/examples/five/main.js"))}
colocate = [["five/Pricing", "five/Currency"]]
env = { TSWEAVER_TRACE_SAMPLE = "1" }

[multi]
replicas = 2

[multi.listeners.shop]
address = "127.0.0.1:0"
`,
  dir,
);
const { deployer, base: shop } = await deployForTest(config, path.join(dir, "state"), "shop");

let running = true;
const traffic = (async () => {
  for (let i = 0; running; i++) {
    await get(`${shop}/products?currency=EUR`);
    await get(`${shop}/quote?item=mug:2&item=cap:1&currency=GBP`);
    if (i % 4 === 0) await get(`${shop}/quote?item=mug:1&currency=XXX`); // BadCurrency: a failing call
    await new Promise((r) => setTimeout(r, 20));
  }
})();
await new Promise((r) => setTimeout(r, 12_000)); // a few history points for the charts

const browser = await launchChromium(path.join(dir, "chromium-profile"), { width: 1400, height: 900 });
try {
  const page = await browser.newPage();
  await page.goto(deployer.dashboardLoginUrl());
  await page.waitForSelector("body[data-ready=true]");
  await page.locator("#live").uncheck(); // hold the page still
  // Show the timeline of a failed checkout: a deep trace with an error.
  const failed = page.locator("[data-testid=trace-row]").filter({ hasText: "error" }).filter({ hasText: "five/Checkout.quote" }).first();
  await failed.click();
  await page.waitForTimeout(300);
  await page.screenshot({ path: out, fullPage: true });
  process.stdout.write(`${out}\n`);
} finally {
  running = false;
  await traffic;
  await browser.close();
  await deployer.stop();
}
