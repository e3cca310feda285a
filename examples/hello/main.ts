import http from "node:http";
import { component, register, run, type Context, type Main } from "tsweaver";

/** Reverses strings. It runs in its own process on the multiprocess deployer. */
export interface Reverser {
  reverse(s: string): Promise<string>;
}
export const Reverser = component<Reverser>("hello/Reverser", { methods: ["reverse"] });

class ReverserImpl implements Reverser {
  async reverse(s: string): Promise<string> {
    return [...s].reverse().join("");
  }
}
register(Reverser, ReverserImpl);

/** Serves GET /hello?name=World → "Hello, dlroW!" through the Reverser component. */
class App implements Main {
  constructor(private readonly ctx: Context) {}

  async main(): Promise<void> {
    const reverser = await this.ctx.get(Reverser);
    const server = http.createServer(async (req, res) => {
      const url = new URL(req.url ?? "/", "http://localhost");
      if (url.pathname === "/healthz") {
        res.end("ok\n");
        return;
      }
      if (url.pathname !== "/hello") {
        res.writeHead(404).end("try /hello?name=World\n");
        return;
      }
      try {
        const reversed = await reverser.reverse(url.searchParams.get("name") ?? "World");
        res.end(`Hello, ${reversed}!\n`);
      } catch (err) {
        this.ctx.logger.error("reverse failed", err);
        res.writeHead(500).end(`error: ${(err as Error).message}\n`);
      }
    });
    const lis = await this.ctx.listener("hello", server);
    this.ctx.logger.info("hello listener ready", { address: lis.address });
  }
}

await run(App);
