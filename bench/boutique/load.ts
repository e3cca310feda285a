// The load generator: replays the original Online Boutique's locustfile user flow against the JSON API
// — browse home (weight 1), set currency (2), view a product (10), add to cart (2), view cart (3),
// check out (1) — for a pool of users with session cookies. Two modes, both bounded in count and time:
// open loop at a fixed rate (latency measured from each request's scheduled time), and closed loop
// (N concurrent users back to back) for the maximum sustained rate. Loopback only.
import http from "node:http";
import { performance } from "node:perf_hooks";
import { randomUUID } from "node:crypto";
import { PRODUCTS, FRONTEND_CURRENCIES } from "../../examples/boutique/data.js";

export interface LoadResult {
  requests: number;
  errors: number;
  seconds: number;
  rate: number;
  p50Ms: number;
  p99Ms: number;
  firstError?: string;
}

type Task = "home" | "currency" | "product" | "add" | "cart" | "checkout";
const WEIGHTS: [Task, number][] = [
  ["home", 1],
  ["currency", 2],
  ["product", 10],
  ["add", 2],
  ["cart", 3],
  ["checkout", 1],
];
const DECK: Task[] = WEIGHTS.flatMap(([t, w]) => Array<Task>(w).fill(t));

interface User {
  cookie: string;
}

/** Drives one frontend at `base` ("127.0.0.1:port"). */
export class LoadGenerator {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 128, maxFreeSockets: 128 });
  private readonly users: User[];
  private next = 0;
  private readonly host: string;
  private readonly port: number;

  constructor(address: string, userCount = 64) {
    const i = address.lastIndexOf(":");
    this.host = address.slice(0, i).replace("localhost", "127.0.0.1");
    this.port = Number(address.slice(i + 1));
    this.users = Array.from({ length: userCount }, () => ({ cookie: `shop_session-id=${randomUUID()}; shop_currency=USD` }));
  }

  /** One request of the flow (the deck's next task, for the next user). */
  private one(): Promise<void> {
    const n = this.next++;
    const user = this.users[n % this.users.length]!;
    const task = DECK[(n * 7 + Math.floor(n / this.users.length)) % DECK.length]!; // mixes tasks across users
    const product = PRODUCTS[n % PRODUCTS.length]!.id;
    switch (task) {
      case "home":
        return this.req(user, "GET", "/api/home");
      case "currency": {
        const currency = FRONTEND_CURRENCIES[n % FRONTEND_CURRENCIES.length]!;
        user.cookie = user.cookie.replace(/shop_currency=\w+/, `shop_currency=${currency}`);
        return this.req(user, "POST", "/api/currency", { currency });
      }
      case "product":
        return this.req(user, "GET", `/api/product/${product}`);
      case "add":
        return this.req(user, "POST", "/api/cart", { productId: product, quantity: 1 + (n % 3) });
      case "cart":
        return this.req(user, "GET", "/api/cart");
      case "checkout":
        return this.req(user, "POST", "/api/checkout", {});
    }
  }

  private req(user: User, method: string, path: string, body?: unknown): Promise<void> {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { cookie: user.cookie };
    if (data !== undefined)
      Object.assign(headers, { "content-type": "application/json", "content-length": String(Buffer.byteLength(data)) });
    return new Promise((resolve, reject) => {
      const r = http.request({ host: this.host, port: this.port, method, path, headers, agent: this.agent, timeout: 10_000 }, (res) => {
        res.on("data", () => {});
        res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`${method} ${path}: HTTP ${res.statusCode}`))));
        res.on("error", reject);
      });
      r.on("timeout", () => r.destroy(new Error(`${method} ${path} timed out`)));
      r.on("error", reject);
      r.end(data);
    });
  }

  /** Open loop: `count` requests at `rate`/s (at most `maxMs`, at most `maxInFlight` outstanding). */
  async fixedRate(rate: number, count: number, maxMs: number, maxInFlight = 1000): Promise<LoadResult> {
    const lat: number[] = [];
    let errors = 0;
    let firstError: string | undefined;
    let inFlight = 0;
    let issued = 0;
    const start = performance.now();
    const pending: Promise<void>[] = [];
    while (issued < count && performance.now() - start < maxMs) {
      const due = Math.min(count, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      while (issued < due && inFlight < maxInFlight) {
        const scheduled = start + (issued * 1000) / rate;
        issued++;
        inFlight++;
        pending.push(
          this.one()
            .then(
              () => void lat.push(performance.now() - scheduled),
              (err: Error) => {
                errors++;
                firstError ??= err.message;
              },
            )
            .finally(() => void inFlight--),
        );
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(pending);
    return summarize(lat, errors, (performance.now() - start) / 1000, firstError);
  }

  /** Closed loop: `concurrency` users, each issuing its next request when the last answered. */
  async closedLoop(concurrency: number, count: number, maxMs: number): Promise<LoadResult> {
    const lat: number[] = [];
    let errors = 0;
    let firstError: string | undefined;
    let issued = 0;
    const start = performance.now();
    const worker = async (): Promise<void> => {
      while (issued < count && performance.now() - start < maxMs) {
        issued++;
        const t0 = performance.now();
        try {
          await this.one();
          lat.push(performance.now() - t0);
        } catch (err) {
          errors++;
          firstError ??= (err as Error).message;
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return summarize(lat, errors, (performance.now() - start) / 1000, firstError);
  }

  close(): void {
    this.agent.destroy();
  }
}

function summarize(lat: number[], errors: number, seconds: number, firstError: string | undefined): LoadResult {
  lat.sort((a, b) => a - b);
  const pct = (q: number) => (lat.length === 0 ? NaN : lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]!);
  const r: LoadResult = { requests: lat.length + errors, errors, seconds, rate: lat.length / seconds, p50Ms: pct(0.5), p99Ms: pct(0.99) };
  if (firstError !== undefined) r.firstError = firstError;
  return r;
}
