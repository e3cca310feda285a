// The shop's frontend: a node:http request handler over the services (FrontendServices), serving a JSON
// API and minimal HTML pages. It makes the original frontend's calls (one currency conversion per price
// shown, recommendations resolved to products, an ad per page). Transport-free: tsweaver's main passes
// component stubs, bench/boutique passes gRPC clients.
import { randomUUID } from "node:crypto";
import type http from "node:http";
import { FRONTEND_CURRENCIES } from "./data.js";
import { formatMoney, multiplyMoney, sumMoney } from "./logic.js";
import type { Ad, Address, CreditCardInfo, FrontendServices, Log, Money, OrderResult, Product } from "./types.js";

/** Error names the services throw for a caller's mistake, and the HTTP status the frontend answers. */
export const CLIENT_ERRORS: Readonly<Record<string, number>> = {
  InvalidCreditCard: 400,
  UnacceptedCreditCard: 400,
  ExpiredCreditCard: 400,
  UnsupportedCurrency: 400,
  InvalidArgument: 400,
  ProductNotFound: 404,
};

/** The address, email and card the original's load generator checks out with. */
export const DEFAULT_ORDER = {
  email: "someone@example.com",
  address: {
    streetAddress: "1600 Amphitheatre Parkway",
    city: "Mountain View",
    state: "CA",
    country: "United States",
    zipCode: 94043,
  } satisfies Address,
  creditCard: {
    creditCardNumber: "4432-8015-6152-0454",
    creditCardCvv: 672,
    creditCardExpirationYear: 2039,
    creditCardExpirationMonth: 1,
  } satisfies CreditCardInfo,
};

const SESSION_COOKIE = "shop_session-id";
const CURRENCY_COOKIE = "shop_currency";
const MAX_BODY = 64 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    name: string,
    message: string,
  ) {
    super(message);
    this.name = name;
  }
}

interface Session {
  userId: string;
  currency: string;
  setCookies: string[];
}

interface PricedProduct {
  product: Product;
  price: Money;
}

/** Returns the frontend's request handler. */
export function createFrontend(s: FrontendServices, log: Log): http.RequestListener {
  const currencies = async (): Promise<string[]> =>
    (await s.currency.getSupportedCurrencies()).filter((c) => FRONTEND_CURRENCIES.includes(c));
  const cartSize = async (userId: string): Promise<number> => (await s.cart.getCart(userId)).items.reduce((n, it) => n + it.quantity, 0);
  const recommendations = async (userId: string, ids: string[]): Promise<Product[]> => {
    const recs = (await s.recommendation.listRecommendations(userId, ids)).slice(0, 4);
    return Promise.all(recs.map((id) => s.catalog.getProduct(id)));
  };
  const ad = async (keys: string[]): Promise<Ad | undefined> => {
    const all = await s.ad.getAds(keys);
    return all[Math.floor(Math.random() * all.length)];
  };

  const views = {
    async home(ss: Session) {
      const [cs, products, size, a] = await Promise.all([currencies(), s.catalog.listProducts(), cartSize(ss.userId), ad([])]);
      const priced: PricedProduct[] = await Promise.all(
        products.map(async (p) => ({ product: p, price: await s.currency.convert(p.priceUsd, ss.currency) })),
      );
      return { currency: ss.currency, currencies: cs, cartSize: size, products: priced, ad: a };
    },
    async product(ss: Session, id: string) {
      const product = await s.catalog.getProduct(id);
      const [cs, size, price, recs, a] = await Promise.all([
        currencies(),
        cartSize(ss.userId),
        s.currency.convert(product.priceUsd, ss.currency),
        recommendations(ss.userId, [id]),
        ad(product.categories),
      ]);
      return { currency: ss.currency, currencies: cs, cartSize: size, product, price, recommendations: recs, ad: a };
    },
    async cart(ss: Session) {
      const [cs, cart] = await Promise.all([currencies(), s.cart.getCart(ss.userId)]);
      const ids = cart.items.map((it) => it.productId);
      const [recs, shippingCost, items] = await Promise.all([
        recommendations(ss.userId, ids),
        s.shipping.getQuote(DEFAULT_ORDER.address, cart.items).then((q) => s.currency.convert(q, ss.currency)),
        Promise.all(
          cart.items.map(async (it) => {
            const product = await s.catalog.getProduct(it.productId);
            const price = multiplyMoney(await s.currency.convert(product.priceUsd, ss.currency), it.quantity);
            return { product, quantity: it.quantity, price };
          }),
        ),
      ]);
      let total = shippingCost;
      for (const it of items) total = sumMoney(total, it.price);
      return {
        currency: ss.currency,
        currencies: cs,
        cartSize: items.reduce((n, it) => n + it.quantity, 0),
        items,
        shippingCost,
        total,
        recommendations: recs,
      };
    },
    async addToCart(ss: Session, body: Record<string, unknown>) {
      const productId = String(body["productId"] ?? body["product_id"] ?? "");
      const quantity = Number(body["quantity"] ?? 1);
      if (!Number.isInteger(quantity) || quantity < 1 || quantity > 10)
        throw new HttpError(400, "InvalidArgument", `invalid quantity ${String(body["quantity"])}`);
      await s.catalog.getProduct(productId); // 404 for an unknown product, like the original
      await s.cart.addItem(ss.userId, { productId, quantity });
      return { cartSize: await cartSize(ss.userId) };
    },
    async checkout(ss: Session, body: Record<string, unknown>) {
      const order: OrderResult = await s.checkout.placeOrder({
        userId: ss.userId,
        userCurrency: ss.currency,
        email: typeof body["email"] === "string" ? body["email"] : DEFAULT_ORDER.email,
        address: { ...DEFAULT_ORDER.address, ...(body["address"] as Partial<Address> | undefined) },
        creditCard: { ...DEFAULT_ORDER.creditCard, ...(body["creditCard"] as Partial<CreditCardInfo> | undefined), ...formCard(body) },
      });
      const recs = await recommendations(ss.userId, []);
      let total = order.shippingCost;
      for (const it of order.items) total = sumMoney(total, multiplyMoney(it.cost, it.item.quantity));
      return { currency: ss.currency, order, total, recommendations: recs };
    },
  };

  return (req, res) => {
    void handle(req, res).catch((err: unknown) => {
      const e = err as Error & { status?: number };
      const status = e instanceof HttpError ? e.status : (CLIENT_ERRORS[e.name] ?? 500);
      if (status >= 500) log.info("request failed", { path: req.url ?? "", error: `${e.name}: ${e.message}` });
      if (res.headersSent) return void res.destroy();
      sendJson(res, status, { error: e.name, message: e.message });
    });
  };

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://localhost");
    const path = url.pathname;
    const method = req.method ?? "GET";
    if (path === "/healthz") return void res.end("ok\n");
    const ss = session(req, url);
    res.setHeader("set-cookie", ss.setCookies);
    if (path.startsWith("/api/")) {
      const api = path.slice(4);
      if (method === "GET" && api === "/home") return sendJson(res, 200, await views.home(ss));
      if (method === "GET" && api.startsWith("/product/"))
        return sendJson(res, 200, await views.product(ss, decodeURIComponent(api.slice(9))));
      if (method === "GET" && api === "/cart") return sendJson(res, 200, await views.cart(ss));
      if (method === "POST" && api === "/cart") return sendJson(res, 200, await views.addToCart(ss, await readBody(req)));
      if (method === "POST" && api === "/cart/empty") {
        await s.cart.emptyCart(ss.userId);
        return sendJson(res, 200, { cartSize: 0 });
      }
      if (method === "POST" && api === "/currency") return sendJson(res, 200, setCurrency(res, ss, await readBody(req)));
      if (method === "POST" && api === "/checkout") return sendJson(res, 200, await views.checkout(ss, await readBody(req)));
      throw new HttpError(404, "NotFound", `no API ${method} ${path}`);
    }
    if (method === "GET" && path === "/") return sendHtml(res, homePage(await views.home(ss)));
    if (method === "GET" && path.startsWith("/product/"))
      return sendHtml(res, productPage(await views.product(ss, decodeURIComponent(path.slice(9)))));
    if (method === "GET" && path === "/cart") return sendHtml(res, cartPage(await views.cart(ss)));
    if (method === "POST" && path === "/cart") {
      await views.addToCart(ss, await readBody(req));
      return redirect(res, "/cart");
    }
    if (method === "POST" && path === "/cart/empty") {
      await s.cart.emptyCart(ss.userId);
      return redirect(res, "/");
    }
    if (method === "POST" && path === "/setCurrency") {
      setCurrency(res, ss, await readBody(req));
      return redirect(res, req.headers.referer ?? "/");
    }
    if (method === "POST" && path === "/cart/checkout") return sendHtml(res, orderPage(await views.checkout(ss, await readBody(req))));
    throw new HttpError(404, "NotFound", `no page ${method} ${path}`);
  }
}

function setCurrency(res: http.ServerResponse, ss: Session, body: Record<string, unknown>): { currency: string } {
  const currency = String(body["currency"] ?? body["currency_code"] ?? "");
  if (!FRONTEND_CURRENCIES.includes(currency)) throw new HttpError(400, "UnsupportedCurrency", `unsupported currency ${currency}`);
  ss.setCookies.push(`${CURRENCY_COOKIE}=${currency}; Path=/; Max-Age=172800`);
  res.setHeader("set-cookie", ss.setCookies);
  ss.currency = currency;
  return { currency };
}

function formCard(body: Record<string, unknown>): Partial<CreditCardInfo> {
  const out: Partial<CreditCardInfo> = {};
  if (typeof body["credit_card_number"] === "string") out.creditCardNumber = body["credit_card_number"];
  if (body["credit_card_expiration_month"] !== undefined) out.creditCardExpirationMonth = Number(body["credit_card_expiration_month"]);
  if (body["credit_card_expiration_year"] !== undefined) out.creditCardExpirationYear = Number(body["credit_card_expiration_year"]);
  if (body["credit_card_cvv"] !== undefined) out.creditCardCvv = Number(body["credit_card_cvv"]);
  return out;
}

/** The user from the session cookie (a new one if absent); the currency from ?currency=, the cookie, or USD. */
function session(req: http.IncomingMessage, url: URL): Session {
  const cookies = new Map<string, string>();
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0) cookies.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  const setCookies: string[] = [];
  let userId = cookies.get(SESSION_COOKIE);
  if (!userId) {
    userId = randomUUID();
    setCookies.push(`${SESSION_COOKIE}=${userId}; Path=/; Max-Age=172800`);
  }
  const currency = url.searchParams.get("currency") ?? cookies.get(CURRENCY_COOKIE) ?? "USD";
  if (!FRONTEND_CURRENCIES.includes(currency)) throw new HttpError(400, "UnsupportedCurrency", `unsupported currency ${currency}`);
  return { userId, currency, setCookies };
}

async function readBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > MAX_BODY) throw new HttpError(413, "TooLarge", "request body too large");
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text === "") return {};
  if ((req.headers["content-type"] ?? "").includes("application/json")) {
    try {
      const v = JSON.parse(text) as unknown;
      if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      /* fall through */
    }
    throw new HttpError(400, "InvalidArgument", "the body must be a JSON object");
  }
  return Object.fromEntries(new URLSearchParams(text));
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
}

function sendHtml(res: http.ServerResponse, html: string): void {
  res.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-length": Buffer.byteLength(html) }).end(html);
}

function redirect(res: http.ServerResponse, to: string): void {
  res.writeHead(303, { location: to }).end();
}

// ---------------------------------------------------------------------------------------------------
// Minimal HTML pages

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const money = (m: Money): string => `${esc(m.currencyCode)} ${formatMoney(m)}`;

function layout(title: string, currency: string, currencies: string[], cartSize: number, body: string): string {
  const options = currencies.map((c) => `<option${c === currency ? " selected" : ""}>${esc(c)}</option>`).join("");
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)} | Online Boutique</title></head><body>
<header><a href="/">Online Boutique</a> · <a href="/cart">Cart (${cartSize})</a>
<form method="post" action="/setCurrency" style="display:inline"><select name="currency_code">${options}</select><button>Set currency</button></form></header>
<main>${body}</main></body></html>`;
}

function adHtml(a: Ad | undefined): string {
  return a ? `<aside>Ad: <a href="${esc(a.redirectUrl)}">${esc(a.text)}</a></aside>` : "";
}

function productList(items: PricedProduct[] | Product[]): string {
  return `<ul>${items.map((x) => ("product" in x ? `<li><a href="/product/${esc(x.product.id)}">${esc(x.product.name)}</a> ${money(x.price)}</li>` : `<li><a href="/product/${esc(x.id)}">${esc(x.name)}</a></li>`)).join("")}</ul>`;
}

function homePage(v: { currency: string; currencies: string[]; cartSize: number; products: PricedProduct[]; ad: Ad | undefined }): string {
  return layout("Home", v.currency, v.currencies, v.cartSize, `<h1>Hot products</h1>${productList(v.products)}${adHtml(v.ad)}`);
}

function productPage(v: {
  currency: string;
  currencies: string[];
  cartSize: number;
  product: Product;
  price: Money;
  recommendations: Product[];
  ad: Ad | undefined;
}): string {
  const p = v.product;
  return layout(
    p.name,
    v.currency,
    v.currencies,
    v.cartSize,
    `<h1>${esc(p.name)}</h1><p>${money(v.price)}</p><p>${esc(p.description)}</p>
<form method="post" action="/cart"><input type="hidden" name="product_id" value="${esc(p.id)}"><select name="quantity">${[1, 2, 3, 4, 5, 10].map((q) => `<option>${q}</option>`).join("")}</select><button>Add to cart</button></form>
<h2>You may also like</h2>${productList(v.recommendations)}${adHtml(v.ad)}`,
  );
}

function cartPage(v: {
  currency: string;
  currencies: string[];
  cartSize: number;
  items: { product: Product; quantity: number; price: Money }[];
  shippingCost: Money;
  total: Money;
  recommendations: Product[];
}): string {
  const rows = v.items.map((it) => `<tr><td>${esc(it.product.name)}</td><td>${it.quantity}</td><td>${money(it.price)}</td></tr>`).join("");
  const c = DEFAULT_ORDER.creditCard;
  return layout(
    "Cart",
    v.currency,
    v.currencies,
    v.cartSize,
    `<h1>Cart</h1><table>${rows}<tr><td>Shipping</td><td></td><td>${money(v.shippingCost)}</td></tr><tr><th>Total</th><td></td><th>${money(v.total)}</th></tr></table>
<form method="post" action="/cart/empty"><button>Empty cart</button></form>
<form method="post" action="/cart/checkout"><input name="email" value="${esc(DEFAULT_ORDER.email)}"><input name="credit_card_number" value="${esc(c.creditCardNumber)}"><input name="credit_card_expiration_month" value="${c.creditCardExpirationMonth}"><input name="credit_card_expiration_year" value="${c.creditCardExpirationYear}"><input name="credit_card_cvv" value="${c.creditCardCvv}"><button>Place order</button></form>
<h2>You may also like</h2>${productList(v.recommendations)}`,
  );
}

function orderPage(v: { currency: string; order: OrderResult; total: Money; recommendations: Product[] }): string {
  return layout(
    "Order",
    v.currency,
    [v.currency],
    0,
    `<h1>Your order is complete!</h1><p>Confirmation #${esc(v.order.orderId)}</p><p>Tracking #${esc(v.order.shippingTrackingId)}</p><p>Total paid: ${money(v.total)}</p>
<h2>You may also like</h2>${productList(v.recommendations)}`,
  );
}
