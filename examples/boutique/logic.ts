// The services' behaviour as plain functions and classes, free of any transport: the tsweaver
// components (components.ts) and the gRPC microservices (bench/boutique) both run exactly this code.
import { randomInt, randomUUID } from "node:crypto";
import { ADS_BY_CATEGORY, EUR_RATES, PRODUCTS } from "./data.js";
import {
  type Ad,
  type Address,
  BoutiqueError,
  type Cart,
  type CartItem,
  type CheckoutDeps,
  type CreditCardInfo,
  type Log,
  type Money,
  type OrderItem,
  type OrderResult,
  type PlaceOrderRequest,
  type Product,
} from "./types.js";

const NANOS_PER_UNIT = 1_000_000_000;

// ---------------------------------------------------------------------------------------------------
// Money (the original's frontend/money package)

/** l + r; both must have the same currency. */
export function sumMoney(l: Money, r: Money): Money {
  if (l.currencyCode !== r.currencyCode)
    throw new BoutiqueError("MismatchingCurrency", `cannot add ${l.currencyCode} and ${r.currencyCode}`);
  let units = l.units + r.units;
  let nanos = l.nanos + r.nanos;
  if ((units === 0 && nanos === 0) || (units > 0 && nanos >= 0) || (units < 0 && nanos <= 0)) {
    units += Math.trunc(nanos / NANOS_PER_UNIT);
    nanos %= NANOS_PER_UNIT;
  } else if (units > 0) {
    units--;
    nanos += NANOS_PER_UNIT;
  } else {
    units++;
    nanos -= NANOS_PER_UNIT;
  }
  return { currencyCode: l.currencyCode, units, nanos };
}

/** m × n, by repeated addition (the original's MultiplySlow). */
export function multiplyMoney(m: Money, n: number): Money {
  let out: Money = { currencyCode: m.currencyCode, units: 0, nanos: 0 };
  for (let i = 0; i < n; i++) out = sumMoney(out, m);
  return out;
}

/** "12.34" style rendering. */
export function formatMoney(m: Money): string {
  return `${m.units}.${String(Math.floor(m.nanos / 10_000_000)).padStart(2, "0")}`;
}

// ---------------------------------------------------------------------------------------------------
// Currency (currencyservice/server.js: convert through EUR, carrying fractions into nanos)

function carry(amount: { units: number; nanos: number }): { units: number; nanos: number } {
  amount.nanos += (amount.units % 1) * NANOS_PER_UNIT;
  amount.units = Math.floor(amount.units) + Math.floor(amount.nanos / NANOS_PER_UNIT);
  amount.nanos = amount.nanos % NANOS_PER_UNIT;
  return amount;
}

export function supportedCurrencies(): string[] {
  return Object.keys(EUR_RATES);
}

export function convertMoney(from: Money, toCode: string): Money {
  const fromRate = EUR_RATES[from.currencyCode];
  const toRate = EUR_RATES[toCode];
  if (fromRate === undefined) throw new BoutiqueError("UnsupportedCurrency", `unsupported currency ${from.currencyCode}`);
  if (toRate === undefined) throw new BoutiqueError("UnsupportedCurrency", `unsupported currency ${toCode}`);
  const euros = carry({ units: from.units / fromRate, nanos: from.nanos / fromRate });
  euros.nanos = Math.round(euros.nanos);
  const result = carry({ units: euros.units * toRate, nanos: euros.nanos * toRate });
  return { currencyCode: toCode, units: Math.floor(result.units), nanos: Math.floor(result.nanos) };
}

// ---------------------------------------------------------------------------------------------------
// Product catalog

export function getProduct(id: string): Product {
  const p = PRODUCTS.find((x) => x.id === id);
  if (!p) throw new BoutiqueError("ProductNotFound", `no product with ID ${id}`, 404);
  return p;
}

export function searchProducts(query: string): Product[] {
  const q = query.toLowerCase();
  return PRODUCTS.filter((p) => p.name.toLowerCase().includes(q) || p.description.toLowerCase().includes(q));
}

// ---------------------------------------------------------------------------------------------------
// Cart (cartservice's in-memory store)

export class CartStore {
  private readonly carts = new Map<string, Map<string, number>>();

  add(userId: string, item: CartItem): void {
    if (!(item.quantity > 0)) throw new BoutiqueError("InvalidArgument", `quantity must be positive, got ${item.quantity}`);
    let cart = this.carts.get(userId);
    if (!cart) this.carts.set(userId, (cart = new Map()));
    cart.set(item.productId, (cart.get(item.productId) ?? 0) + item.quantity);
  }

  get(userId: string): Cart {
    const cart = this.carts.get(userId);
    return { userId, items: cart ? [...cart].map(([productId, quantity]) => ({ productId, quantity })) : [] };
  }

  empty(userId: string): void {
    this.carts.delete(userId);
  }
}

// ---------------------------------------------------------------------------------------------------
// Recommendation (recommendationservice: up to 5 random products the user is not looking at)

export function recommend(all: readonly Product[], exclude: readonly string[], max = 5): string[] {
  const ids = all.map((p) => p.id).filter((id) => !exclude.includes(id));
  for (let i = ids.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  return ids.slice(0, max);
}

// ---------------------------------------------------------------------------------------------------
// Shipping (shippingservice: a flat USD 8.99 quote for a non-empty order, a random tracking id)

export function shippingQuote(items: readonly CartItem[]): Money {
  const count = items.reduce((n, it) => n + it.quantity, 0);
  return count === 0 ? { currencyCode: "USD", units: 0, nanos: 0 } : { currencyCode: "USD", units: 8, nanos: 990_000_000 };
}

export function trackingId(address: Address): string {
  const letter = () => String.fromCharCode(65 + randomInt(26));
  const digits = (n: number) => Array.from({ length: n }, () => randomInt(10)).join("");
  const salt = `${address.streetAddress}${address.city}${address.state}`.length;
  return `${letter()}${letter()}-${salt}${digits(7)}-${digits(7)}`;
}

// ---------------------------------------------------------------------------------------------------
// Payment (paymentservice/charge.js: valid number, VISA or MasterCard only, not expired)

/** The card's brand from its number's prefix and length, or undefined if none matches. */
export function cardType(number: string): string | undefined {
  const n = number;
  if (/^4/.test(n) && [13, 16, 19].includes(n.length)) return "visa";
  if (/^(5[1-5]|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720)/.test(n) && n.length === 16) return "mastercard";
  if (/^3[47]/.test(n) && n.length === 15) return "american-express";
  if (/^(6011|65|64[4-9])/.test(n) && [16, 19].includes(n.length)) return "discover";
  if (/^35(2[89]|[3-8]\d)/.test(n) && n.length >= 16 && n.length <= 19) return "jcb";
  return undefined;
}

export function luhnValid(number: string): boolean {
  if (!/^\d{12,19}$/.test(number)) return false;
  let sum = 0;
  for (let i = 0; i < number.length; i++) {
    let d = number.charCodeAt(number.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** Validates the card and "charges" it; returns a transaction id. Throws BoutiqueError (400) if refused. */
export function charge(amount: Money, card: CreditCardInfo, log: Log, now = new Date()): string {
  const number = card.creditCardNumber.replace(/[\s-]/g, "");
  const type = cardType(number);
  if (!luhnValid(number) || type === undefined) throw new BoutiqueError("InvalidCreditCard", "Credit card info is invalid");
  if (type !== "visa" && type !== "mastercard") {
    throw new BoutiqueError("UnacceptedCreditCard", `Sorry, we cannot process ${type} credit cards. Only VISA or MasterCard is accepted.`);
  }
  const month = card.creditCardExpirationMonth;
  const year = card.creditCardExpirationYear;
  if (now.getFullYear() * 12 + now.getMonth() + 1 > year * 12 + month) {
    throw new BoutiqueError("ExpiredCreditCard", `Your credit card (ending ${number.slice(-4)}) expired on ${month}/${year}`);
  }
  log.info("Transaction processed", { card: `${type} ending ${number.slice(-4)}`, amount: `${amount.currencyCode}${formatMoney(amount)}` });
  return randomUUID();
}

// ---------------------------------------------------------------------------------------------------
// Email (emailservice: logs instead of sending)

export function sendConfirmation(email: string, order: OrderResult, log: Log): void {
  log.info("order confirmation email sent", {
    email,
    orderId: order.orderId,
    trackingId: order.shippingTrackingId,
    items: order.items.length,
  });
}

// ---------------------------------------------------------------------------------------------------
// Ads (adservice: ads for the context's categories, else 2 random ones)

const ALL_ADS: readonly Ad[] = Object.values(ADS_BY_CATEGORY).flat();

export function ads(contextKeys: readonly string[]): Ad[] {
  const out = contextKeys.flatMap((k) => ADS_BY_CATEGORY[k] ?? []);
  if (out.length > 0) return out;
  return [ALL_ADS[randomInt(ALL_ADS.length)]!, ALL_ADS[randomInt(ALL_ADS.length)]!];
}

// ---------------------------------------------------------------------------------------------------
// Checkout (checkoutservice.PlaceOrder): cart → catalog prices → currency → shipping → payment →
// ship → empty cart → email.

export async function placeOrder(d: CheckoutDeps, req: PlaceOrderRequest, log: Log): Promise<OrderResult> {
  const cart = await d.cart.getCart(req.userId);
  const items: OrderItem[] = await Promise.all(
    cart.items.map(async (item) => {
      const product = await d.catalog.getProduct(item.productId);
      return { item, cost: await d.currency.convert(product.priceUsd, req.userCurrency) };
    }),
  );
  const shippingUsd = await d.shipping.getQuote(req.address, cart.items);
  const shippingCost = await d.currency.convert(shippingUsd, req.userCurrency);
  let total: Money = { currencyCode: req.userCurrency, units: 0, nanos: 0 };
  total = sumMoney(total, shippingCost);
  for (const it of items) total = sumMoney(total, multiplyMoney(it.cost, it.item.quantity));
  const transactionId = await d.payment.charge(total, req.creditCard);
  log.info("payment went through", { transactionId });
  const shippingTrackingId = await d.shipping.shipOrder(req.address, cart.items);
  await d.cart.emptyCart(req.userId);
  const order: OrderResult = { orderId: randomUUID(), shippingTrackingId, shippingCost, shippingAddress: req.address, items };
  try {
    await d.email.sendOrderConfirmation(req.email, order);
  } catch (err) {
    log.info("failed to send order confirmation", { email: req.email, error: (err as Error).message });
  }
  return order;
}
