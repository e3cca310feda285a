/**
 * The AWS API emulator the AWS tests run against: a moto server on a free loopback port, or whatever
 * `AWS_ENDPOINT_URL` already points at (LocalStack, or the moto server test/run.sh started once for the
 * whole suite through test/aws/moto-server.ts).
 *
 * The SDK clients of the tests and of the processes under test get the endpoint and throwaway
 * credentials from the environment (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID=test`, ...), exactly as a
 * user points tsweaver at LocalStack; nothing here can reach a real account.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import http from "node:http";
import net from "node:net";

/** Throwaway credentials and region used whenever the environment has none. */
export const FAKE_CREDENTIALS = { accessKeyId: "test", secretAccessKey: "test" } as const;
export const DEFAULT_REGION = "us-east-1";

/** What `python3 -c "import moto.server"` must succeed for; the message names the fix. */
export const MOTO_MISSING = "moto is not installed: pip install 'moto[server]'";

export interface MotoServer {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  readonly port: number;
  readonly pid: number;
  /** The server's output so far (request log, tracebacks of emulator bugs). */
  log(): string;
  /** Stops the server (SIGTERM, then SIGKILL after 3 s). Idempotent. */
  stop(): Promise<void>;
}

/** Throws {@link MOTO_MISSING} unless moto's server module is importable by `python`. */
export function checkMotoInstalled(python = process.env["PYTHON"] ?? "python3"): void {
  const r = spawnSync(python, ["-c", "import moto.server"], { encoding: "utf8", stdio: ["ignore", "ignore", "pipe"] });
  if (r.error !== undefined || r.status !== 0) {
    const why = r.error !== undefined ? r.error.message : (r.stderr ?? "").trim().split("\n").pop();
    throw new Error(`${MOTO_MISSING} (${python} -c "import moto.server": ${why})`);
  }
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Runs moto's server in the foreground of a python that exits as soon as its stdin closes: when the
 * node process that started it dies, however it dies, the server goes too (no orphan moto servers).
 *
 * Every ECS task gets an ENI attachment, as every Fargate task has (moto adds one only for awsvpc task
 * definitions, which the stack's CloudFormation path turns into bridge ones, see stack.ts), and its
 * address (DescribeTasks' `privateIPv4Address`) is a loopback address from a range of this server's own
 * (127.A.B.2 upward, A and B random). The Fargate simulator runs the task's process on exactly the
 * address ECS reports, so the control plane's check that a request comes from the claimed task's ENI
 * address is the real one.
 */
const MOTO_LAUNCHER = [
  "import os, sys, threading, random, itertools",
  "def _watch():",
  "    try:",
  "        sys.stdin.buffer.read()",
  "    finally:",
  "        os._exit(0)",
  "threading.Thread(target=_watch, daemon=True).start()",
  "import moto.ecs.models as _ecs",
  "_base = (random.randint(64, 254) << 16) | (random.randint(0, 255) << 8)",
  "_hosts = (n for n in itertools.count(_base) if 2 <= (n & 255) <= 254)",
  "_lock = threading.Lock()",
  "def _loopback_eni_ip(*_args, **_kwargs):",
  "    with _lock:",
  "        n = next(_hosts)",
  "    return f'127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}'",
  "_ecs.random_private_ip = _loopback_eni_ip",
  "_task_init = _ecs.Task.__init__",
  "def _fargate_task_init(self, *args, **kwargs):",
  "    _task_init(self, *args, **kwargs)",
  "    if not self.attachments:",
  "        ip = _loopback_eni_ip()",
  "        self.attachments.append({'id': str(_ecs.mock_random.uuid4()), 'type': 'ElasticNetworkInterface', 'status': 'ATTACHED',",
  "            'details': [{'name': 'networkInterfaceId', 'value': 'eni-' + _ecs.mock_random.get_random_hex(17)},",
  "                        {'name': 'privateIPv4Address', 'value': ip}]})",
  "_ecs.Task.__init__ = _fargate_task_init",
  "from moto.server import main",
  "main(sys.argv[1:])",
].join("\n");

/**
 * Starts a moto server on a free loopback port and waits until `/moto-api/` answers. Configures the
 * emulator for the Fargate simulator ({@link configureEmulator}).
 */
export async function startMoto(opts: { host?: string; timeoutMs?: number; python?: string } = {}): Promise<MotoServer> {
  const host = opts.host ?? "127.0.0.1";
  const python = opts.python ?? process.env["PYTHON"] ?? "python3";
  checkMotoInstalled(python);
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(host);
    try {
      return await launch(python, host, port, opts.timeoutMs ?? 30_000);
    } catch (err) {
      lastError = err as Error; // most likely the port was taken in between: try another one
    }
  }
  throw lastError!;
}

async function launch(python: string, host: string, port: number, timeoutMs: number): Promise<MotoServer> {
  const child: ChildProcess = spawn(python, ["-c", MOTO_LAUNCHER, "-H", host, "-p", String(port)], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, MOTO_PORT: String(port), PYTHONUNBUFFERED: "1" },
  });
  let output = "";
  const keep = (chunk: Buffer): void => {
    output += chunk.toString("utf8");
    if (output.length > 2_000_000) output = output.slice(-1_000_000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exit = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve();
    }),
  );
  const endpoint = `http://${host}:${port}`;
  const stop = async (): Promise<void> => {
    if (exited) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
    await exit;
    clearTimeout(timer);
  };

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited) {
      throw new Error(
        `moto server exited (code ${exited.code}, signal ${exited.signal}) before answering on ${endpoint}:\n${output.slice(-2000)}`,
      );
    }
    if ((await httpStatus(`${endpoint}/moto-api/`)) === 200) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`moto server did not answer ${endpoint}/moto-api/ within ${timeoutMs} ms:\n${output.slice(-2000)}`);
    }
    await sleep(100);
  }
  await configureEmulator(endpoint);
  return { endpoint, port, pid: child.pid!, log: () => output, stop };
}

export interface Emulator {
  /** The endpoint every AWS client of the test (and of the processes it starts) uses. */
  readonly endpoint: string;
  readonly region: string;
  /** True when the endpoint is a moto server (it answers `/moto-api/`). */
  readonly moto: boolean;
  /** Stops the moto server this call started; a no-op for an endpoint that was given. */
  stop(): Promise<void>;
}

/**
 * The emulator for this test process. `AWS_ENDPOINT_URL` set (by test/run.sh, or pointing at
 * LocalStack): that endpoint. Unset: starts a moto server for this process and exports its endpoint
 * as `AWS_ENDPOINT_URL`. Either way fills in throwaway credentials and a region where the environment
 * has none (`AWS_ACCESS_KEY_ID=test`, `AWS_SECRET_ACCESS_KEY=test`, `AWS_REGION=us-east-1`) and drops
 * any profile, so that no SDK client can pick up real credentials.
 */
export async function useEmulator(): Promise<Emulator> {
  setFakeAwsEnv();
  const region = process.env["AWS_REGION"]!;
  const given = process.env["AWS_ENDPOINT_URL"];
  if (given !== undefined && given !== "") {
    const endpoint = given.replace(/\/+$/, "");
    const moto = (await httpStatus(`${endpoint}/moto-api/`)) === 200;
    if (moto) await configureEmulator(endpoint);
    return { endpoint, region, moto, stop: async () => {} };
  }
  const server = await startMoto();
  process.env["AWS_ENDPOINT_URL"] = server.endpoint;
  return {
    endpoint: server.endpoint,
    region,
    moto: true,
    stop: async () => {
      await server.stop();
      if (process.env["AWS_ENDPOINT_URL"] === server.endpoint) delete process.env["AWS_ENDPOINT_URL"];
    },
  };
}

/** Throwaway credentials and region in `process.env` where none are set; profiles removed. */
export function setFakeAwsEnv(env: NodeJS.ProcessEnv = process.env): void {
  if (!env["AWS_ACCESS_KEY_ID"]) env["AWS_ACCESS_KEY_ID"] = FAKE_CREDENTIALS.accessKeyId;
  if (!env["AWS_SECRET_ACCESS_KEY"]) env["AWS_SECRET_ACCESS_KEY"] = FAKE_CREDENTIALS.secretAccessKey;
  if (!env["AWS_REGION"]) env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] || DEFAULT_REGION;
  // The SDK's notice that its 2027 releases need node >= 22 would otherwise open every test's output.
  if (!env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"]) env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] = "true";
  delete env["AWS_PROFILE"];
  delete env["AWS_DEFAULT_PROFILE"];
}

/** The environment a process needs to reach the emulator: endpoint, credentials, region. */
export function emulatorEnv(endpoint: string, region = process.env["AWS_REGION"] || DEFAULT_REGION): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: endpoint,
    AWS_ACCESS_KEY_ID: process.env["AWS_ACCESS_KEY_ID"] || FAKE_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: process.env["AWS_SECRET_ACCESS_KEY"] || FAKE_CREDENTIALS.secretAccessKey,
    AWS_REGION: region,
    AWS_DEFAULT_REGION: region,
  };
}

/**
 * Configuration for an SDK v3 client against the emulator. `disableHostPrefix` keeps Cloud Map's
 * data-plane calls (DiscoverInstances, host prefix `data-servicediscovery.`) on the custom endpoint.
 */
export function clientConfig(endpoint: string, region = process.env["AWS_REGION"] || DEFAULT_REGION) {
  return {
    endpoint,
    region,
    credentials: {
      accessKeyId: process.env["AWS_ACCESS_KEY_ID"] || FAKE_CREDENTIALS.accessKeyId,
      secretAccessKey: process.env["AWS_SECRET_ACCESS_KEY"] || FAKE_CREDENTIALS.secretAccessKey,
    },
    disableHostPrefix: true,
  };
}

/**
 * Emulator settings the harness relies on (moto only; a no-op elsewhere). ECS tasks: moto's default
 * transition for `ecs::task` is `{"progression":"manual","times":1}`, i.e. every DescribeTasks moves a
 * task one step along RUNNING → DEACTIVATING → STOPPING → DEPROVISIONING → STOPPED even though nobody
 * stopped it. "manual" with an unreachable `times` keeps a task RUNNING until StopTask (which sets
 * STOPPED directly). The setting is global to the server, and idempotent.
 */
export async function configureEmulator(endpoint: string): Promise<void> {
  const status = await httpStatus(`${endpoint}/moto-api/state-manager/set-transition`, {
    method: "POST",
    body: JSON.stringify({ model_name: "ecs::task", transition: { progression: "manual", times: 2_147_483_647 } }),
  });
  if (status !== 201 && status !== 200 && status !== 404) {
    throw new Error(`setting moto's ECS task transition at ${endpoint} answered HTTP ${status}`);
  }
}

/** Status of one HTTP request, 0 when the connection failed. */
export function httpStatus(url: string, opts: { method?: string; body?: string } = {}): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request(url, { method: opts.method ?? "GET", agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(0));
    req.end(opts.body);
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
