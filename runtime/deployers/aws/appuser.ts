// The user a group task's app runs as. The agent holds the deployment secret: in its initial environment,
// where ECS put it (/proc/<pid>/environ keeps what execve was given, whatever the process does later),
// and in its memory. Linux lets a process read another's environ, mem or fds only under the same uid
// (the ptrace access check), so the agent runs as root and starts the app as an unprivileged user of the
// image: no dependency of the app can read the secret, signal the agent or trace it.
import { readFileSync } from "node:fs";
import { ENV } from "./contract.js";

/** An unprivileged user of the image. */
export interface AppUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  /** Its home directory (the app's HOME). */
  readonly home: string;
}

/** The user the image names when {@link ENV.APP_USER} is unset (the Node images' own). */
export const DEFAULT_APP_USER = "node";

/** The entries of an /etc/passwd text. */
function passwdEntries(passwd: string): AppUser[] {
  return passwd
    .split("\n")
    .map((line) => line.split(":"))
    .filter((f) => f.length >= 7 && /^\d+$/.test(f[2]!) && /^\d+$/.test(f[3]!))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5] || "/" }));
}

/**
 * The user `spec` names — a user name of `passwd`, or `uid:gid` — refusing root. Throws an error naming
 * the variable, what it holds and what is allowed.
 */
export function resolveAppUser(spec: string, passwd: string): AppUser {
  const entries = passwdEntries(passwd);
  const numeric = /^(\d+):(\d+)$/.exec(spec);
  const user = numeric
    ? {
        name: entries.find((e) => e.uid === Number(numeric[1]))?.name ?? numeric[1]!,
        uid: Number(numeric[1]),
        gid: Number(numeric[2]),
        home: entries.find((e) => e.uid === Number(numeric[1]))?.home ?? "/",
      }
    : entries.find((e) => e.name === spec);
  if (user === undefined)
    throw new Error(
      `${ENV.APP_USER}="${spec}": no such user in the image's /etc/passwd (found: ${entries
        .filter((e) => e.uid !== 0)
        .map((e) => e.name)
        .join(", ")}); set ENV ${ENV.APP_USER} in the Dockerfile to its non-root user, or "uid:gid"`,
    );
  if (user.uid === 0 || user.gid === 0)
    throw new Error(`${ENV.APP_USER}="${spec}" is root (uid ${user.uid}, gid ${user.gid}); the app must run as a non-root user`);
  return user;
}

/**
 * The user the agent starts the app as: {@link ENV.APP_USER} of `env` (default {@link DEFAULT_APP_USER})
 * when the agent runs as root (`agentUid` 0), else undefined: a non-root agent cannot switch users, and
 * its app runs as itself.
 */
export function appUser(
  env: Readonly<Record<string, string | undefined>>,
  agentUid: number | undefined = process.getuid?.(),
  passwd: () => string = () => readFileSync("/etc/passwd", "utf8"),
): AppUser | undefined {
  if (agentUid !== 0) return undefined;
  return resolveAppUser(env[ENV.APP_USER] || DEFAULT_APP_USER, passwd());
}
