import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { AwsDashboardSource } from "../deployers/aws/dashboard.js";
import { clientsFor, readDeployment, type StackOptions } from "../deployers/aws/cli.js";
import { AdminServer, newAdminToken } from "../deployers/multi/admin.js";
import { parseHostPort } from "../rpc/address.js";

/** Options of `tsweaver aws dashboard`. */
export interface AwsDashboardCommandOptions extends StackOptions {
  /** Loopback address to serve on. @default "127.0.0.1:0" */
  address?: string;
  /** Least seconds between two reads of ECS, Cloud Map, the load balancer, the logs and X-Ray. @default 10 */
  refresh?: number;
  /** Least seconds between two CloudWatch GetMetricData reads (CloudWatch keeps a point a minute). @default 30 */
  metricsRefresh?: number;
  /** Where the admin token is written (mode 0600). @default ~/.tsweaver/aws/<stack>/admin-token */
  tokenFile?: string;
  open?: boolean;
}

type Out = (line: string) => void;
const stdout: Out = (l) => process.stdout.write(l + "\n");

/** The dashboard server, serving until `close()`. */
export interface RunningDashboard {
  address: string;
  loginUrl: string;
  /** Another one-time login link. */
  newLoginUrl(): string;
  tokenFile: string;
  close(): void;
}

/**
 * `tsweaver aws dashboard`: serves the multi deployer's dashboard page on loopback, fed from AWS (see
 * AwsDashboardSource), behind the same admin token and one-time login link as `tsweaver multi dashboard`.
 */
export async function awsDashboardCommand(opts: AwsDashboardCommandOptions, out: Out = stdout): Promise<RunningDashboard> {
  const address = opts.address ?? "127.0.0.1:0";
  const { host } = parseHostPort(address);
  if (!/^(127\.\d+\.\d+\.\d+|::1|\[::1\]|localhost)$/.test(host))
    throw new Error(`--address ${address}: the dashboard listens on loopback only (127.0.0.1, ::1 or localhost), found host ${host}`);
  const refresh = opts.refresh ?? 10;
  const metricsRefresh = opts.metricsRefresh ?? 30;
  if (!(refresh > 0)) throw new Error(`--refresh must be a positive number of seconds (got ${opts.refresh})`);
  if (!(metricsRefresh > 0)) throw new Error(`--metrics-refresh must be a positive number of seconds (got ${opts.metricsRefresh})`);
  const aws = clientsFor(opts);
  out("reading the stack's outputs (cloudformation:DescribeStacks)");
  const d = await readDeployment(aws, opts);
  const source = new AwsDashboardSource(aws, d, { refreshMs: refresh * 1000, metricsRefreshMs: metricsRefresh * 1000 });
  out(`reading ${d.stack}: ECS tasks, Cloud Map replicas, target health`);
  const started = Date.now();
  const status = await source.status();
  const running = status.groups.reduce((n, g) => n + g.replicas.length, 0);
  out(
    `  version ${d.version}: ${status.groups.length} group(s), ${running} task(s) read in ${((Date.now() - started) / 1000).toFixed(1)} s; CloudWatch metrics are read every ${metricsRefresh} s`,
  );
  const tokenFile = opts.tokenFile ?? path.join(os.homedir(), ".tsweaver", "aws", d.stack, "admin-token");
  const token = newAdminToken();
  mkdirSync(path.dirname(tokenFile), { recursive: true, mode: 0o700 });
  writeFileSync(tokenFile, token + "\n", { mode: 0o600 });
  chmodSync(tokenFile, 0o600); // a file left by an earlier run keeps its mode otherwise
  const server = new AdminServer(source, token, {
    loginCommand: `tsweaver aws dashboard${opts.config ? ` ${opts.config}` : ` --stack ${d.stack}`}`,
    tokenSource: `the token in ${tokenFile}`,
  });
  const bound = await server.listen(address);
  const loginUrl = server.loginUrl();
  out(`dashboard of ${d.stack} on http://${bound}/ (Ctrl-C stops it); programs send the token of ${tokenFile} as authorization: Bearer`);
  out(`open this one-time login link within 60 s:`);
  out(loginUrl);
  if (opts.open) {
    const opener = process.platform === "darwin" ? "open" : process.platform === "win32" ? "explorer" : "xdg-open";
    const { spawn } = await import("node:child_process");
    const child = spawn(opener, [loginUrl], { stdio: "ignore", detached: true });
    child.on("error", () => process.stderr.write(`tsweaver: cannot run ${opener}; open the link above in a browser\n`));
    child.unref();
  }
  if (process.stdin.isTTY) out("(press Enter for a new link)");
  return { address: bound, loginUrl, newLoginUrl: () => server.loginUrl(), tokenFile, close: () => server.close() };
}
