/**
 * TLS component calls on AWS, on the emulator with the real stack, control plane and agents: the control
 * plane creates the deployment CA in its Secrets Manager secret and signs each agent's CSR for the task
 * it verified; hello's call from main to the reverser crosses tasks over TLS 1.3; on the wire, a
 * plaintext client, a certificate from another CA and a certificate of the right CA for another
 * deployment or version are refused before any method runs; forged certificate requests are refused;
 * certificates are renewed (short lifetime here) while calls keep succeeding; the CA key reaches no
 * weavelet.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import { connect as tlsConnect } from "node:tls";
import { after, before, describe, test } from "node:test";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import {
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { newDeploymentCa, newKeyAndCsr, signCsr, type DeploymentCa } from "../../runtime/deployers/aws/certs.js";
import { ENV, targetGroupName, versionedServiceName } from "../../runtime/deployers/aws/contract.js";
import { TASK_HEADER } from "../../runtime/deployers/aws/protocol.js";
import { Connection } from "../../runtime/rpc/client.js";
import type { RpcTls } from "../../runtime/rpc/tls.js";
import { get, runCli, waitFor } from "../support/index.js";
import { startFargate, type FargateSimulator, type SimTask } from "./fargate.js";
import { clientConfig, useEmulator, type Emulator } from "./moto.js";
import { createAppResources, type AppResources, HELLO_CONFIG, FAST_LOOPS } from "./stack.js";

/** Certificates live 8 s here (24 h by default): agents renew them every few seconds. */
const LIFETIME_MS = 8_000;
const FAST = {
  ...FAST_LOOPS,
  TSWEAVER_CERT_LIFETIME_MS: String(LIFETIME_MS),
};
const RPC_PORT = 19400;

/** POSTs a certificate request to the control plane from `from`, as an agent would. */
function requestCertificate(
  url: string,
  from: string,
  secret: string,
  task: string,
  body: unknown,
): Promise<{ status: number; body: Record<string, string> }> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}/v1/certificate`,
      {
        method: "POST",
        localAddress: from,
        headers: {
          "content-type": "application/json",
          "content-length": payload.length,
          authorization: `Bearer ${secret}`,
          [TASK_HEADER]: task,
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, string> }));
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

/** The certificate a TLS server presents to a client holding `client` credentials (undefined: refused). */
function serverCertificate(address: string, client: RpcTls): Promise<X509Certificate | undefined> {
  const [host, port] = address.split(":");
  return new Promise((resolve) => {
    const s = tlsConnect({
      host,
      port: Number(port),
      cert: client.cert,
      key: client.key,
      ca: client.ca,
      minVersion: "TLSv1.3",
      checkServerIdentity: () => undefined,
    });
    s.once("secureConnect", () => {
      const cert = s.getPeerX509Certificate();
      s.destroy();
      resolve(cert);
    });
    s.once("error", () => resolve(undefined));
  });
}

/**
 * Whether the TLS server at `address` closes the connection of a client holding `client` (which accepts
 * any server certificate: the server's decision is what is probed) within `ms`, before it sends anything.
 */
function closedByServer(address: string, client: RpcTls, ms = 2_000): Promise<boolean> {
  const [host, port] = address.split(":");
  return new Promise((resolve) => {
    const s = tlsConnect({
      host,
      port: Number(port),
      cert: client.cert,
      key: client.key,
      ca: client.ca,
      minVersion: "TLSv1.3",
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    let data = false;
    const timer = setTimeout(() => (s.destroy(), resolve(false)), ms);
    s.on("data", () => (data = true));
    s.once("close", () => (clearTimeout(timer), resolve(!data)));
    s.on("error", () => {});
  });
}

describe("AWS TLS component calls: per-task certificates from the deployment CA, refusals on the wire, renewal", () => {
  let emu: Emulator;
  let res: AppResources;
  let sim: FargateSimulator;
  let sm: SecretsManagerClient;
  let main: SimTask;
  let reverser: SimTask;
  let controlUrl: string;
  let url: string;
  let ca: DeploymentCa;
  /** The method table hash of hello's weavelets, as a server tells a client that has another one. */
  let hash = "";

  const caSecretArn = () => res.controlPlane.env[ENV.CA_SECRET_ARN]!;
  /** Credentials for `identity` signed by `by` (the test plays an administrator holding the CA, or an attacker with another). */
  const credentials = async (by: DeploymentCa, deploymentId: string, group: string, deployment = res.stack): Promise<RpcTls> => {
    const { key, csr } = await newKeyAndCsr("probe");
    const { certificate } = await signCsr(by, csr, { deployment, version: deploymentId, group }, 60_000);
    return { cert: certificate, key, ca: by.certificate, identity: { deploymentId, group } };
  };
  /** Calls hello/Reverser.reverse on the reverser task's RPC port with `tls` (undefined: plain TCP). */
  const callReverser = async (tls: RpcTls | undefined, methodTableHash = hash): Promise<string> => {
    const c = new Connection(`${reverser.ip}:${RPC_PORT}`, {
      methodTableHash,
      deploymentId: res.version,
      tls,
      connectTimeoutMs: 5_000,
      backoffMinMs: 60_000,
    });
    try {
      return String(await c.call(0, "hello/Reverser.reverse", ["abc"]));
    } catch (err) {
      return `refused: ${(err as Error).message}`;
    } finally {
      await c.close();
    }
  };
  /** The task's output so far (a SimTask is a snapshot). */
  const stdout = (t: SimTask) => sim.tasks().find((x) => x.taskArn === t.taskArn)!.stdout;
  const logLines = (t: SimTask, msg: string) => stdout(t).filter((l) => l.includes(`"msg":"${msg}"`));

  before(async () => {
    emu = await useEmulator();
    sm = new SecretsManagerClient(clientConfig(emu.endpoint));
    res = await createAppResources({
      configFile: HELLO_CONFIG,
      listeners: { hello: { container_port: 18480 } },
      rpcPort: RPC_PORT,
      controlPort: 19410,
    });
    sim = await startFargate({ endpoint: emu.endpoint, cluster: res.clusterArn, workdir: res.workdir, taskEnv: () => FAST });
    const activate = await runCli(["aws", "activate", res.configFile, "--timeout", "120"]);
    assert.equal(activate.code, 0, activate.err + activate.out);
    main = sim.runningTasks(versionedServiceName("tsweaver-main", res.version))[0]!;
    controlUrl = `http://${sim.runningTasks(res.controlPlane.service)[0]!.ip}:19410`;
    const elb = new ElasticLoadBalancingV2Client(clientConfig(emu.endpoint));
    const tg = await elb.send(new DescribeTargetGroupsCommand({ Names: [targetGroupName(res.stack, "hello", res.version)] }));
    const target = (await elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg.TargetGroups![0]!.TargetGroupArn! })))
      .TargetHealthDescriptions![0]!.Target!;
    elb.destroy();
    url = `http://${target.Id}:${target.Port}`;
  });

  after(async () => {
    sm?.destroy();
    await sim?.stop();
    await res?.delete();
    await emu?.stop();
  });

  test("main calls the reverser in another task over TLS, with certificates the control plane issued from the CA it created", async () => {
    const reply = await waitFor("hello answers", async () => {
      const r = await get(`${url}/hello?name=World`);
      return r.status === 200 ? r : undefined;
    });
    assert.equal(reply.body, "Hello, dlroW!\n");
    reverser = sim.runningTasks(versionedServiceName("hello-reverser", res.version))[0]!;

    // The stack created the CA's secret empty; the control plane stored the CA in it.
    const stored = await sm.send(new GetSecretValueCommand({ SecretId: caSecretArn() }));
    ca = JSON.parse(stored.SecretString!) as DeploymentCa;
    assert.ok(new X509Certificate(ca.certificate).ca);
    assert.match(stored.VersionId!, /^tsweaver-deployment-ca-/, "written under the fixed first-version token");

    // The reverser's RPC port speaks TLS: its certificate is from the CA and names its version and group.
    const admin = await credentials(ca, res.version, "tsweaver-main");
    const presented = await serverCertificate(`${reverser.ip}:${RPC_PORT}`, admin);
    assert.ok(presented, "a client with a certificate from the CA completes the handshake");
    assert.ok(presented.checkIssued(new X509Certificate(ca.certificate)));
    assert.equal(presented.subjectAltName, `URI:tsweaver://${res.version}/hello-reverser`);
    assert.match(presented.subject, new RegExp(`O=${res.stack}`));
    for (const t of [main, reverser]) assert.ok(logLines(t, "certificate received").length >= 1, `${t.taskId}'s agent got a certificate`);

    // Such a client gets a method run (once it has the app's method table hash, which a refusal names).
    const mismatch = await callReverser(admin, "not-the-hash");
    hash = /server has "([^"]+)"/.exec(mismatch)?.[1] ?? "";
    assert.ok(hash, mismatch);
    assert.equal(await callReverser(admin), "cba");
  });

  test("refused on the wire before any method runs: plaintext, another CA, the CA's certificate for another deployment or version", async () => {
    assert.ok(hash, "the first test found the method table hash");
    const other = await newDeploymentCa("another-stack");
    const refusedBefore = stdout(reverser).length;
    const cases: [string, RpcTls | undefined][] = [
      ["plain TCP", undefined],
      ["another CA, same names", await credentials(other, res.version, "tsweaver-main")],
      ["this CA, another version", await credentials(ca, "v0000000000", "tsweaver-main")],
      ["another deployment's CA and names", await credentials(other, res.version, "tsweaver-main", "another-stack")],
    ];
    for (const [name, tls] of cases) {
      const out = await callReverser(tls);
      assert.match(out, /^refused: /, `${name}: ${out}`);
      assert.doesNotMatch(out, /method table|server has/, `${name}: refused before HELLO is read (${out})`);
      // The server's own decision, with a client that would accept any server certificate.
      if (tls !== undefined)
        assert.ok(await closedByServer(`${reverser.ip}:${RPC_PORT}`, tls), `${name}: the server closes the connection`);
    }
    assert.equal(await closedByServer(`${reverser.ip}:${RPC_PORT}`, await credentials(ca, res.version, "tsweaver-main")), false);
    // The weavelet logged each refusal (TLS handshake failures, and the identity check after it).
    await waitFor("the refusals in the reverser's log", () => {
      const lines = stdout(reverser).slice(refusedBefore).join("\n");
      return /TLS handshake with client failed/.test(lines) && /names no weavelet of this deployment/.test(lines);
    });
    assert.equal(await callReverser(await credentials(ca, res.version, "tsweaver-main")), "cba", "the right certificate still works");
  });

  test("forged certificate requests are refused; a granted one names what the control plane verified, not the CSR", async () => {
    const { csr } = await newKeyAndCsr("hello-reverser");
    const body = (over: Record<string, unknown> = {}) => ({
      taskArn: main.taskArn,
      group: "tsweaver-main",
      version: res.version,
      csr,
      ...over,
    });
    const ask = (from: string, task: string, b: unknown) => requestCertificate(controlUrl, from, res.secret, task, b);

    const fromTest = await ask("127.0.0.1", main.taskArn, body());
    assert.equal(fromTest.status, 403);
    assert.match(fromTest.body["error"]!, /comes from 127\.0\.0\.1, not from the ENI address/);
    const otherTask = await ask(main.ip, reverser.taskArn, body({ taskArn: reverser.taskArn, group: "hello-reverser" }));
    assert.equal(otherTask.status, 403, "main's address speaking for the reverser's task");
    const otherGroup = await ask(main.ip, main.taskArn, body({ group: "hello-reverser" }));
    assert.equal(otherGroup.status, 403);
    assert.match(otherGroup.body["error"]!, /claims group "hello-reverser"/);
    const foreign = main.taskArn.replace(/\/[^/]+\/([^/]+)$/, "/another-cluster/$1");
    assert.equal((await ask(main.ip, foreign, body({ taskArn: foreign }))).status, 403);
    const garbage = await ask(
      main.ip,
      main.taskArn,
      body({ csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n" }),
    );
    assert.equal(garbage.status, 400, JSON.stringify(garbage.body));

    // The task's own request: the CSR asked for CN=hello-reverser; the certificate names main's group.
    const granted = await ask(main.ip, main.taskArn, body());
    assert.equal(granted.status, 200, JSON.stringify(granted.body));
    assert.deepEqual(Object.keys(granted.body).sort(), ["ca", "certificate", "notAfter"]);
    const cert = new X509Certificate(granted.body["certificate"]!);
    assert.equal(cert.subjectAltName, `URI:tsweaver://${res.version}/tsweaver-main`);
    assert.doesNotMatch(cert.subject, /hello-reverser/);
    assert.doesNotMatch(JSON.stringify(granted.body), /PRIVATE KEY/, "the reply holds no key");
    const lifetime = Date.parse(cert.validTo) - Date.now();
    assert.ok(lifetime > 0 && lifetime <= LIFETIME_MS + 1_000, `short-lived (${lifetime} ms left)`);
  });

  test("certificates are renewed before they expire and calls keep succeeding across renewals", async () => {
    const received = (t: SimTask) => logLines(t, "certificate received").length;
    const before = { main: received(main), reverser: received(reverser) };
    const serialBefore = (await serverCertificate(`${reverser.ip}:${RPC_PORT}`, await credentials(ca, res.version, "tsweaver-main")))!
      .serialNumber;
    // Two and a half lifetimes of calls: every certificate in use at the start has expired by the end.
    const until = Date.now() + LIFETIME_MS * 2.5;
    let calls = 0;
    while (Date.now() < until) {
      const r = await get(`${url}/hello?name=abc${calls}`);
      assert.equal(r.status, 200, `call ${calls}: ${r.body}`);
      assert.equal(r.body, `Hello, ${[...`abc${calls}`].reverse().join("")}!\n`);
      calls++;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(received(main) >= before.main + 2, `main's agent renewed (${before.main} → ${received(main)})`);
    assert.ok(received(reverser) >= before.reverser + 2, `the reverser's agent renewed (${before.reverser} → ${received(reverser)})`);
    assert.ok(logLines(reverser, "TLS certificate renewed").length >= 2, "the weavelet took the new certificates");
    const now = (await serverCertificate(`${reverser.ip}:${RPC_PORT}`, await credentials(ca, res.version, "tsweaver-main")))!;
    assert.notEqual(now.serialNumber, serialBefore, "the server presents its renewed certificate");
    assert.ok(Date.parse(now.validTo) > Date.now());
    // New connections from main work with main's renewed certificate: a fresh client connection succeeds too.
    assert.equal(await callReverser(await credentials(ca, res.version, "tsweaver-main")), "cba");
    console.log(`renewal: ${calls} calls over ${LIFETIME_MS * 2.5} ms, all succeeded; main renewed ${received(main) - before.main} times`);
  });

  test("the CA key is in no weavelet's environment nor the agents', and never crosses the control pipe; nor is the deployment secret", async () => {
    for (const t of [main, reverser]) {
      assert.equal(t.env[ENV.CA_SECRET_ARN], undefined, "the agent is not told where the CA lives");
      const pids = execFileSync("pgrep", ["-P", String(t.pid)], { encoding: "utf8" })
        .trim()
        .split("\n")
        .filter(Boolean);
      assert.ok(pids.length >= 1, `${t.taskId}: its weavelet runs under the agent`);
      for (const pid of pids) {
        const environ = readFileSync(`/proc/${pid}/environ`, "utf8");
        assert.ok(!environ.includes(caSecretArn()), "no CA secret ARN in the weavelet's environment");
        assert.ok(!environ.includes("PRIVATE KEY"), "no key in the weavelet's environment");
        assert.ok(!environ.includes(ca.privateKey.split("\n")[1]!), "not the CA key");
        assert.ok(!environ.includes(res.secret), "not the deployment secret");
      }
      // What the agent hands over the pipe is its own key, certificate and the CA's certificate: the
      // control plane's replies (above) carry no key, and the agent's role cannot read the secret
      // (test/infra/iam.test.ts).
    }
  });

  test("the deployment secret is out of the app's reach: no ancestor's environ, cmdline or memory is readable with the app's credentials", async (t) => {
    for (const task of [main, reverser]) {
      const agent = task.pid!;
      assert.ok(
        readFileSync(`/proc/${agent}/environ`, "utf8").includes(res.secret),
        "the agent's initial environment holds the secret (ECS put it there)",
      );
      const weavelet = Number(
        execFileSync("pgrep", ["-P", String(agent)], { encoding: "utf8" })
          .trim()
          .split("\n")[0],
      );
      const creds = credentialsOf(weavelet);
      if (process.getuid?.() !== 0) {
        // The agent runs as this test's user and cannot switch users: it says so; the rest needs root (as in CI and on Fargate).
        assert.ok(
          logLines(task, "the agent does not run as root: the app runs as the agent's user and can read its environment and memory")
            .length >= 1,
        );
        t.diagnostic("not root: the agent cannot run the app as another user; the uid separation is not tested");
        continue;
      }
      assert.ok(creds.uid !== 0 && creds.gid !== 0, `${task.taskId}: the app runs as a non-root user (uid ${creds.uid}, gid ${creds.gid})`);
      assert.notEqual(creds.uid, credentialsOf(agent).uid, "the app's user is not the agent's");
      assert.deepEqual(creds.groups, [], "no supplementary groups (root's dropped)");
      // A process with exactly the weavelet's credentials (what any code of the app runs with) tries every ancestor.
      const ancestors = ancestorsOf(weavelet);
      assert.equal(ancestors[0], agent);
      const found = probeAs(creds, ancestors);
      for (const pid of ancestors) {
        const r = found[pid]!;
        assert.ok(
          !r.environ.includes(res.secret) && !r.cmdline.includes(res.secret),
          `${pid}: the secret is readable: ${JSON.stringify(r)}`,
        );
        assert.match(r.environ, /^EACCES$/, `${pid}'s environ is not readable`);
        assert.match(r.mem, /^EACCES$/, `${pid}'s memory cannot be opened`);
      }
      assert.ok(found[agent]!.cmdline.includes("agent"), "(the probe did reach the agent: its command line is public)");
    }
  });
});

/** The real uid, gid and supplementary groups of process `pid`. */
function credentialsOf(pid: number): { uid: number; gid: number; groups: number[] } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) =>
    (new RegExp(`^${name}:\\t(.*)$`, "m").exec(status)?.[1] ?? "").trim().split(/\s+/).filter(Boolean).map(Number);
  return { uid: field("Uid")[0]!, gid: field("Gid")[0]!, groups: field("Groups") };
}

/** The parent, grandparent, ... of `pid`, up to (not including) pid 0. */
function ancestorsOf(pid: number): number[] {
  const out: number[] = [];
  for (let p = pid; ;) {
    p = Number(/^PPid:\t(\d+)$/m.exec(readFileSync(`/proc/${p}/status`, "utf8"))![1]);
    if (p === 0) return out;
    out.push(p);
  }
}

/**
 * What a process running as `creds` (spawned with that uid and gid, no supplementary groups: the
 * weavelet's credentials, so what code of the app gets) reads of each of `pids`: environ and cmdline
 * (contents, or the error code), and whether it can open the memory (error code, or "opened").
 */
function probeAs(creds: { uid: number; gid: number }, pids: number[]): Record<number, { environ: string; cmdline: string; mem: string }> {
  const script = `
    const fs = require("node:fs");
    const read = (f) => { try { return fs.readFileSync(f, "latin1"); } catch (e) { return e.code; } };
    const out = {};
    for (const pid of JSON.parse(process.argv[1])) {
      let mem;
      try { fs.closeSync(fs.openSync("/proc/" + pid + "/mem", "r")); mem = "opened"; } catch (e) { mem = e.code; }
      out[pid] = { environ: read("/proc/" + pid + "/environ"), cmdline: read("/proc/" + pid + "/cmdline"), mem };
    }
    process.stdout.write(JSON.stringify(out));`;
  const stdout = execFileSync(process.execPath, ["-e", script, JSON.stringify(pids)], {
    uid: creds.uid,
    gid: creds.gid,
    env: { PATH: process.env["PATH"] ?? "" },
    cwd: "/",
    encoding: "utf8",
  });
  return JSON.parse(stdout) as Record<number, { environ: string; cmdline: string; mem: string }>;
}
