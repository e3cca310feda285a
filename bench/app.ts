// The tsweaver app the benchmark drives: a BenchService component and a main that runs the client side.
//
// - Under `multi` (cross-process row): every component is its own group, so main and BenchService run in
//   two weavelet processes and `ctx.get(BenchService)` returns a remote stub (stub → Balancer →
//   Connection → RpcServer → the implementation). Main exposes a `bench` HTTP listener; the bench process
//   POSTs `/run` with a cell to measure and gets the numbers back as JSON.
// - Run directly with BENCH_MODE=colocated (the single-process deployer): `ctx.get(BenchService)` is the
//   local instance; main measures it against a direct call on a plain instance and prints the results.
import http from "node:http";
import { component, register, run, type Context, type Main } from "tsweaver";
import {
  type Bounds,
  type CellRequest,
  type CellResult,
  type ColocatedResult,
  RESULT_MARKER,
  closedLoop,
  medianOf,
  perRound,
} from "./measure.js";
import { type Payload, type PayloadSize, PAYLOAD_SIZES, checkEcho, payload } from "./payloads.js";
import { startProfile, stopProfile } from "./profile.js";

export interface BenchService {
  echo(p: Payload): Promise<Payload>;
  /** CPU time (user + system) this process has used, µs: the server's share of a cell's CPU per call. */
  cpuMicros(): Promise<number>;
}
export const BenchService = component<BenchService>("bench/BenchService", { methods: ["echo", "cpuMicros"] });

class BenchServiceImpl implements BenchService {
  async echo(p: Payload): Promise<Payload> {
    return p;
  }

  async cpuMicros(): Promise<number> {
    return processCpuMicros();
  }

  async shutdown(): Promise<void> {
    await stopProfile("server"); // --cpu-prof runs only
  }
}
register(BenchService, BenchServiceImpl);

function processCpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** `cpu`: also measure CPU per call (this process's and the service's; only meaningful when they are two processes). */
async function measureEcho(svc: BenchService, size: PayloadSize, concurrency: number, bounds: Bounds, cpu = false): Promise<CellResult> {
  const p = payload(size);
  checkEcho(p, await svc.echo(p));
  const cpuMicros = cpu ? async () => processCpuMicros() + (await svc.cpuMicros()) : undefined;
  return closedLoop(() => svc.echo(p), concurrency, bounds, cpuMicros);
}

class BenchMain implements Main {
  constructor(private readonly ctx: Context) {}

  async shutdown(): Promise<void> {
    await stopProfile("client"); // --cpu-prof runs only
  }

  async main(): Promise<void> {
    const svc = await this.ctx.get(BenchService);
    if (process.env["BENCH_MODE"] === "colocated") {
      await this.colocated(svc);
      return;
    }
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        void (async () => {
          try {
            if (req.url !== "/run" || req.method !== "POST") {
              res.writeHead(404).end();
              return;
            }
            const cell = JSON.parse(Buffer.concat(chunks).toString("utf8")) as CellRequest;
            const result = await measureEcho(svc, cell.size, cell.concurrency, cell.bounds, true);
            res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(result));
          } catch (err) {
            res.writeHead(500, { "content-type": "text/plain" }).end(err instanceof Error ? (err.stack ?? err.message) : String(err));
          }
        })();
      });
    });
    await this.ctx.listener("bench", server);
  }

  /** Colocated stub vs a direct call on a plain instance, same payloads, same loop, interleaved rounds. */
  private async colocated(svc: BenchService): Promise<void> {
    const bounds = JSON.parse(process.env["BENCH_BOUNDS"] ?? "null") as Bounds;
    const rounds = Number(process.env["BENCH_ROUNDS"] ?? 1);
    const direct: BenchService = new BenchServiceImpl();
    const runs: Record<string, CellResult[]> = {};
    for (let r = 0; r < rounds; r++) {
      for (const size of PAYLOAD_SIZES) {
        for (const c of [1, 64]) {
          // Alternate the two so neither always runs on a colder (or hotter) JIT state.
          (runs[`direct/${size}/${c}`] ??= []).push(await measureEcho(direct, size, c, perRound(bounds, rounds)));
          (runs[`colocated/${size}/${c}`] ??= []).push(await measureEcho(svc, size, c, perRound(bounds, rounds)));
        }
      }
    }
    const out: ColocatedResult = { colocated: {}, direct: {} };
    for (const [key, rs] of Object.entries(runs)) {
      const [kind, size, c] = key.split("/");
      out[kind as "direct" | "colocated"][`${size}/${c}`] = medianOf(rs);
    }
    process.stdout.write(RESULT_MARKER + JSON.stringify(out) + "\n");
  }
}

// `--cpu-prof` runs: profile this weavelet from load until its components shut down.
if (process.env["TSWEAVER_LIST_COMPONENTS"] === undefined) startProfile();
await run(BenchMain);
