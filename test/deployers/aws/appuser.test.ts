// Which user a group task's agent runs the app as (runtime/deployers/aws/appuser.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { appUser, resolveAppUser } from "../../../runtime/deployers/aws/appuser.js";

const PASSWD = [
  "root:x:0:0:root:/root:/bin/bash",
  "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
  "node:x:1000:1000::/home/node:/bin/sh",
  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
  "",
].join("\n");

test("a user name of /etc/passwd, or uid:gid; its home becomes the app's HOME", () => {
  assert.deepEqual(resolveAppUser("node", PASSWD), { name: "node", uid: 1000, gid: 1000, home: "/home/node" });
  assert.deepEqual(resolveAppUser("65534:65534", PASSWD), { name: "nobody", uid: 65534, gid: 65534, home: "/nonexistent" });
  assert.deepEqual(resolveAppUser("2000:3000", PASSWD), { name: "2000", uid: 2000, gid: 3000, home: "/" });
});

test("root and unknown users are refused, naming the variable and the users there are", () => {
  assert.throws(() => resolveAppUser("root", PASSWD), /TSWEAVER_APP_USER="root" is root/);
  assert.throws(() => resolveAppUser("0:0", PASSWD), /is root/);
  assert.throws(() => resolveAppUser("1000:0", PASSWD), /is root \(uid 1000, gid 0\)/);
  assert.throws(
    () => resolveAppUser("app", PASSWD),
    /TSWEAVER_APP_USER="app": no such user .*found: daemon, node, nobody.*ENV TSWEAVER_APP_USER/,
  );
});

test("only a root agent switches users: default node, else TSWEAVER_APP_USER", () => {
  assert.equal(
    appUser({}, 1000, () => PASSWD),
    undefined,
  );
  assert.equal(appUser({}, 0, () => PASSWD)?.name, "node");
  assert.equal(appUser({ TSWEAVER_APP_USER: "nobody" }, 0, () => PASSWD)?.uid, 65534);
  assert.throws(() => appUser({ TSWEAVER_APP_USER: "root" }, 0, () => PASSWD), /is root/);
});
