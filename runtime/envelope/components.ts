import { execFile } from "node:child_process";
import { ConfigError } from "../core/errors.js";

/**
 * The components registered in an app binary, found by running its entry file with
 * TSWEAVER_LIST_COMPONENTS=1 (it prints `{"components":[...]}` and exits without starting anything).
 */
export function listComponents(binary: string, args: readonly string[] = [], env: Readonly<Record<string, string>> = {}): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [binary, ...args],
      { env: { ...process.env, ...env, TSWEAVER_LIST_COMPONENTS: "1" }, timeout: 30_000, maxBuffer: 4 << 20 },
      (err, stdout, stderr) => {
        if (err) {
          // Node's own error line says most ("Error: Cannot find module ..."); show it first.
          const lines = stderr.trim().split("\n");
          const headline = lines.find((l) => /^\w*Error\b/.test(l));
          const why = [headline, ...lines.slice(-3)].filter((l, i, all) => l && all.indexOf(l) === i).join("\n") || err.message;
          reject(new ConfigError(`cannot load app ${binary} to list its components (is it built? does it call run()?):\n${why}`));
          return;
        }
        const line = stdout.split("\n").find((l) => l.startsWith('{"components"'));
        if (!line) {
          reject(new ConfigError(`app ${binary} printed no component list; its entry file must call run(App) from "tsweaver"`));
          return;
        }
        resolve((JSON.parse(line) as { components: string[] }).components);
      },
    );
  });
}
