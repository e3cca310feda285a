import http from "node:http";
import { component, register, run, type Context, type Main } from "tsweaver";

/** A product of the shop; prices are in US cents. */
export interface Product {
  id: string;
  name: string;
  priceCents: number;
}

/** The products on sale. */
export interface Catalog {
  list(): Promise<Product[]>;
  get(id: string): Promise<Product>;
}
export const Catalog = component<Catalog>("five/Catalog", { methods: ["list", "get"] });

/** Units in stock per product. */
export interface Inventory {
  stock(id: string): Promise<number>;
}
export const Inventory = component<Inventory>("five/Inventory", { methods: ["stock"] });

/** Converts US cents to another currency's minor units. */
export interface Currency {
  convert(cents: number, to: string): Promise<number>;
}
export const Currency = component<Currency>("five/Currency", { methods: ["convert"] });

/** The price of a product in a currency (colocated with Currency: those calls stay in-process). */
export interface Pricing {
  price(id: string, currency: string): Promise<number>;
}
export const Pricing = component<Pricing>("five/Pricing", { methods: ["price"] });

/** A quote for a basket: total price, or the items that are out of stock. */
export interface Checkout {
  quote(items: { id: string; qty: number }[], currency: string): Promise<{ total: number; missing: string[] }>;
}
export const Checkout = component<Checkout>("five/Checkout", { methods: ["quote"] });

const PRODUCTS: Product[] = [
  { id: "mug", name: "Mug", priceCents: 1200 },
  { id: "shirt", name: "T-shirt", priceCents: 2500 },
  { id: "cap", name: "Cap", priceCents: 1800 },
];
const STOCK: Record<string, number> = { mug: 12, shirt: 3, cap: 0 };
const RATES: Record<string, number> = { USD: 1, EUR: 0.92, GBP: 0.79, JPY: 150 };

class CatalogImpl implements Catalog {
  async list(): Promise<Product[]> {
    return PRODUCTS;
  }
  async get(id: string): Promise<Product> {
    const p = PRODUCTS.find((x) => x.id === id);
    if (!p) throw Object.assign(new Error(`no product ${id}`), { name: "NotFound" });
    return p;
  }
}
register(Catalog, CatalogImpl);

class InventoryImpl implements Inventory {
  async stock(id: string): Promise<number> {
    return STOCK[id] ?? 0;
  }
}
register(Inventory, InventoryImpl);

class CurrencyImpl implements Currency {
  async convert(cents: number, to: string): Promise<number> {
    const rate = RATES[to];
    if (rate === undefined) throw Object.assign(new Error(`unknown currency ${to}`), { name: "BadCurrency" });
    return Math.round(cents * rate);
  }
}
register(Currency, CurrencyImpl);

class PricingImpl implements Pricing {
  constructor(private readonly ctx: Context) {}
  async price(id: string, currency: string): Promise<number> {
    const [catalog, fx] = await Promise.all([this.ctx.get(Catalog), this.ctx.get(Currency)]);
    return fx.convert((await catalog.get(id)).priceCents, currency);
  }
}
register(Pricing, PricingImpl);

class CheckoutImpl implements Checkout {
  constructor(private readonly ctx: Context) {}
  async quote(items: { id: string; qty: number }[], currency: string): Promise<{ total: number; missing: string[] }> {
    const [pricing, inventory] = await Promise.all([this.ctx.get(Pricing), this.ctx.get(Inventory)]);
    const lines = await Promise.all(
      items.map(async (it) => ({ it, stock: await inventory.stock(it.id), price: await pricing.price(it.id, currency) })),
    );
    const missing = lines.filter((l) => l.stock < l.it.qty).map((l) => l.it.id);
    return { total: lines.reduce((sum, l) => sum + l.price * l.it.qty, 0), missing };
  }
}
register(Checkout, CheckoutImpl);

/**
 * GET /products?currency=EUR → the catalog with prices; GET /quote?item=mug:2&item=cap:1&currency=EUR →
 * a quote. Every request crosses groups: main → catalog/checkout → pricing+currency/inventory.
 */
class App implements Main {
  constructor(private readonly ctx: Context) {}

  async main(): Promise<void> {
    const [catalog, pricing, checkout] = await Promise.all([this.ctx.get(Catalog), this.ctx.get(Pricing), this.ctx.get(Checkout)]);
    const server = http.createServer(async (req, res) => {
      const url = new URL(req.url ?? "/", "http://localhost");
      const currency = (url.searchParams.get("currency") ?? "USD").toUpperCase();
      const json = (status: number, body: unknown): void => {
        res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body) + "\n");
      };
      try {
        if (url.pathname === "/healthz") {
          res.end("ok\n");
        } else if (url.pathname === "/products") {
          const products = await catalog.list();
          const prices = await Promise.all(products.map((p) => pricing.price(p.id, currency)));
          json(
            200,
            products.map((p, i) => ({ id: p.id, name: p.name, price: prices[i], currency })),
          );
        } else if (url.pathname === "/quote") {
          const items = url.searchParams.getAll("item").map((s) => {
            const [id = "", qty = "1"] = s.split(":");
            return { id, qty: Number(qty) || 1 };
          });
          json(200, { currency, ...(await checkout.quote(items, currency)) });
        } else {
          json(404, { error: "try /products or /quote?item=mug:2" });
        }
      } catch (err) {
        const e = err as Error;
        json(e.name === "NotFound" || e.name === "BadCurrency" ? 400 : 500, { error: e.message });
      }
    });
    const lis = await this.ctx.listener("shop", server);
    this.ctx.logger.info("shop listener ready", { address: lis.address });
  }
}

await run(App);
