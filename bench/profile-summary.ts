// Summarizes .cpuprofile files (from `npm run bench -- --cpu-prof=DIR`, `node --cpu-prof`, or a
// weavelet's GetProfile): self time per function, hottest first.
//   node dist/bench/profile-summary.js DIR_OR_FILE... [--top=30]
import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function summarize(file: string, top: number): string {
  const prof = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const n = byId.get(prof.samples[i]!);
    if (n === undefined) continue;
    const dt = prof.timeDeltas[i] ?? 0;
    total += dt;
    const f = n.callFrame;
    const where = f.url ? ` ${f.url.split("/").slice(-2).join("/")}:${f.lineNumber + 1}` : "";
    const key = `${f.functionName || "(anonymous)"}${where}`;
    self.set(key, (self.get(key) ?? 0) + dt);
  }
  const busy = total - (self.get("(idle)") ?? 0);
  const lines = [`${file}: ${(total / 1000).toFixed(0)} ms sampled, ${(busy / 1000).toFixed(0)} ms not idle`];
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    lines.push(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(0).padStart(6)} ms  ${k}`);
  }
  return lines.join("\n");
}

function files(arg: string): string[] {
  if (!statSync(arg).isDirectory()) return [arg];
  return readdirSync(arg)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => path.join(arg, f));
}

const args = process.argv.slice(2);
const top = Number(args.find((a) => a.startsWith("--top="))?.slice(6) ?? 30);
const inputs = args.filter((a) => !a.startsWith("--"));
if (inputs.length === 0) {
  process.stderr.write("usage: node dist/bench/profile-summary.js DIR_OR_FILE... [--top=30]\n");
  process.exit(2);
}
for (const f of inputs.flatMap(files)) process.stdout.write(summarize(f, top) + "\n\n");
