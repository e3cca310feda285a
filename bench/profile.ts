// Optional CPU profiling of the tsweaver weavelets (`--cpu-prof=DIR` on bench/run.ts). `node --cpu-prof`
// is not allowed in NODE_OPTIONS and the multi deployer starts the weavelets itself, so they profile
// themselves through node:inspector from load until their components shut down, and then write
// DIR/<role>-<pid>.cpuprofile (open it in Chrome DevTools, or `node dist/bench/profile-summary.js DIR`).
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import path from "node:path";

let stopper: ((role: string) => Promise<void>) | undefined;

/** Starts profiling this process if BENCH_CPU_PROF_DIR is set. */
export function startProfile(): void {
  const dir = process.env["BENCH_CPU_PROF_DIR"];
  if (!dir || stopper) return;
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))));
  const started = post("Profiler.enable")
    .then(() => post("Profiler.setSamplingInterval", { interval: 100 }))
    .then(() => post("Profiler.start"));
  stopper = async (role) => {
    await started;
    const res = (await post("Profiler.stop")) as { profile: object };
    writeFileSync(path.join(dir, `${role}-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    session.disconnect();
  };
}

/** Stops profiling and writes the profile named after `role` (once; a no-op when not profiling). */
export async function stopProfile(role: string): Promise<void> {
  const s = stopper;
  stopper = undefined;
  await s?.(role);
}
