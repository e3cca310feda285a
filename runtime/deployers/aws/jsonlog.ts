import type { LogEntry } from "../../protos/runtime.js";

/** Logs of the AWS processes: one JSON object per line on stdout, which awslogs ships to CloudWatch. */
export interface JsonLogger {
  info(msg: string, attrs?: Record<string, string | number>): void;
  warn(msg: string, attrs?: Record<string, string | number>): void;
  error(msg: string, attrs?: Record<string, string | number>): void;
  /** Embedded Metric Format lines (runtime/deployers/aws/emf.ts), written beside the logs; a logger without it drops them. */
  metrics?(lines: readonly string[]): void;
}

export function jsonLogger(component: string, node = ""): JsonLogger {
  const emit = (level: string, msg: string, attrs: Record<string, string | number> = {}) => {
    const a: Record<string, string> = {};
    for (const [k, v] of Object.entries(attrs)) a[k] = String(v);
    writeJsonLogs([
      {
        app: process.env["TSWEAVER_APP"] ?? "",
        version: process.env["TSWEAVER_DEPLOYMENT"] ?? "",
        component,
        node,
        timeMicros: String(Date.now() * 1000),
        level,
        file: "",
        line: 0,
        msg,
        attrs: a,
      },
    ]);
  };
  return {
    info: (m, a) => emit("info", m, a),
    warn: (m, a) => emit("warn", m, a),
    error: (m, a) => emit("error", m, a),
    metrics: (lines) => {
      if (lines.length > 0) process.stdout.write(lines.join("\n") + "\n");
    },
  };
}

/** Writes log entries as JSON lines (the format `tsweaver aws logs` reads back). */
export function writeJsonLogs(entries: readonly LogEntry[]): void {
  process.stdout.write(entries.map((e) => JSON.stringify(e)).join("\n") + "\n");
}
