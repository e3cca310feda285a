#!/usr/bin/env node
import { Command, Option } from "commander";
import { deployCommand, logsCommand, statusCommand } from "../deployers/multi/commands.js";

const program = new Command("tsweaver")
  .description("Run a tsweaver app: in one process (node app.js), as many local processes (multi), or on AWS")
  .showHelpAfterError();

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

program.parseAsync(process.argv).catch((err: Error) => {
  process.stderr.write(`tsweaver: ${err.message}\n`);
  process.exit(1);
});
