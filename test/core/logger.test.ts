import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { type LogRecord, newLogger } from "../../runtime/core/logger.js";
import { ROOT } from "../support/index.js";

function capture(): { records: LogRecord[]; logger: ReturnType<typeof newLogger> } {
  const records: LogRecord[] = [];
  return { records, logger: newLogger("test.Component", (r) => records.push(r)) };
}

test("error(msg, attrs) logs the attributes, not an err of [object Object]", () => {
  const { records, logger } = capture();
  logger.error("charge failed", { orderId: "o-1", cents: 250 });
  assert.deepEqual(records[0]?.attrs, { orderId: "o-1", cents: "250" });
});

test("error(msg, err, attrs) logs the error's name, message and stack beside the attributes", () => {
  const { records, logger } = capture();
  logger.error("charge failed", new RangeError("too much"), { orderId: "o-1" });
  const attrs = records[0]?.attrs ?? {};
  assert.equal(attrs["err"], "RangeError: too much");
  assert.match(attrs["stack"] ?? "", /RangeError: too much\n\s+at /);
  assert.equal(attrs["orderId"], "o-1");
});

test("a non-Error, non-plain value is the error; a plain object passed with attributes too", () => {
  const { records, logger } = capture();
  logger.error("a", "disk full");
  logger.error("b", { code: 7 }, {});
  assert.equal(records[0]?.attrs["err"], "disk full");
  assert.equal(records[1]?.attrs["err"], "[object Object]");
});

test("file:line names the TypeScript source line of the call, compiled or not", () => {
  const { records, logger } = capture();
  logger.info("here"); // log-site-marker
  logger.with({ a: 1 }).warn("there"); // log-site-marker-2
  const source = readFileSync(join(ROOT, "test/core/logger.test.ts"), "utf8").split("\n");
  const lineOf = (marker: string) => source.findIndex((l) => l.endsWith(`// ${marker}`)) + 1;
  assert.deepEqual(
    records.map((r) => `${r.file}:${r.line}`),
    [`logger.test.ts:${lineOf("log-site-marker")}`, `logger.test.ts:${lineOf("log-site-marker-2")}`],
  );
});
