#!/usr/bin/env node
import { Command, Option } from "commander";
import {
  adviseCommand,
  dashboardCommand,
  deployCommand,
  gcCommand,
  logsCommand,
  metricsCommand,
  profileCommand,
  statusCommand,
  tracesCommand,
  type AdviseOptions,
} from "../deployers/multi/commands.js";
import { initCommand } from "./init.js";
import { importAwsModule } from "./package.js";

// A reader that went away (`tsweaver multi status --all | head`) ends the output, not the command with
// an EPIPE stack trace.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const program = new Command("tsweaver")
  .description("Run a tsweaver app: in one process (node app.js), as many local processes (multi), or on AWS")
  .showHelpAfterError();

program
  .command("init")
  .description("scaffold a new app: package.json, src/main.ts (two components and a listener), a test, weaver.toml and the AWS CDK app")
  .argument("<dir>", "the app's directory (created if missing); init never overwrites a file in it")
  .option("--name <name>", "the app's name in package.json, weaver.toml and the component names (default: from the directory's name)")
  .option(
    "--tsweaver <spec>",
    "how package.json depends on tsweaver: a version range, a git URL or a local .tgz/directory path (default: a caret range of this tsweaver's version)",
  )
  .option("--no-aws", "leave out the AWS deployment: cdk.json, infra/, weaver.toml's [aws] section and the CDK dev dependencies")
  .action((dir: string, opts: { name?: string; tsweaver?: string; aws: boolean }) => initCommand(dir, opts));

const multi = program.command("multi").description("the local multiprocess deployer");

multi
  .command("deploy")
  .description("deploy the app as replicated processes on this machine; Ctrl-C stops it")
  .argument("<config>", "the app's weaver.toml")
  .action(async (config: string) => deployCommand(config));

multi
  .command("status")
  .description("show running deployments: groups, replicas (pid, health, restarts), listeners")
  .option("--all", "include stopped deployments")
  .option("--json", "print JSON")
  .action((opts: { all?: boolean; json?: boolean }) => statusCommand(opts));

multi
  .command("gc")
  .description("remove the state (status, logs, traces, profiles) of deployments that ended; never of a running one")
  .option("--older-than <duration>", "only deployments that ended longer ago than this (30m, 12h, 7d)", "7d")
  .option("--dry-run", "list what would be removed, remove nothing")
  .action((opts: { olderThan: string; dryRun?: boolean }) => void gcCommand(opts));

multi
  .command("logs")
  .description("print the logs of a deployment (the newest by default)")
  .argument("[deployment]", "deployment id (or a prefix of it)")
  .option("-f, --follow", "keep printing new entries")
  .option("-c, --component <name>", "only this component (e.g. hello/Reverser, or stdout/stderr)")
  .addOption(new Option("-l, --level <level>", "minimum level").choices(["debug", "info", "warn", "error"]))
  .option("-w, --weavelet <id>", "only this weavelet (id prefix)")
  .option("-g, --grep <text>", "only entries whose message or attributes contain text")
  .option("-s, --since <when>", "only entries newer than this (10m, 2h, 1d, or an ISO time)")
  .action(async (deployment: string | undefined, opts: Record<string, string | boolean>) =>
    logsCommand({ deployment, ...opts } as Parameters<typeof logsCommand>[0]),
  );

multi
  .command("metrics")
  .description("print a running deployment's metrics (the newest by default), summed over replicas")
  .argument("[deployment]", "deployment id (or a prefix of it)")
  .option("-c, --component <name>", "only metrics about this component (as callee or caller)")
  .option("-n, --name <text>", "only metrics whose name contains text")
  .option("-r, --replicas", "one line per replica instead of sums")
  .option("--json", "print JSON")
  .action(async (deployment: string | undefined, opts: Record<string, string | boolean>) => metricsCommand({ deployment, ...opts }));

multi
  .command("traces")
  .description("list a running deployment's recent traces, or show one as a timeline (--trace ID)")
  .argument("[deployment]", "deployment id (or a prefix of it)")
  .option("-c, --component <name>", "only traces through this component")
  .option("-t, --trace <id>", "show this trace's spans (id or a unique prefix)")
  .option("--limit <n>", "how many traces", "20")
  .option("--json", "print JSON")
  .action(async (deployment: string | undefined, opts: Record<string, string | boolean>) => tracesCommand({ deployment, ...opts }));

multi
  .command("profile")
  .description("CPU-profile every replica of a group (default: every group) into .cpuprofile files; prints their directory")
  .argument("[deployment]", "deployment id (or a prefix of it)")
  .option("--cpu <duration>", "how long to profile (10s, 500ms, 1m)", "10s")
  .option("--heap", "take heap snapshots (.heapsnapshot) instead")
  .option("-g, --group <name>", "only this group (or the group of this component)")
  .option("-o, --out <dir>", "where to write the files (default: the deployment's profiles/<time>/)")
  .action(async (deployment: string | undefined, opts: Record<string, string | boolean>) => {
    await profileCommand({ deployment, ...opts });
  });

multi
  .command("advise")
  .description(
    "propose colocate groups for weaver.toml from a running deployment's measured calls: the heaviest cross-process edges become in-process calls",
  )
  .argument("[deployment]", "deployment id (or a prefix of it)")
  .option("-w, --window <duration>", "how much recent traffic to judge by (30s, 5m)", "60s")
  .option("-m, --max-components <n>", "most components in one group", "4")
  .option("-s, --separate <component...>", "components that stay in a group of their own (e.g. routed ones)")
  .option("--min-share <fraction>", "ignore pairs carrying less than this share of all calls", "0.05")
  .option("--json", "print JSON")
  .action(async (deployment: string | undefined, opts: Omit<AdviseOptions, "deployment">) => {
    await adviseCommand({ deployment, ...opts });
  });

multi
  .command("dashboard")
  .description(
    "print a one-time login link (valid 60 s) to a running deployment's dashboard: groups, replicas, call graph, metrics, traces, logs",
  )
  .argument("[deployment]", "deployment id (or a prefix of it)")
  .option("--open", "also open it in the default browser")
  .action(async (deployment: string | undefined, opts: { open?: boolean }) => {
    await dashboardCommand({ deployment, ...opts });
  });

// The AWS SDK loads only for aws commands: the multi commands stay quick to start, and run where the
// SDK (optional peer dependencies) is not installed.
const awsCli = () => importAwsModule(() => import("../deployers/aws/cli.js"));
const aws = program.command("aws").description("the AWS deployer (ECS Fargate); deploy the stack first: npx cdk deploy, see docs/aws.md");
const stackArgs = (c: Command) =>
  c
    .argument("[config]", "the app's weaver.toml (for the stack name)")
    .option("--stack <name>", "CloudFormation stack name (default: [aws] stack, or tsweaver-<app>)");
const int = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`expected a non-negative integer, got ${v}`);
  return n;
};

stackArgs(aws.command("activate").description("start the app: raise main's group and wait until it serves behind the load balancer"))
  .option("--replicas <n>", "tasks for main's group (default: its [aws.groups] min)", int)
  .option("--timeout <seconds>", "give up after this long", int, 600)
  .action(async (config: string | undefined, opts: { stack?: string; replicas?: number; timeout: number }) =>
    (await awsCli()).activateCommand({ config, ...opts }),
  );
stackArgs(
  aws
    .command("status")
    .description(
      "every live version: rollout phase, traffic split, groups (desired/running tasks, registered replicas), listener target health",
    ),
)
  .option("--json", "print JSON")
  .action(async (config: string | undefined, opts: { stack?: string; json?: boolean }) =>
    (await awsCli()).awsStatusCommand({ config, ...opts }),
  );
stackArgs(aws.command("logs").description("the app's logs from CloudWatch Logs"))
  .option("-f, --follow", "keep printing new entries")
  .option("-c, --component <name>", "only this component (or stdout/stderr, agent, controlplane)")
  .option("-s, --since <when>", "entries newer than this (10m, 2h, 1d, or an ISO time)", "10m")
  .action(async (config: string | undefined, opts: { stack?: string; follow?: boolean; component?: string; since: string }) =>
    (await awsCli()).awsLogsCommand({ config, ...opts }),
  );
stackArgs(aws.command("deactivate").description("stop the app: every group to 0 tasks, replicas and targets deregistered"))
  .option("--timeout <seconds>", "give up after this long", int, 300)
  .action(async (config: string | undefined, opts: { stack?: string; timeout: number }) =>
    (await awsCli()).deactivateCommand({ config, ...opts }),
  );
const rollout = aws
  .command("rollout")
  .description(
    "the rollout of the deployed version: status, promote (skip the remaining steps), rollback (all traffic back to the previous version)",
  );
stackArgs(rollout.command("status").description("the deployed version's rollout phase and traffic share"))
  .option("--json", "print JSON")
  .action(async (config: string | undefined, opts: { stack?: string; json?: boolean }) =>
    (await awsCli()).rolloutStatusCommand({ config, ...opts }),
  );
stackArgs(
  rollout.command("promote").description("skip the remaining steps: the deployed version takes all traffic, the previous one is retired"),
)
  .option("--timeout <seconds>", "give up waiting for the control plane after this long", int, 300)
  .action(async (config: string | undefined, opts: { stack?: string; timeout: number }) =>
    (await awsCli()).rolloutRequestCommand("promote", { config, ...opts }),
  );
stackArgs(rollout.command("rollback").description("move all traffic back to the previous version and retire the deployed one"))
  .option("--timeout <seconds>", "give up waiting for the control plane after this long", int, 300)
  .action(async (config: string | undefined, opts: { stack?: string; timeout: number }) =>
    (await awsCli()).rolloutRequestCommand("rollback", { config, ...opts }),
  );
stackArgs(
  aws
    .command("dashboard")
    .description(
      "serve the dashboard of `tsweaver multi dashboard` on loopback, fed from AWS: ECS tasks, Cloud Map replicas, target health, " +
        'the call graph and charts from CloudWatch metrics, the log tail from CloudWatch Logs, recent traces from X-Ray (tracing = "xray"); ' +
        "prints a one-time login link (valid 60 s); Ctrl-C stops it",
    ),
)
  .option("--address <host:port>", "loopback address to listen on", "127.0.0.1:0")
  .option("--refresh <seconds>", "least time between two reads of ECS, Cloud Map, the load balancer, the logs and X-Ray", int, 10)
  .option("--metrics-refresh <seconds>", "least time between two CloudWatch GetMetricData reads (a point a minute)", int, 30)
  .option("--token-file <path>", "where to write the admin token (mode 0600; default ~/.tsweaver/aws/<stack>/admin-token)")
  .option("--open", "also open the login link in the default browser")
  .action(
    async (
      config: string | undefined,
      opts: { stack?: string; address: string; refresh: number; metricsRefresh: number; tokenFile?: string; open?: boolean },
    ) => {
      const { awsDashboardCommand } = await importAwsModule(() => import("./aws-dashboard.js"));
      // Ctrl-C (or SIGTERM) stops it at any point, while it reads AWS too; the server keeps the process alive.
      let close = () => {};
      for (const signal of ["SIGINT", "SIGTERM"] as const)
        process.once(signal, () => {
          close();
          process.exit(0);
        });
      const dashboard = await awsDashboardCommand({ config, ...opts });
      close = () => dashboard.close();
      // Enter prints a fresh login link (each one works once, within 60 s).
      if (process.stdin.isTTY) process.stdin.on("data", () => process.stdout.write(`${dashboard.newLoginUrl()}\n`));
    },
  );
aws
  .command("agent")
  .description("(task entrypoint) run one group's weavelet in an ECS task")
  .action(async () => (await importAwsModule(() => import("../deployers/aws/agent.js"))).agentCommand());
aws
  .command("controlplane")
  .description("(task entrypoint) run the control plane in its ECS task")
  .action(async () => (await importAwsModule(() => import("../deployers/aws/controlplane.js"))).controlPlaneCommand());

program.parseAsync(process.argv).catch((err: Error) => {
  process.stderr.write(`tsweaver: ${err.message}\n`);
  process.exit(1);
});
