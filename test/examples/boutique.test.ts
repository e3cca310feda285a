import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type MultiDeployer } from "../../runtime/deployers/multi/deployer.js";
import { DeploymentDir } from "../../runtime/deployers/multi/state.js";
import { ROOT, tempDir, waitFor, writeConfig } from "../support/index.js";
import { deployForTest } from "../support/multi.js";

interface Reply {
  status: number;
  body: any; // JSON answers, checked field by field
}

/** A shopper: one session cookie jar, JSON requests. */
class Shopper {
  private cookies = new Map<string, string>();
  constructor(private readonly base: string) {}

  request(method: string, urlPath: string, body?: unknown): Promise<Reply> {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ") };
    if (data !== undefined)
      Object.assign(headers, { "content-type": "application/json", "content-length": String(Buffer.byteLength(data)) });
    return new Promise((resolve, reject) => {
      const req = http.request(`${this.base}${urlPath}`, { method, headers, agent: false, timeout: 10_000 }, (res) => {
        for (const c of res.headers["set-cookie"] ?? []) {
          const [kv = ""] = c.split(";");
          const i = kv.indexOf("=");
          this.cookies.set(kv.slice(0, i), kv.slice(i + 1));
        }
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => (text += c));
        res.on("end", () => {
          const json = (res.headers["content-type"] ?? "").includes("json");
          resolve({ status: res.statusCode ?? 0, body: json ? JSON.parse(text) : text });
        });
      });
      req.on("timeout", () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
      req.on("error", reject);
      req.end(data);
    });
  }
}

describe("Online Boutique on multi, one replica per group", () => {
  const dir = tempDir();
  const stateDir = path.join(dir, "state");
  const config = writeConfig(
    `[tsweaver]
name = "boutique"
binary = ${JSON.stringify(path.join(ROOT, "dist/examples/boutique/main.js"))}

[multi]
replicas = 1

[multi.listeners.boutique]
address = "127.0.0.1:0"
`,
    dir,
  );
  let deployer: MultiDeployer;
  let base = "";

  before(async () => {
    ({ deployer, base } = await deployForTest(config, stateDir, "boutique"));
    await waitFor("main behind the proxy", () => deployer.status().listeners[0]?.replicas === 1);
  });

  after(async () => {
    await deployer.stop();
  });

  test("browse, add to cart, view the cart in EUR, check out; a bad card is a 400 from payment", async () => {
    const shopper = new Shopper(base);
    const home = await shopper.request("GET", "/api/home");
    assert.equal(home.status, 200);
    assert.equal(home.body.products.length, 9);
    const names = home.body.products.map((p: { product: { name: string } }) => p.product.name);
    for (const n of [
      "Sunglasses",
      "Tank Top",
      "Watch",
      "Loafers",
      "Hairdryer",
      "Candle Holder",
      "Salt & Pepper Shakers",
      "Bamboo Glass Jar",
      "Mug",
    ]) {
      assert.ok(names.includes(n), `home lists ${n}`);
    }
    assert.ok(home.body.ad?.text, "home shows an ad");
    const html = await shopper.request("GET", "/");
    assert.match(html.body, /Salt &#38; Pepper Shakers/);

    const product = await shopper.request("GET", "/api/product/OLJCESPC7Z");
    assert.equal(product.status, 200);
    assert.equal(product.body.product.name, "Sunglasses");
    assert.deepEqual(product.body.price, { currencyCode: "USD", units: 19, nanos: 990_000_000 });
    assert.ok(product.body.recommendations.length > 0);
    assert.ok(
      product.body.recommendations.every((p: { id: string }) => p.id !== "OLJCESPC7Z"),
      "recommends other products",
    );
    assert.equal((await shopper.request("GET", "/api/product/NOPE")).status, 404);

    assert.deepEqual((await shopper.request("POST", "/api/cart", { productId: "OLJCESPC7Z", quantity: 2 })).body, { cartSize: 2 });
    assert.deepEqual((await shopper.request("POST", "/api/cart", { productId: "6E92ZMYYFZ", quantity: 1 })).body, { cartSize: 3 });
    assert.deepEqual((await shopper.request("POST", "/api/currency", { currency: "EUR" })).body, { currency: "EUR" });

    const cart = await shopper.request("GET", "/api/cart");
    assert.equal(cart.status, 200);
    assert.equal(cart.body.currency, "EUR");
    assert.equal(cart.body.items.length, 2);
    // 19.99 USD → EUR through the original's table (1 EUR = 1.1305 USD), times 2.
    const sunglasses = cart.body.items.find((it: { product: { id: string } }) => it.product.id === "OLJCESPC7Z");
    assert.deepEqual(sunglasses.price, { currencyCode: "EUR", units: 35, nanos: 364_882_796 });
    assert.equal(cart.body.shippingCost.currencyCode, "EUR");
    assert.equal(cart.body.total.currencyCode, "EUR");
    assert.ok(cart.body.total.units > 40);
    const cartHtml = await shopper.request("GET", "/cart");
    assert.match(cartHtml.body, /EUR 35\.36/);

    // An invalid card (Luhn fails): payment refuses it in its process; the error crosses checkout's
    // process to the frontend, which answers 400 with the error's name; the cart is kept.
    const bad = await shopper.request("POST", "/api/checkout", { creditCard: { creditCardNumber: "4432-8015-6152-0455" } });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.body, { error: "InvalidCreditCard", message: "Credit card info is invalid" });
    const amex = await shopper.request("POST", "/api/checkout", { creditCard: { creditCardNumber: "378282246310005" } });
    assert.equal(amex.status, 400);
    assert.equal(amex.body.error, "UnacceptedCreditCard");
    const expired = await shopper.request("POST", "/api/checkout", { creditCard: { creditCardExpirationYear: 2001 } });
    assert.deepEqual(expired.body, { error: "ExpiredCreditCard", message: "Your credit card (ending 0454) expired on 1/2001" });
    assert.equal((await shopper.request("GET", "/api/cart")).body.cartSize, 3, "a refused payment keeps the cart");

    const ok = await shopper.request("POST", "/api/checkout", {});
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const order = ok.body.order;
    assert.match(order.orderId, /^[0-9a-f-]{36}$/);
    assert.match(order.shippingTrackingId, /^[A-Z]{2}-\d+-\d{7}$/);
    assert.equal(order.items.length, 2);
    assert.equal(ok.body.total.currencyCode, "EUR");
    assert.equal((await shopper.request("GET", "/api/cart")).body.cartSize, 0, "checkout empties the cart");

    // The email component (its own process) logged the confirmation.
    const logFile = new DeploymentDir(stateDir, deployer.deploymentId).logFile;
    const line = await waitFor("the email log entry", () =>
      existsSync(logFile)
        ? readFileSync(logFile, "utf8")
            .split("\n")
            .find((l) => l.includes("order confirmation email sent") && l.includes(order.orderId))
        : undefined,
    );
    assert.match(line, /"component":"boutique\/Email"/);
    assert.match(line, new RegExp(order.shippingTrackingId));

    // Every component ran in its own process.
    const pids = deployer.pids();
    for (const g of ["tsweaver-main", "boutique-payment", "boutique-checkout", "boutique-email", "boutique-currency"])
      assert.equal(pids.get(g)?.length, 1, `group ${g} runs`);
  });
});
