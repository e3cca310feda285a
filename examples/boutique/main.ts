// Online Boutique (Google's microservices demo) as one tsweaver app: the frontend is main, with an
// HTTP listener "boutique"; the nine services are components (components.ts). The same file runs in
// one process (`node dist/examples/boutique/main.js`), on multi and on AWS.
import http from "node:http";
import { run, type Context, type Main } from "tsweaver";
import { AdComponent, CartComponent, Checkout, Currency, getAll, ProductCatalog, Recommendation, Shipping } from "./components.js";
import { createFrontend } from "./frontend.js";
import type { FrontendServices } from "./types.js";

class Frontend implements Main {
  constructor(private readonly ctx: Context) {}

  async main(): Promise<void> {
    const services = await getAll<FrontendServices>(this.ctx, {
      catalog: ProductCatalog,
      currency: Currency,
      cart: CartComponent,
      recommendation: Recommendation,
      shipping: Shipping,
      checkout: Checkout,
      ad: AdComponent,
    });
    const server = http.createServer({ keepAliveTimeout: 65_000 }, createFrontend(services, this.ctx.logger));
    const lis = await this.ctx.listener("boutique", server);
    this.ctx.logger.info("boutique frontend ready", { address: lis.address, public: lis.publicAddress });
  }
}

await run(Frontend);
