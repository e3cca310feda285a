/**
 * Tests of the ALB simulator (test/aws/alb.ts): a load balancer, listeners, rules and target groups
 * created in the emulator with real ELBv2 calls, local HTTP servers on distinct 127.x addresses as `ip`
 * targets, and requests through the simulator's listeners.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http from "node:http";
import type net from "node:net";
import { after, before, describe, test } from "node:test";
import { CreateSubnetCommand, CreateVpcCommand, EC2Client } from "@aws-sdk/client-ec2";
import {
  CreateListenerCommand,
  CreateLoadBalancerCommand,
  CreateRuleCommand,
  CreateTargetGroupCommand,
  DeregisterTargetsCommand,
  ElasticLoadBalancingV2Client,
  ModifyRuleCommand,
  ModifyTargetGroupAttributesCommand,
  RegisterTargetsCommand,
  type Action,
  type RuleCondition,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { get } from "../support/index.js";
import { startAlbSimulator, type AlbSimulator } from "./alb.js";
import { clientConfig, useEmulator, type Emulator } from "./moto.js";

/** A target: an HTTP server on its own loopback address. `/health` answers `healthStatus`; `/slow?ms=N` waits. */
interface Backend {
  readonly name: string;
  readonly ip: string;
  readonly port: number;
  healthStatus: number;
  /** Non-health requests it served. */
  served: number;
  inFlight: number;
  close(): Promise<void>;
}

const PREFIX = `127.${1 + (randomBytes(1)[0]! % 254)}.${randomBytes(1)[0]!}.`;
let nextHost = 2;

async function startBackend(name: string): Promise<Backend> {
  const ip = `${PREFIX}${nextHost++}`;
  const sockets = new Set<net.Socket>();
  const b: Backend = { name, ip, port: 0, healthStatus: 200, served: 0, inFlight: 0, close: async () => {} };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://target.invalid");
    if (url.pathname === "/health") {
      res.writeHead(b.healthStatus).end();
      return;
    }
    b.served++;
    b.inFlight++;
    const reply = (): void => {
      b.inFlight--;
      res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ name, path: url.pathname, host: req.headers.host, xff: req.headers["x-forwarded-for"] }));
    };
    const ms = Number(url.searchParams.get("ms") ?? 0);
    if (url.pathname === "/slow" && ms > 0) setTimeout(reply, ms);
    else reply();
  });
  server.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, ip, () => resolve());
  });
  (b as { port: number }).port = (server.address() as net.AddressInfo).port;
  b.close = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await closed;
  };
  return b;
}

/** GET through the simulator with an optional Host header; the body parsed when it is JSON. */
function request(url: string, host?: string): Promise<{ status: number; body: string; location?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 20_000, headers: host ? { host } : {} }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, location: res.headers.location }));
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on("error", reject);
  });
}

/** Sends `n` requests (a few at a time) and counts the answering backends by name. */
async function load(url: string, n: number): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (let i = 0; i < n; i += 5) {
    const replies = await Promise.all(Array.from({ length: Math.min(5, n - i) }, () => get(url)));
    for (const r of replies) {
      assert.equal(r.status, 200, `GET ${url}: ${r.status} ${r.body}`);
      const name = (JSON.parse(r.body) as { name: string }).name;
      seen.set(name, (seen.get(name) ?? 0) + 1);
    }
  }
  return seen;
}

let emu: Emulator;
let elb: ElasticLoadBalancingV2Client;
let ec2: EC2Client;
let vpcId: string;
let lbArn: string;
let alb: AlbSimulator;
const backends: Backend[] = [];
let nextListenerPort = 8001;

before(async () => {
  emu = await useEmulator();
  elb = new ElasticLoadBalancingV2Client(clientConfig(emu.endpoint));
  ec2 = new EC2Client(clientConfig(emu.endpoint));
  const vpc = await ec2.send(new CreateVpcCommand({ CidrBlock: "10.20.0.0/16" }));
  vpcId = vpc.Vpc!.VpcId!;
  const subnets = await Promise.all(
    ["a", "b"].map((az, i) =>
      ec2.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: `10.20.${i}.0/24`, AvailabilityZone: `${emu.region}${az}` })),
    ),
  );
  const lb = await elb.send(
    new CreateLoadBalancerCommand({
      Name: `alb-sim-${randomBytes(3).toString("hex")}`,
      Type: "application",
      Subnets: subnets.map((s) => s.Subnet!.SubnetId!),
    }),
  );
  lbArn = lb.LoadBalancers![0]!.LoadBalancerArn!;
  alb = await startAlbSimulator({
    endpoint: emu.endpoint,
    loadBalancerArn: lbArn,
    refreshMs: 100,
    healthCheckIntervalMs: 100,
    healthCheckTimeoutMs: 1000,
  });
});

after(async () => {
  await alb?.stop();
  await Promise.all(backends.map((b) => b.close()));
  elb?.destroy();
  ec2?.destroy();
  await emu?.stop();
});

/** A target group (ip targets, `/health`, thresholds 2/2) with `n` fresh backends registered. */
async function targetGroup(n: number, deregistrationDelaySeconds = 30): Promise<{ arn: string; backends: Backend[] }> {
  const tg = await elb.send(
    new CreateTargetGroupCommand({
      Name: `tg-${randomBytes(4).toString("hex")}`,
      Protocol: "HTTP",
      Port: 8080,
      VpcId: vpcId,
      TargetType: "ip",
      HealthCheckPath: "/health",
      HealthCheckIntervalSeconds: 5,
      HealthyThresholdCount: 2,
      UnhealthyThresholdCount: 2,
      Matcher: { HttpCode: "200-299" },
    }),
  );
  const arn = tg.TargetGroups![0]!.TargetGroupArn!;
  await elb.send(
    new ModifyTargetGroupAttributesCommand({
      TargetGroupArn: arn,
      Attributes: [{ Key: "deregistration_delay.timeout_seconds", Value: String(deregistrationDelaySeconds) }],
    }),
  );
  const own = await Promise.all(Array.from({ length: n }, (_, i) => startBackend(`${arn.slice(-8)}-${i}`)));
  backends.push(...own);
  if (own.length > 0)
    await elb.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: own.map((b) => ({ Id: b.ip, Port: b.port })) }));
  return { arn, backends: own };
}

/** A new listener with this default action; resolves once the simulator serves it. */
async function listener(defaultAction: Action): Promise<{ arn: string; port: number; url: string }> {
  const port = nextListenerPort++;
  const l = await elb.send(
    new CreateListenerCommand({ LoadBalancerArn: lbArn, Protocol: "HTTP", Port: port, DefaultActions: [defaultAction] }),
  );
  await alb.refresh();
  return { arn: l.Listeners![0]!.ListenerArn!, port, url: alb.urlOf(port) };
}

function weighted(groups: [string, number][]): Action[] {
  return [{ Type: "forward", ForwardConfig: { TargetGroups: groups.map(([arn, w]) => ({ TargetGroupArn: arn, Weight: w })) } }];
}

async function allHealthy(arn: string, n: number): Promise<void> {
  await alb.waitFor(`${n} healthy targets in ${arn}`, () => alb.health(arn).filter((t) => t.state === "healthy").length === n);
}

describe("ALB simulator", () => {
  test("the default action forwards round-robin over the group's targets, with X-Forwarded headers", async () => {
    const tg = await targetGroup(2);
    const l = await listener({ Type: "forward", TargetGroupArn: tg.arn });
    const seen = await load(`${l.url}/hello`, 20);
    assert.deepEqual([...seen.keys()].sort(), tg.backends.map((b) => b.name).sort());
    for (const count of seen.values()) assert.ok(count >= 5 && count <= 15, `round-robin split ${[...seen.values()].join("/")}`);
    const stats = alb.groupStats(tg.arn);
    assert.equal(stats.requests, 20);
    assert.equal(stats.failures, 0);
    assert.equal(
      Object.values(stats.targets).reduce((s, t) => s + t.requests, 0),
      20,
    );
    assert.equal(
      tg.backends.reduce((s, b) => s + b.served, 0),
      20,
    );
    const one = JSON.parse((await get(`${l.url}/x`)).body) as { path: string; xff: string };
    assert.equal(one.path, "/x");
    assert.equal(one.xff, "127.0.0.1");
    await allHealthy(tg.arn, 2);
  });

  test("a weighted forward moves traffic 100/0 → 50/50 → 0/100", async () => {
    const blue = await targetGroup(1);
    const green = await targetGroup(1);
    const l = await listener({
      Type: "fixed-response",
      FixedResponseConfig: { StatusCode: "404", ContentType: "text/plain", MessageBody: "no rule" },
    });
    const rule = await elb.send(
      new CreateRuleCommand({
        ListenerArn: l.arn,
        Priority: 10,
        Conditions: [{ Field: "path-pattern", Values: ["/*"] }],
        Actions: weighted([
          [blue.arn, 100],
          [green.arn, 0],
        ]),
      }),
    );
    const ruleArn = rule.Rules![0]!.RuleArn!;
    await alb.refresh();
    const [b, g] = [blue.backends[0]!.name, green.backends[0]!.name];

    let seen = await load(l.url, 40);
    assert.deepEqual([...seen], [[b, 40]]);

    await elb.send(
      new ModifyRuleCommand({
        RuleArn: ruleArn,
        Actions: weighted([
          [blue.arn, 50],
          [green.arn, 50],
        ]),
      }),
    );
    await alb.refresh();
    seen = await load(l.url, 200);
    assert.ok((seen.get(b) ?? 0) >= 60 && (seen.get(g) ?? 0) >= 60, `50/50 split gave ${JSON.stringify([...seen])}`);

    await elb.send(
      new ModifyRuleCommand({
        RuleArn: ruleArn,
        Actions: weighted([
          [blue.arn, 0],
          [green.arn, 100],
        ]),
      }),
    );
    await alb.refresh();
    seen = await load(l.url, 40);
    assert.deepEqual([...seen], [[g, 40]]);
    assert.equal(alb.groupStats(blue.arn).failures + alb.groupStats(green.arn).failures, 0);
  });

  test("an unhealthy target stops receiving requests and a recovered one comes back", async () => {
    const tg = await targetGroup(2);
    const [ok, sick] = tg.backends as [Backend, Backend];
    const l = await listener({ Type: "forward", TargetGroupArn: tg.arn });
    await allHealthy(tg.arn, 2);

    sick.healthStatus = 500;
    await alb.waitFor("the sick target to be unhealthy", () => alb.health(tg.arn).find((t) => t.id === sick.ip)?.state === "unhealthy");
    let seen = await load(l.url, 20);
    assert.deepEqual([...seen], [[ok.name, 20]]);

    sick.healthStatus = 200;
    await alb.waitFor("the recovered target to be healthy", () => alb.health(tg.arn).find((t) => t.id === sick.ip)?.state === "healthy");
    seen = await load(l.url, 20);
    assert.ok((seen.get(sick.name) ?? 0) >= 5, `after recovery: ${JSON.stringify([...seen])}`);

    // None healthy: the group fails open to all its targets, as ALB does.
    ok.healthStatus = 500;
    sick.healthStatus = 500;
    await alb.waitFor("both targets unhealthy", () => alb.health(tg.arn).every((t) => t.state === "unhealthy"));
    seen = await load(l.url, 20);
    assert.equal(seen.size, 2, `fail open: ${JSON.stringify([...seen])}`);
  });

  test("a deregistered target finishes its in-flight request while new requests go elsewhere", async () => {
    const tg = await targetGroup(2, 30);
    const l = await listener({ Type: "forward", TargetGroupArn: tg.arn });
    await allHealthy(tg.arn, 2);
    const slow = request(`${l.url}/slow?ms=2500`);
    const victim = await alb.waitFor("the slow request to reach a target", () => tg.backends.find((b) => b.inFlight === 1));
    const other = tg.backends.find((b) => b !== victim)!;
    await elb.send(new DeregisterTargetsCommand({ TargetGroupArn: tg.arn, Targets: [{ Id: victim.ip, Port: victim.port }] }));
    await alb.refresh();
    assert.deepEqual(
      alb.health(tg.arn).find((t) => t.id === victim.ip),
      { id: victim.ip, port: victim.port, state: "draining", inFlight: 1 },
    );

    const seen = await load(l.url, 20);
    assert.deepEqual([...seen], [[other.name, 20]]);
    const done = await slow;
    assert.equal(done.status, 200);
    assert.equal((JSON.parse(done.body) as { name: string }).name, victim.name);
    assert.equal(alb.groupStats(tg.arn).failures, 0);
  });

  test("a request still in flight when the deregistration delay ends is cut (502, counted as a failure)", async () => {
    const tg = await targetGroup(1, 1);
    const l = await listener({ Type: "forward", TargetGroupArn: tg.arn });
    const [only] = tg.backends as [Backend];
    const slow = request(`${l.url}/slow?ms=8000`);
    await alb.waitFor("the slow request to reach the target", () => only.inFlight === 1);
    await elb.send(new DeregisterTargetsCommand({ TargetGroupArn: tg.arn, Targets: [{ Id: only.ip, Port: only.port }] }));
    await alb.refresh();
    assert.equal((await request(l.url)).status, 503, "no target left for new requests");
    assert.equal((await slow).status, 502);
    assert.equal(alb.groupStats(tg.arn).failures, 1);
    assert.deepEqual(alb.health(tg.arn), []);
  });

  test("rules by priority: path-pattern, host-header, fixed-response, redirect; 503 without targets, 502 when the target is gone", async () => {
    const api = await targetGroup(1);
    const empty = await targetGroup(0);
    const dead = await targetGroup(1);
    await dead.backends[0]!.close();
    const l = await listener({
      Type: "fixed-response",
      FixedResponseConfig: { StatusCode: "404", ContentType: "text/plain", MessageBody: "nothing here" },
    });
    const rules: [number, RuleCondition[], Action][] = [
      [
        5,
        [{ Field: "host-header", Values: ["admin.*.example.com"] }],
        { Type: "fixed-response", FixedResponseConfig: { StatusCode: "403", ContentType: "text/plain", MessageBody: "admin closed" } },
      ],
      [10, [{ Field: "path-pattern", Values: ["/api/*"] }], { Type: "forward", TargetGroupArn: api.arn }],
      [
        20,
        [{ Field: "path-pattern", Values: ["/old/*"] }],
        { Type: "redirect", RedirectConfig: { Path: "/new/#{path}", StatusCode: "HTTP_301" } },
      ],
      [30, [{ Field: "path-pattern", Values: ["/empty*"] }], { Type: "forward", TargetGroupArn: empty.arn }],
      [40, [{ Field: "path-pattern", Values: ["/dead"] }], { Type: "forward", TargetGroupArn: dead.arn }],
    ];
    for (const [priority, conditions, action] of rules) {
      await elb.send(new CreateRuleCommand({ ListenerArn: l.arn, Priority: priority, Conditions: conditions, Actions: [action] }));
    }
    await alb.refresh();

    const apiReply = await request(`${l.url}/api/items?x=1`);
    assert.equal(apiReply.status, 200);
    assert.equal((JSON.parse(apiReply.body) as { name: string; path: string }).path, "/api/items");
    const admin = await request(`${l.url}/api/items`, "admin.eu.example.com");
    assert.deepEqual([admin.status, admin.body], [403, "admin closed"], "priority 5 wins over 10");
    assert.deepEqual(await request(`${l.url}/other`).then((r) => [r.status, r.body]), [404, "nothing here"]);
    const moved = await request(`${l.url}/old/page?q=2`, "shop.test");
    assert.equal(moved.status, 301);
    assert.equal(moved.location, `http://shop.test:${l.port}/new/old/page?q=2`);
    assert.equal((await request(`${l.url}/empty`)).status, 503);
    assert.equal((await request(`${l.url}/dead`)).status, 502);
    assert.equal(alb.groupStats(dead.arn).failures, 1);
    assert.equal(alb.groupStats(api.arn).requests, 1);
  });
});
