import assert from "node:assert/strict";
import { test } from "node:test";
import { checkComponentNames, groupsOf, loadConfig, parseConfig } from "../../runtime/core/config.js";
import { ConfigError } from "../../runtime/core/errors.js";
import { multiConfig } from "../../runtime/deployers/multi/config.js";
import { writeConfig } from "../support/index.js";

const F = "/apps/shop/weaver.toml";

test("a minimal weaver.toml resolves the binary next to the file and names the app after its directory", () => {
  const c = parseConfig('[tsweaver]\nbinary = "dist/main.js"\n', F);
  assert.equal(c.binary, "/apps/shop/dist/main.js");
  assert.equal(c.name, "shop");
  assert.deepEqual(c.args, []);
  assert.deepEqual(c.colocate, []);
});

test("env accepts a table or KEY=value strings; colocate and component sections are kept", () => {
  const c = parseConfig('[tsweaver]\nbinary = "m.js"\nenv = ["A=1", "B=x=y"]\ncolocate = [["shop/A", "shop/B"]]\n["shop/A"]\nk = 1\n', F);
  assert.deepEqual(c.env, { A: "1", B: "x=y" });
  assert.deepEqual(c.colocate, [["shop/A", "shop/B"]]);
  assert.deepEqual({ ...c.components["shop/A"] }, { k: 1 });
});

const bad: [string, string, RegExp][] = [
  ["missing [tsweaver]", "[multi]\nreplicas = 2\n", /\[tsweaver\]: missing section/],
  ["missing binary", '[tsweaver]\nname = "x"\n', /tsweaver\.binary: required/],
  ["unknown app key", '[tsweaver]\nbinary = "m.js"\nbinaary = 1\n', /tsweaver\.binaary: unknown key/],
  ["unknown section", '[tsweaver]\nbinary = "m.js"\n[mutli]\nreplicas = 2\n', /\[mutli\]: unknown section/],
  ["bad env", '[tsweaver]\nbinary = "m.js"\nenv = ["NOEQUALS"]\n', /tsweaver\.env/],
  ["component in two groups", '[tsweaver]\nbinary = "m.js"\ncolocate = [["a/B"], ["a/B", "a/C"]]\n', /a\/B appears in more than one group/],
  [
    "bad node_args",
    '[tsweaver]\nbinary = "m.js"\nnode_args = ["max-old-space-size=1"]\n',
    /tsweaver\.node_args: must be an array of Node\.js flags/,
  ],
  ["invalid TOML", '[tsweaver\nbinary = "m.js"\n', /invalid TOML/],
  ["bad name", '[tsweaver]\nbinary = "m.js"\nname = "my app"\n', /tsweaver\.name/],
];
for (const [what, text, re] of bad) {
  test(`bad weaver.toml: ${what} → ConfigError naming the file and key`, () => {
    assert.throws(
      () => parseConfig(text, F),
      (err: unknown) => err instanceof ConfigError && re.test(err.message) && err.message.includes(F),
    );
  });
}

test("a missing config file is a ConfigError naming the path", () => {
  assert.throws(() => loadConfig("/nonexistent/weaver.toml"), /cannot read config file \/nonexistent\/weaver.toml/);
});

test("unknown components in colocate or sections are named", () => {
  const c = parseConfig('[tsweaver]\nbinary = "m.js"\ncolocate = [["shop/A", "shop/Nope"]]\n', F);
  assert.throws(
    () => checkComponentNames(c, ["shop/A", "tsweaver/Main"]),
    /colocate: unknown component shop\/Nope \(registered components: shop\/A, tsweaver\/Main\)/,
  );
  const d = parseConfig('[tsweaver]\nbinary = "m.js"\n["shop/Typo"]\nx = 1\n', F);
  assert.throws(() => checkComponentNames(d, ["shop/A"]), /\["shop\/Typo"\]: unknown component/);
});

test("groups: colocated components share a group, others get one each, names are AWS-safe", () => {
  const groups = groupsOf({ colocate: [["shop/Cart", "shop/Ad"]] }, ["shop/Ad", "shop/Cart", "shop/Email", "tsweaver/Main"]);
  assert.deepEqual(groups, [
    { name: "shop-ad", components: ["shop/Ad", "shop/Cart"] },
    { name: "shop-email", components: ["shop/Email"] },
    { name: "tsweaver-main", components: ["tsweaver/Main"] },
  ]);
});

test("[multi] section: defaults, listeners, and errors naming the key", () => {
  const ok = multiConfig(
    loadConfig(writeConfig('[tsweaver]\nbinary = "m.js"\n[multi]\nreplicas = 3\n[multi.listeners.web]\naddress = "localhost:8080"\n')),
  );
  assert.equal(ok.replicas, 3);
  assert.equal(ok.listeners.get("web"), "localhost:8080");
  assert.equal(multiConfig(parseConfig('[tsweaver]\nbinary = "m.js"\n', F)).replicas, 2);
  assert.throws(
    () => multiConfig(parseConfig('[tsweaver]\nbinary = "m.js"\n[multi]\nreplicas = 0\n', F)),
    /multi\.replicas: must be an integer/,
  );
  assert.throws(() => multiConfig(parseConfig('[tsweaver]\nbinary = "m.js"\n[multi]\nreplica = 2\n', F)), /multi\.replica: unknown key/);
  assert.throws(
    () => multiConfig(parseConfig('[tsweaver]\nbinary = "m.js"\n[multi.listeners.web]\naddress = 8080\n', F)),
    /multi\.listeners\.web\.address/,
  );
});

test("[tsweaver.callers]: lists of component names, checked against the registered components", () => {
  const cfg = parseConfig(
    `[tsweaver]\nbinary = "a.js"\n[tsweaver.callers]\n"app/Pay" = ["app/Checkout", "app/Checkout"]\n`,
    "/x/weaver.toml",
  );
  assert.deepEqual(cfg.callers, { "app/Pay": ["app/Checkout"] });
  assert.throws(
    () => parseConfig(`[tsweaver]\nbinary = "a.js"\n[tsweaver.callers]\n"app/Pay" = "app/Checkout"\n`, "/x/weaver.toml"),
    /\/x\/weaver\.toml: tsweaver\.callers\."app\/Pay": must be an array of component names \(found "app\/Checkout"\)/,
  );
  assert.throws(() => checkComponentNames(cfg, ["app/Pay"]), /tsweaver\.callers\."app\/Pay": unknown caller app\/Checkout/);
  assert.throws(() => checkComponentNames(cfg, ["app/Checkout"]), /tsweaver\.callers\."app\/Pay": unknown component/);
  checkComponentNames(cfg, ["app/Pay", "app/Checkout"]);
});
