// Generates runtime/protos/gen/*.ts from protos/*.proto: a TypeScript interface per message (the plain
// objects runtime/protos/runtime.ts encodes and decodes), with the .proto comments as doc comments, and
// the protobufjs descriptor the runtime loads. Run `npm run gen` after editing a .proto; `npm run gen:check`
// (part of `npm test`) fails when the committed files differ from a fresh generation.
//
// Why not pbjs/pbts (protobufjs-cli): their types describe message class instances (64-bit integers as
// Long, toJSON methods, every field optional on input), not the plain objects with decimal-string 64-bit
// integers and string enums the control protocol uses, and they emit .js beside .d.ts, which tsc does
// not copy to dist/. This generator reads the .proto with protobufjs's own parser, so it accepts exactly
// what the runtime accepts.
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";

const HELP = `usage: node dist/tools/gen-protos.js [--check] [--out DIR]

Generates runtime/protos/gen/<name>.ts for every protos/<name>.proto.
  --out DIR  write the generated files to DIR instead of runtime/protos/gen
  --check    generate into a temporary directory and fail if runtime/protos/gen differs
  --help     show this help`;

/** The repository root: this file runs from tools/ (sources) or dist/tools/. */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, "protos")) || !existsSync(path.join(dir, "package.json"))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error("gen-protos: cannot find the repository root (a directory with protos/ and package.json)");
    dir = up;
  }
  return dir;
}

const LONG_TYPES = new Set(["int64", "uint64", "sint64", "fixed64", "sfixed64"]);
const NUMBER_TYPES = new Set(["int32", "uint32", "sint32", "fixed32", "sfixed32", "double", "float"]);

/** A doc comment at `indent`, or nothing when the .proto has no comment. */
function doc(comment: string | null | undefined, indent: string): string {
  if (!comment) return "";
  const lines = comment.replace(/\*\//g, "*\\/").split("\n");
  if (lines.length === 1) return `${indent}/** ${lines[0]} */\n`;
  return `${indent}/**\n${lines.map((l) => `${indent} *${l ? " " + l : ""}`).join("\n")}\n${indent} */\n`;
}

/** The TypeScript name of a nested type: its path below the package, joined ("MetricUpdate.Kind" → "MetricUpdateKind"). */
function tsName(obj: protobuf.ReflectionObject, pkg: protobuf.Namespace): string {
  const parts: string[] = [];
  for (let o: protobuf.ReflectionObject | null = obj; o && o !== pkg; o = o.parent) parts.unshift(o.name);
  return parts.join("");
}

function fieldType(field: protobuf.Field, pkg: protobuf.Namespace, file: string): string {
  field.resolve();
  if (LONG_TYPES.has(field.type)) return "string"; // decimal, as decoded with { longs: String }
  if (NUMBER_TYPES.has(field.type)) return "number";
  if (field.type === "bool") return "boolean";
  if (field.type === "string") return "string";
  if (field.type === "bytes") return "Uint8Array";
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type || resolved instanceof protobuf.Enum) return tsName(resolved, pkg);
  throw new Error(`${file}: field ${field.fullName} has type ${field.type}, which gen-protos does not support`);
}

function emitEnum(e: protobuf.Enum, pkg: protobuf.Namespace): string {
  const values = Object.keys(e.values);
  const valueDocs = values.filter((v) => e.comments[v]).map((v) => `${v}: ${e.comments[v]}`);
  const comment = [e.comment, ...valueDocs].filter(Boolean).join("\n");
  return `${doc(comment, "")}export type ${tsName(e, pkg)} = ${values.map((v) => JSON.stringify(v)).join(" | ")};\n`;
}

function emitMessage(t: protobuf.Type, pkg: protobuf.Namespace, file: string): string {
  let out = doc(t.comment, "") + `export interface ${tsName(t, pkg)} {\n`;
  for (const f of t.fieldsArray) {
    if (f.partOf && f.partOf.fieldsArray.length === 1 && f.partOf.name.startsWith("_")) {
      throw new Error(`${file}: field ${f.fullName} is proto3 optional, which gen-protos does not support`);
    }
    const base = fieldType(f, pkg, file);
    let type: string;
    let optional = false;
    if (f.map) type = `Record<string, ${base}>`;
    else if (f.repeated) type = `${base}[]`;
    else if (f.resolvedType instanceof protobuf.Type || f.partOf) {
      // Absent messages decode as null; oneof members other than the one set are absent.
      type = `${base} | null`;
      optional = true;
    } else type = base;
    out += doc(f.comment, "  ") + `  ${f.name}${optional ? "?" : ""}: ${type};\n`;
  }
  for (const o of t.oneofsArray) {
    const names = o.fieldsArray.map((f) => JSON.stringify(f.name)).join(" | ");
    out += doc(o.comment ?? `Which member of oneof ${o.name} is set (filled in by decoding).`, "  ") + `  ${o.name}?: ${names};\n`;
  }
  return out.endsWith("{\n") ? out.replace(/\{\n$/, "{}\n") : out + "}\n";
}

/** Every message and enum below `ns`, depth first, in .proto order. */
function collect(ns: protobuf.Namespace, out: protobuf.ReflectionObject[]): protobuf.ReflectionObject[] {
  for (const nested of ns.nestedArray) {
    if (nested instanceof protobuf.Type || nested instanceof protobuf.Enum) out.push(nested);
    if (nested instanceof protobuf.Service) throw new Error(`gen-protos: service ${nested.fullName} is not supported`);
    if (nested instanceof protobuf.Namespace) collect(nested, out);
  }
  return out;
}

/** The generated TypeScript module for one .proto file. */
export function generate(protoFile: string, relName: string): string {
  const parsed = protobuf.parse(readFileSync(protoFile, "utf8"), { alternateCommentMode: true });
  if (!parsed.package) throw new Error(`${relName}: no package statement; gen-protos needs one to name the descriptor root`);
  const root = parsed.root;
  root.resolveAll();
  const pkg = root.lookup(parsed.package);
  if (!(pkg instanceof protobuf.Namespace)) throw new Error(`${relName}: package ${parsed.package} not found`);
  const parts = [
    `// Generated by tools/gen-protos.ts from ${relName}. DO NOT EDIT: change the .proto and run \`npm run gen\`.\n`,
    `import type { INamespace } from "protobufjs";\n`,
  ];
  for (const obj of collect(pkg, [])) {
    parts.push(obj instanceof protobuf.Enum ? emitEnum(obj, pkg) : emitMessage(obj as protobuf.Type, pkg, relName));
  }
  parts.push(
    `/** Fully qualified name of the package the messages above belong to. */\nexport const PACKAGE = ${JSON.stringify(parsed.package)};\n`,
  );
  // Through a variable: the JSON carries fields (protoName, keyType) protobufjs reads but INamespace omits.
  parts.push(`const descriptorJson = ${JSON.stringify(root.toJSON(), null, 2)};\n`);
  parts.push(
    `/** The protobufjs descriptor of ${relName} (load with protobuf.Root.fromJSON). */\nexport const descriptor: INamespace = descriptorJson;\n`,
  );
  return parts.join("\n");
}

/** Generates every protos/*.proto into `outDir`; returns the file names written. */
function generateAll(root: string, outDir: string): string[] {
  mkdirSync(outDir, { recursive: true });
  const written: string[] = [];
  for (const name of readdirSync(path.join(root, "protos"))
    .filter((n) => n.endsWith(".proto"))
    .sort()) {
    const out = name.replace(/\.proto$/, ".ts");
    writeFileSync(path.join(outDir, out), generate(path.join(root, "protos", name), `protos/${name}`));
    written.push(out);
  }
  return written;
}

/** Compares a fresh generation with the committed files; returns what differs, empty when in sync. */
function check(root: string): string[] {
  const committed = path.join(root, "runtime/protos/gen");
  const fresh = mkdtempSync(path.join(tmpdir(), "tsweaver-gen-"));
  try {
    const problems: string[] = [];
    const names = generateAll(root, fresh);
    for (const name of names) {
      const want = readFileSync(path.join(fresh, name), "utf8");
      const file = path.join(committed, name);
      if (!existsSync(file)) {
        problems.push(`runtime/protos/gen/${name} is missing`);
        continue;
      }
      const have = readFileSync(file, "utf8");
      if (have === want) continue;
      const a = have.split("\n");
      const b = want.split("\n");
      let line = 0;
      while (line < a.length && line < b.length && a[line] === b[line]) line++;
      problems.push(
        `runtime/protos/gen/${name} differs from a fresh generation at line ${line + 1}:\n  committed: ${a[line] ?? "(end of file)"}\n  generated: ${b[line] ?? "(end of file)"}`,
      );
    }
    const extra = existsSync(committed) ? readdirSync(committed).filter((n) => !names.includes(n)) : [];
    for (const name of extra) problems.push(`runtime/protos/gen/${name} has no .proto in protos/ (delete it)`);
    return problems;
  } finally {
    rmSync(fresh, { recursive: true, force: true });
  }
}

function main(argv: string[]): number {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(HELP);
    return 0;
  }
  const unknown = argv.filter((a, i) => a.startsWith("-") && !["--check", "--out"].includes(a) && argv[i - 1] !== "--out");
  if (unknown.length) {
    console.error(`gen-protos: unknown option ${unknown[0]}\n${HELP}`);
    return 2;
  }
  const root = repoRoot();
  if (argv.includes("--check")) {
    const problems = check(root);
    if (problems.length) {
      console.error(
        `gen-protos: the generated protocol code is out of date:\n${problems.join("\n")}\nRun \`npm run gen\` and commit runtime/protos/gen/.`,
      );
      return 1;
    }
    console.log("gen-protos: runtime/protos/gen is up to date with protos/");
    return 0;
  }
  const outIndex = argv.indexOf("--out");
  const outDir = outIndex >= 0 ? path.resolve(argv[outIndex + 1] ?? "") : path.join(root, "runtime/protos/gen");
  for (const name of generateAll(root, outDir)) console.log(`gen-protos: wrote ${path.relative(process.cwd(), path.join(outDir, name))}`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
