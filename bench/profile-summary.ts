// Summarizes .cpuprofile files (from `npm run bench -- --cpu-prof=DIR`, `node --cpu-prof`, or a
// weavelet's GetProfile): self time per function, hottest first.
//   node dist/bench/profile-summary.js DIR_OR_FILE... [--top=30] [--through=REGEX]
// --through=REGEX also prints the share of the busy (not idle) time spent in stacks that pass through a
// function matching REGEX (tested against "name url", e.g. "telemetry/|@opentelemetry"): the inclusive
// cost of a part of the code, as a fraction of the process's work, which the machine's load hardly moves.
import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function summarize(file: string, top: number, through: RegExp | undefined): string {
  const prof = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Whether a node's stack (the node or a caller of it) matches `through`, memoized per node.
  const passes = new Map<number, boolean>();
  const passesThrough = (id: number): boolean => {
    const known = passes.get(id);
    if (known !== undefined) return known;
    const f = byId.get(id)!.callFrame;
    const up = parent.get(id);
    const v = through!.test(`${f.functionName} ${f.url}`) || (up !== undefined && passesThrough(up));
    passes.set(id, v);
    return v;
  };
  let matched = 0;
  const self = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const n = byId.get(prof.samples[i]!);
    if (n === undefined) continue;
    const dt = prof.timeDeltas[i] ?? 0;
    total += dt;
    if (through !== undefined && passesThrough(n.id)) matched += dt;
    const f = n.callFrame;
    const where = f.url ? ` ${f.url.split("/").slice(-2).join("/")}:${f.lineNumber + 1}` : "";
    const key = `${f.functionName || "(anonymous)"}${where}`;
    self.set(key, (self.get(key) ?? 0) + dt);
  }
  const busy = total - (self.get("(idle)") ?? 0);
  const lines = [`${file}: ${(total / 1000).toFixed(0)} ms sampled, ${(busy / 1000).toFixed(0)} ms not idle`];
  if (through !== undefined) {
    lines.push(
      `${(matched / 1000).toFixed(0)} ms (${((100 * matched) / busy).toFixed(1)}% of not idle) in stacks through /${through.source}/`,
    );
  }
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
const throughArg = args.find((a) => a.startsWith("--through="))?.slice(10);
const through = throughArg === undefined ? undefined : new RegExp(throughArg);
const inputs = args.filter((a) => !a.startsWith("--"));
if (inputs.length === 0) {
  process.stderr.write("usage: node dist/bench/profile-summary.js DIR_OR_FILE... [--top=30] [--through=REGEX]\n");
  process.exit(2);
}
for (const f of inputs.flatMap(files)) process.stdout.write(summarize(f, top, through) + "\n\n");
