import { Session } from "node:inspector";

/** A CPU profile (`.cpuprofile` JSON) over `durationMs`, or a heap snapshot. */
export async function takeProfile(kind: "CPU" | "HEAP", durationMs: number): Promise<Uint8Array> {
  const session = new Session();
  session.connect();
  const post = <R>(method: string, params?: object): Promise<R> =>
    new Promise((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as R))));
  try {
    if (kind === "HEAP") {
      const chunks: string[] = [];
      session.on("HeapProfiler.addHeapSnapshotChunk", (m) => chunks.push((m.params as { chunk: string }).chunk));
      await post("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
      return Buffer.from(chunks.join(""));
    }
    await post("Profiler.enable");
    await post("Profiler.start");
    await new Promise((r) => setTimeout(r, Math.max(1, durationMs)));
    const { profile } = await post<{ profile: object }>("Profiler.stop");
    return Buffer.from(JSON.stringify(profile));
  } finally {
    session.disconnect();
  }
}
