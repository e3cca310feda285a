// A complete deployer written on the public deployer API: one weavelet (process) per component, started
// when some weavelet first needs the component. Run: node deployer.js path/to/app.js
import { randomUUID } from "node:crypto";
import path from "node:path";
import { Envelope, formatLogEntry, MAIN_COMPONENT, type EnvelopeHandler } from "tsweaver/deployer";

export class SimpleDeployer {
  readonly deploymentId = randomUUID();
  /** component → its weavelet (a promise while it starts). */
  private readonly weavelets = new Map<string, Promise<Envelope>>();
  /** listener name → exported address, printed once. */
  readonly listeners = new Map<string, string>();

  constructor(
    private readonly binary: string,
    private readonly log: (line: string) => void = (l) => console.log(l),
  ) {}

  /** Starts the weavelet that runs main(). */
  async start(): Promise<void> {
    await this.startWeavelet(MAIN_COMPONENT);
  }

  async stop(): Promise<void> {
    const all = await Promise.allSettled(this.weavelets.values());
    await Promise.all(all.flatMap((r) => (r.status === "fulfilled" ? [r.value.stop()] : [])));
  }

  private startWeavelet(component: string): Promise<Envelope> {
    let started = this.weavelets.get(component);
    if (started) return started;
    const envelope = new Envelope({
      binary: this.binary,
      weaveletArgs: {
        app: path.basename(this.binary),
        deploymentId: this.deploymentId,
        id: randomUUID(),
        runMain: component === MAIN_COMPONENT,
        internalAddress: "127.0.0.1:0",
        group: component,
        components: [component],
        config: {},
      },
    });
    // The envelope exists before its weavelet runs, so its handler knows whom it answers.
    started = envelope.serve(this.handler(envelope)).then(() => envelope);
    this.weavelets.set(component, started);
    return started;
  }

  private handler(caller: Envelope): EnvelopeHandler {
    return {
      activateComponent: async ({ component }) => {
        const target = await this.startWeavelet(component);
        await caller.updateRoutingInfo({ component, local: false, replicas: [target.dialAddress] });
      },
      getListenerAddress: async () => ({ address: "localhost:0" }),
      exportListener: async ({ listener, address }) => {
        this.listeners.set(listener, address);
        this.log(`listener ${listener} available on http://${address}`);
        return { proxyAddress: address, error: "" };
      },
      handleLogEntries: ({ entries }) => entries.forEach((e) => this.log(formatLogEntry(e))),
      handleTraceSpans: () => {},
    };
  }
}

// Run as a program: node deployer.js app.js
if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1])) && process.argv[2]) {
  const deployer = new SimpleDeployer(path.resolve(process.argv[2]));
  process.on("SIGINT", () => void deployer.stop().then(() => process.exit(0)));
  await deployer.start();
}
