// One process of the gRPC microservices version: `node dist/bench/boutique/service.js <key>` where key is
// catalog, currency, cart, recommendation, shipping, payment, email, checkout, ad or frontend. The
// addresses of the services it calls come in BOUTIQUE_ADDRS (JSON {key: "127.0.0.1:port"}). Prints
// `READY <port>` once listening; exits on SIGTERM or when stdin closes. Each service runs the same
// logic as the tsweaver components (examples/boutique/logic.ts), the frontend the same handler.
import http from "node:http";
import type net from "node:net";
import { PRODUCTS } from "../../examples/boutique/data.js";
import { createFrontend } from "../../examples/boutique/frontend.js";
import * as logic from "../../examples/boutique/logic.js";
import type { Log } from "../../examples/boutique/types.js";
import { clients, serve, SERVICES, type ServiceKey } from "./grpc.js";

const key = process.argv[2] ?? "";
const addrs = JSON.parse(process.env["BOUTIQUE_ADDRS"] ?? "{}") as Partial<Record<ServiceKey, string>>;

/** Structured log lines on stdout, like a containerized service's (the bench reads and drops them). */
const log: Log = {
  info(msg, attrs) {
    process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level: "info", service: key, msg, ...attrs }) + "\n");
  },
};

async function start(): Promise<number> {
  const c = clients(addrs);
  switch (key) {
    case "catalog":
      return serve(SERVICES.catalog, {
        ListProducts: async () => ({ products: PRODUCTS }),
        GetProduct: async (r: { id: string }) => logic.getProduct(r.id),
        SearchProducts: async (r: { query: string }) => ({ results: logic.searchProducts(r.query) }),
      });
    case "currency":
      return serve(SERVICES.currency, {
        GetSupportedCurrencies: async () => ({ currencyCodes: logic.supportedCurrencies() }),
        Convert: async (r) => logic.convertMoney(r.from, r.toCode),
      });
    case "cart": {
      const store = new logic.CartStore();
      return serve(SERVICES.cart, {
        AddItem: async (r) => (store.add(r.userId, r.item), {}),
        GetCart: async (r) => store.get(r.userId),
        EmptyCart: async (r) => (store.empty(r.userId), {}),
      });
    }
    case "recommendation":
      return serve(SERVICES.recommendation, {
        ListRecommendations: async (r) => ({ productIds: logic.recommend(await c.catalog.listProducts(), r.productIds) }),
      });
    case "shipping":
      return serve(SERVICES.shipping, {
        GetQuote: async (r) => ({ costUsd: logic.shippingQuote(r.items) }),
        ShipOrder: async (r) => {
          const trackingId = logic.trackingId(r.address);
          log.info("order shipped", { trackingId });
          return { trackingId };
        },
      });
    case "payment":
      return serve(SERVICES.payment, { Charge: async (r) => ({ transactionId: logic.charge(r.amount, r.creditCard, log) }) });
    case "email":
      return serve(SERVICES.email, { SendOrderConfirmation: async (r) => (logic.sendConfirmation(r.email, r.order, log), {}) });
    case "checkout":
      return serve(SERVICES.checkout, { PlaceOrder: async (r) => ({ order: await logic.placeOrder(c, r, log) }) });
    case "ad":
      return serve(SERVICES.ad, { GetAds: async (r) => ({ ads: logic.ads(r.contextKeys) }) });
    case "frontend": {
      const server = http.createServer({ keepAliveTimeout: 65_000 }, createFrontend(c, log));
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      return (server.address() as net.AddressInfo).port;
    }
    default:
      throw new Error(`unknown service ${key} (want ${Object.keys(SERVICES).join(", ")} or frontend)`);
  }
}

const port = await start();
process.stdout.write(`READY ${port}\n`);
process.once("SIGTERM", () => process.exit(0)); // a normal exit, so --cpu-prof writes its profile
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
