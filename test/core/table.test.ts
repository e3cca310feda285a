import assert from "node:assert/strict";
import { test } from "node:test";
import { textTable } from "../../runtime/core/table.js";

test("textTable pads columns to their widest cell, indents two spaces, trims trailing blanks, ends without a newline", () => {
  assert.equal(
    textTable([
      ["GROUP", "REPLICAS", "HEALTH"],
      ["shop-cart", "2", ""],
      ["main", "10", "HEALTHY"],
    ]),
    ["  GROUP      REPLICAS  HEALTH", "  shop-cart  2", "  main       10        HEALTHY"].join("\n"),
  );
  assert.equal(textTable([]), "");
});
