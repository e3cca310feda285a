/**
 * One moto server for a whole test run (test/run.sh):
 *
 *     node dist/test/aws/moto-server.js -- node --test ...   # runs the command against a fresh moto server
 *     node dist/test/aws/moto-server.js                      # prints the exports, serves until Ctrl-C
 *
 * With a command: checks that moto is importable (failing with "moto is not installed: pip install
 * 'moto[server]'"), starts it on a free loopback port, waits for `/moto-api/`, runs the command with
 * `AWS_ENDPOINT_URL` and throwaway credentials/region in its environment, stops the server when the
 * command ends and exits with the command's status. If `AWS_ENDPOINT_URL` is already set (LocalStack,
 * or a server you started), no server is started and the command runs against that endpoint.
 * `TSWEAVER_MOTO_LOG=path` keeps the server's request log there.
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import os from "node:os";
import { emulatorEnv, setFakeAwsEnv, startMoto, type MotoServer } from "./moto.js";

async function main(argv: string[]): Promise<number> {
  const dash = argv.indexOf("--");
  const command = dash >= 0 ? argv.slice(dash + 1) : argv;
  setFakeAwsEnv();

  let server: MotoServer | undefined;
  const given = process.env["AWS_ENDPOINT_URL"];
  if (given === undefined || given === "") {
    try {
      server = await startMoto();
    } catch (err) {
      process.stderr.write(`tsweaver tests: ${(err as Error).message}\n`);
      return 1;
    }
  }
  const endpoint = server?.endpoint ?? given!;
  const env = { ...process.env, ...emulatorEnv(endpoint) };
  const saveLog = (): void => {
    const file = process.env["TSWEAVER_MOTO_LOG"];
    if (server !== undefined && file) writeFileSync(file, server.log());
  };

  if (command.length === 0) {
    process.stdout.write(
      `export AWS_ENDPOINT_URL=${endpoint} AWS_ACCESS_KEY_ID=${env["AWS_ACCESS_KEY_ID"]} AWS_SECRET_ACCESS_KEY=${env["AWS_SECRET_ACCESS_KEY"]} AWS_REGION=${env["AWS_REGION"]}\n`,
    );
    if (server === undefined) return 0;
    process.stderr.write(`moto server ${endpoint} (pid ${server.pid}); Ctrl-C stops it\n`);
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    saveLog();
    await server.stop();
    return 0;
  }

  const child = spawn(command[0]!, command.slice(1), { stdio: "inherit", env });
  const forward = (sig: NodeJS.Signals) => () => {
    child.kill(sig);
  };
  process.on("SIGINT", forward("SIGINT"));
  process.on("SIGTERM", forward("SIGTERM"));
  const status = await new Promise<number>((resolve) => {
    child.once("error", (err) => {
      process.stderr.write(`tsweaver tests: cannot run ${command[0]}: ${err.message}\n`);
      resolve(127);
    });
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 + signalNumber(signal) : 1)));
  });
  saveLog();
  await server?.stop();
  return status;
}

function signalNumber(signal: NodeJS.Signals): number {
  return os.constants.signals[signal] ?? 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`tsweaver tests: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
