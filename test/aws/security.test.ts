/**
 * The control plane trusts no one it need not, on the emulator with the real control plane and agents:
 * the weavelet never sees the deployment secret or the task's credentials; a request with the right
 * secret is still refused unless it comes from the ENI address of the task it names, a running group
 * task of the deployment whose claims (address, ports, group, version, listeners) are its own; bodies
 * are checked and bounded; refusals are logged; the secret rotates without a restart.
 */
import assert from "node:assert/strict";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { PutSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import {
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { ListInstancesCommand, ServiceDiscoveryClient } from "@aws-sdk/client-servicediscovery";
import { ENV, targetGroupName, versionedServiceName } from "../../runtime/deployers/aws/contract.js";
import { TASK_HEADER } from "../../runtime/deployers/aws/protocol.js";
import { ROOT, runCli, waitFor } from "../support/index.js";
import { startFargate, type FargateSimulator, type SimTask } from "./fargate.js";
import { clientConfig, useEmulator, type Emulator } from "./moto.js";
import { createAppResources, type AppResources, FAST_LOOPS } from "./stack.js";

const CONFIG = path.join(ROOT, "test/aws/fixtures/envprobe/weaver.toml");
const FAST = {
  ...FAST_LOOPS,
  TSWEAVER_SECRET_RELOAD_MS: "300",
};

interface Reply {
  status: number;
  error: string;
}

/** POSTs to the control plane from `from` (a loopback address), as an agent would. */
function call(
  url: string,
  from: string,
  method: string,
  opts: { secret: string; task: string; body: unknown; raw?: Buffer },
): Promise<Reply> {
  const payload = opts.raw ?? Buffer.from(JSON.stringify(opts.body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}/v1/${method}`,
      {
        method: "POST",
        localAddress: from,
        headers: {
          "content-type": "application/json",
          "content-length": payload.length,
          authorization: `Bearer ${opts.secret}`,
          [TASK_HEADER]: opts.task,
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => {
          let error = "";
          try {
            error = (JSON.parse(text) as { error?: string }).error ?? "";
          } catch {
            error = text;
          }
          resolve({ status: res.statusCode ?? 0, error });
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

describe("AWS security: the weavelet's environment, callers bound to tasks, checked bodies, secret rotation", () => {
  let emu: Emulator;
  let res: AppResources;
  let sim: FargateSimulator;
  let sd: ServiceDiscoveryClient;
  let elb: ElasticLoadBalancingV2Client;
  let main: SimTask;
  let controlUrl: string;
  /** The rejections the control plane logged, parsed from its output. */
  const rejections = (): { status: string; why: string; method: string }[] => {
    const cp = sim.runningTasks(res.controlPlane.service)[0]!;
    return cp.stdout
      .filter((l) => l.includes('"rejected an agent request"'))
      .map((l) => (JSON.parse(l) as { attrs: { status: string; why: string; method: string } }).attrs);
  };
  const targets = async () => {
    const tg = await elb.send(new DescribeTargetGroupsCommand({ Names: [targetGroupName(res.stack, "web", res.version)] }));
    const out = await elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg.TargetGroups![0]!.TargetGroupArn! }));
    return (out.TargetHealthDescriptions ?? []).map((t) => `${t.Target!.Id}:${t.Target!.Port}`).sort();
  };
  const instances = async () => {
    const out = await sd.send(new ListInstancesCommand({ ServiceId: res.groups["tsweaver-main"]!.discoveryServiceId }));
    return (out.Instances ?? []).map((i) => `${i.Id}@${i.Attributes?.["AWS_INSTANCE_IPV4"]}:${i.Attributes?.["AWS_INSTANCE_PORT"]}`).sort();
  };
  /** A `ready` report of `t`, as its own agent sends it. */
  const report = (t: SimTask, over: Record<string, unknown> = {}) => ({
    taskArn: t.taskArn,
    taskId: t.taskId,
    group: "tsweaver-main",
    ip: t.ip,
    port: 19300,
    weaveletId: t.taskId,
    version: res.version,
    listeners: { web: 18280 },
    ...over,
  });

  before(async () => {
    emu = await useEmulator();
    sd = new ServiceDiscoveryClient(clientConfig(emu.endpoint));
    elb = new ElasticLoadBalancingV2Client(clientConfig(emu.endpoint));
    res = await createAppResources({
      configFile: CONFIG,
      listeners: { web: { container_port: 18280 } },
      rpcPort: 19300,
      controlPort: 19310,
    });
    sim = await startFargate({ endpoint: emu.endpoint, cluster: res.clusterArn, workdir: res.workdir, taskEnv: () => FAST });
    const activate = await runCli(["aws", "activate", res.configFile, "--timeout", "120"]);
    assert.equal(activate.code, 0, activate.err + activate.out);
    main = sim.runningTasks(versionedServiceName("tsweaver-main", res.version))[0]!;
    const cp = sim.runningTasks(res.controlPlane.service)[0]!;
    controlUrl = `http://${cp.ip}:19310`;
  });

  after(async () => {
    await sim?.stop();
    await res?.delete();
    await emu?.stop();
  });

  test("the weavelet's environment holds neither the deployment secret nor the task's credentials", async () => {
    const line = await waitFor("main's environment line", async () => main.stdout.find((l) => l.includes("envprobe {")), 20_000);
    assert.equal(main.env[ENV.SECRET], res.secret, "the agent has the secret (ECS injected it)");
    assert.ok(!line.includes(res.secret), "the secret's value appears nowhere in the weavelet's environment");
    const msg = (JSON.parse(line) as { msg: string }).msg;
    const env = JSON.parse(msg.slice(msg.indexOf("{"))) as Record<string, string>;
    const leaked = Object.keys(env).filter((k) =>
      /SECRET|CREDENTIALS|ACCESS_KEY|SESSION_TOKEN|^ECS_CONTAINER_METADATA|^AWS_ENDPOINT/.test(k),
    );
    assert.deepEqual(leaked, []);
    for (const k of Object.keys(env))
      assert.ok(!k.startsWith("TSWEAVER_") || k === "TSWEAVER_WEAVELET_ARGS", `${k} is the agent's, not the app's`);
    assert.equal(env["PROBE_FROM_CONFIG"], "yes", "weaver.toml's env reaches the app");
    assert.equal(env["PATH"], main.env["PATH"]);
  });

  test("forged requests with the right secret are refused before anything changes, and logged", async () => {
    const secret = res.secret;
    const before = { targets: await targets(), instances: await instances() };
    assert.deepEqual(before.targets, [`${main.ip}:18280`]);
    const others = sim.tasks().filter((t) => t.taskArn !== main.taskArn && t.state === "running");
    const cpTask = sim.runningTasks(res.controlPlane.service)[0]!;
    const foreign = main.taskArn.replace(/\/[^/]+\/([^/]+)$/, "/another-cluster/$1");
    const expect = async (status: number, why: RegExp, from: string, method: string, task: string, body: unknown, raw?: Buffer) => {
      const r = await call(controlUrl, from, method, { secret, task, body, raw });
      assert.equal(r.status, status, `${method} from ${from} as ${task}: ${r.status} ${r.error}`);
      assert.match(r.error, why);
    };

    // The agent's own request passes (the path the forgeries take is a working one).
    await expect(200, /^$/, main.ip, "spans", main.taskArn, { count: 1 });
    // The right task, the wrong source: from the test process, and from another task of the deployment.
    await expect(403, /comes from 127\.0\.0\.1, not from the ENI address/, "127.0.0.1", "ready", main.taskArn, report(main));
    await expect(403, /not from the ENI address/, cpTask.ip, "stopping", main.taskArn, report(main));
    // A task of another cluster, and the control plane's own task (not a group task).
    await expect(403, /not a task of this deployment's cluster/, main.ip, "ready", foreign, report(main, { taskArn: foreign }));
    await expect(403, /not started by a group's service/, cpTask.ip, "spans", cpTask.taskArn, { count: 1 });
    // The right task and source, claims that are not its own.
    await expect(403, /claims ip "10.9.9.9"/, main.ip, "exportListener", main.taskArn, {
      taskArn: main.taskArn,
      listener: "web",
      ip: "10.9.9.9",
      port: 18280,
      version: res.version,
    });
    await expect(403, /claims port 8443/, main.ip, "exportListener", main.taskArn, {
      taskArn: main.taskArn,
      listener: "web",
      ip: main.ip,
      port: 8443,
      version: res.version,
    });
    for (const other of others)
      await expect(
        403,
        /claims taskArn/,
        main.ip,
        "stopping",
        main.taskArn,
        report(main, { taskArn: other.taskArn, taskId: other.taskId }),
      );
    await expect(403, /claims group "hello"/, main.ip, "ready", main.taskArn, report(main, { group: "hello" }));
    await expect(403, /claims version "v0000000000"/, main.ip, "ready", main.taskArn, report(main, { version: "v0000000000" }));
    await expect(403, /listener web listens on port 18280/, main.ip, "ready", main.taskArn, report(main, { listeners: { web: 1 } }));
    // Bodies: unknown names, wrong types, prototype keys, oversized.
    await expect(400, /field group must be a group name/, main.ip, "ready", main.taskArn, report(main, { group: "__proto__" }));
    await expect(400, /listener nope is not configured/, main.ip, "listenerPort", main.taskArn, { listener: "nope" });
    await expect(400, /listener constructor is not configured/, main.ip, "listenerPort", main.taskArn, { listener: "constructor" });
    await expect(400, /unknown group nope in version/, main.ip, "activate", main.taskArn, {
      taskArn: main.taskArn,
      group: "tsweaver-main",
      component: "x/Y",
      routed: false,
      version: res.version,
      componentGroup: "nope",
    });
    await expect(400, /field count must be an integer/, main.ip, "spans", main.taskArn, { count: "abc" });
    await expect(
      400,
      /unknown field "__proto__"/,
      main.ip,
      "spans",
      main.taskArn,
      undefined,
      Buffer.from('{"count":1,"__proto__":{"a":1}}'),
    );
    await expect(413, /at most 65536 are accepted/, main.ip, "spans", main.taskArn, undefined, Buffer.alloc(300_000, 0x20));
    // A wrong secret, from the right place.
    const wrong = await call(controlUrl, main.ip, "spans", { secret: "guess", task: main.taskArn, body: { count: 1 } });
    assert.equal(wrong.status, 401);

    assert.deepEqual(await targets(), before.targets, "no forged target");
    assert.deepEqual(await instances(), before.instances, "no replica added or removed");
    const logged = await waitFor("the refusals in the control plane's log", async () =>
      rejections().length >= 18 ? rejections() : undefined,
    );
    assert.deepEqual([...new Set(logged.map((r) => r.status))].sort(), ["400", "401", "403", "413"]);
    assert.ok(logged.some((r) => r.method === "exportListener" && /claims ip/.test(r.why)));
  });

  test("a rotated secret is accepted with the previous one until the next rotation", async () => {
    const sm = new SecretsManagerClient(clientConfig(emu.endpoint));
    const spans = (secret: string) => call(controlUrl, main.ip, "spans", { secret, task: main.taskArn, body: { count: 1 } });
    const original = res.secret;
    await sm.send(new PutSecretValueCommand({ SecretId: res.secretArn, SecretString: "rotated-once-0123456789abcdef" }));
    await waitFor("the new secret accepted", async () => (await spans("rotated-once-0123456789abcdef")).status === 200);
    assert.equal((await spans(original)).status, 200, "the previous secret (running agents hold it) still works");
    await sm.send(new PutSecretValueCommand({ SecretId: res.secretArn, SecretString: "rotated-twice-0123456789abcdef" }));
    await waitFor("the newest secret accepted", async () => (await spans("rotated-twice-0123456789abcdef")).status === 200);
    assert.equal((await spans("rotated-once-0123456789abcdef")).status, 200);
    assert.equal((await spans(original)).status, 401, "two rotations later the original secret is refused");
    sm.destroy();
  });
});
