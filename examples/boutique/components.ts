// The Online Boutique's services as tsweaver components: a name, the interface from types.ts, and an
// implementation that runs logic.ts. Where they run (one process, one process each, Fargate tasks) is
// the deployer's business; ctx.get returns the local instance or a stub with the same type.
import { component, register, type ComponentRef, type Context } from "tsweaver";
import { PRODUCTS } from "./data.js";
import * as logic from "./logic.js";
import type {
  Ad,
  AdService,
  Address,
  Cart,
  CartItem,
  CartService,
  CheckoutDeps,
  CheckoutService,
  CreditCardInfo,
  CurrencyService,
  EmailService,
  Money,
  OrderResult,
  PaymentService,
  PlaceOrderRequest,
  Product,
  ProductCatalogService,
  RecommendationService,
  ShippingService,
} from "./types.js";

export const ProductCatalog = component<ProductCatalogService>("boutique/ProductCatalog", {
  methods: ["listProducts", "getProduct", "searchProducts"],
});
export const Currency = component<CurrencyService>("boutique/Currency", { methods: ["getSupportedCurrencies", "convert"] });
export const CartComponent = component<CartService>("boutique/Cart", {
  methods: ["addItem", "getCart", "emptyCart"],
  noRetry: ["addItem"],
});
export const Recommendation = component<RecommendationService>("boutique/Recommendation", { methods: ["listRecommendations"] });
export const Shipping = component<ShippingService>("boutique/Shipping", { methods: ["getQuote", "shipOrder"], noRetry: ["shipOrder"] });
export const Payment = component<PaymentService>("boutique/Payment", { methods: ["charge"], noRetry: ["charge"] });
export const Email = component<EmailService>("boutique/Email", { methods: ["sendOrderConfirmation"], noRetry: ["sendOrderConfirmation"] });
export const Checkout = component<CheckoutService>("boutique/Checkout", { methods: ["placeOrder"], noRetry: ["placeOrder"] });
export const AdComponent = component<AdService>("boutique/Ad", { methods: ["getAds"] });

class ProductCatalogImpl implements ProductCatalogService {
  async listProducts(): Promise<Product[]> {
    return PRODUCTS as Product[];
  }
  async getProduct(id: string): Promise<Product> {
    return logic.getProduct(id);
  }
  async searchProducts(query: string): Promise<Product[]> {
    return logic.searchProducts(query);
  }
}
register(ProductCatalog, ProductCatalogImpl);

class CurrencyImpl implements CurrencyService {
  async getSupportedCurrencies(): Promise<string[]> {
    return logic.supportedCurrencies();
  }
  async convert(from: Money, toCode: string): Promise<Money> {
    return logic.convertMoney(from, toCode);
  }
}
register(Currency, CurrencyImpl);

/** Carts live in this component's memory (one store per replica, like the original without Redis). */
class CartImpl implements CartService {
  private readonly store = new logic.CartStore();
  async addItem(userId: string, item: CartItem): Promise<void> {
    this.store.add(userId, item);
  }
  async getCart(userId: string): Promise<Cart> {
    return this.store.get(userId);
  }
  async emptyCart(userId: string): Promise<void> {
    this.store.empty(userId);
  }
}
register(CartComponent, CartImpl);

class RecommendationImpl implements RecommendationService {
  constructor(private readonly ctx: Context) {}
  async listRecommendations(_userId: string, productIds: string[]): Promise<string[]> {
    const catalog = await this.ctx.get(ProductCatalog);
    return logic.recommend(await catalog.listProducts(), productIds);
  }
}
register(Recommendation, RecommendationImpl);

class ShippingImpl implements ShippingService {
  constructor(private readonly ctx: Context) {}
  async getQuote(_address: Address, items: CartItem[]): Promise<Money> {
    return logic.shippingQuote(items);
  }
  async shipOrder(address: Address, _items: CartItem[]): Promise<string> {
    const id = logic.trackingId(address);
    this.ctx.logger.info("order shipped", { trackingId: id });
    return id;
  }
}
register(Shipping, ShippingImpl);

class PaymentImpl implements PaymentService {
  constructor(private readonly ctx: Context) {}
  async charge(amount: Money, card: CreditCardInfo): Promise<string> {
    return logic.charge(amount, card, this.ctx.logger);
  }
}
register(Payment, PaymentImpl);

class EmailImpl implements EmailService {
  constructor(private readonly ctx: Context) {}
  async sendOrderConfirmation(email: string, order: OrderResult): Promise<void> {
    logic.sendConfirmation(email, order, this.ctx.logger);
  }
}
register(Email, EmailImpl);

class CheckoutImpl implements CheckoutService {
  private deps: Promise<CheckoutDeps> | undefined;
  constructor(private readonly ctx: Context) {}
  async placeOrder(req: PlaceOrderRequest): Promise<OrderResult> {
    this.deps ??= getAll(this.ctx, {
      catalog: ProductCatalog,
      currency: Currency,
      cart: CartComponent,
      shipping: Shipping,
      payment: Payment,
      email: Email,
    });
    return logic.placeOrder(await this.deps, req, this.ctx.logger);
  }
}
register(Checkout, CheckoutImpl);

class AdImpl implements AdService {
  async getAds(contextKeys: string[]): Promise<Ad[]> {
    return logic.ads(contextKeys);
  }
}
register(AdComponent, AdImpl);

/** ctx.get for every reference of a record: `{ a: RefA, b: RefB }` → `{ a: A, b: B }`. */
export async function getAll<T extends { [K in keyof T]: object }>(ctx: Context, refs: { [K in keyof T]: ComponentRef<T[K]> }): Promise<T> {
  const entries = await Promise.all(Object.entries(refs).map(async ([k, ref]) => [k, await ctx.get(ref as ComponentRef<object>)] as const));
  return Object.fromEntries(entries) as T;
}
