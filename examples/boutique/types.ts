// The Online Boutique's data types and service interfaces, shared by the tsweaver components
// (components.ts), the frontend (frontend.ts) and the gRPC microservices of bench/boutique. Field names
// follow the original's demo.proto (camelCased, as protobufjs loads it).

/** An amount of money: `units` whole units plus `nanos` (10^-9 units) of `currencyCode` (ISO 4217). */
export interface Money {
  currencyCode: string;
  units: number;
  nanos: number;
}

export interface Product {
  id: string;
  name: string;
  description: string;
  picture: string;
  priceUsd: Money;
  categories: string[];
}

export interface CartItem {
  productId: string;
  quantity: number;
}

export interface Cart {
  userId: string;
  items: CartItem[];
}

export interface Address {
  streetAddress: string;
  city: string;
  state: string;
  country: string;
  zipCode: number;
}

export interface CreditCardInfo {
  creditCardNumber: string;
  creditCardCvv: number;
  creditCardExpirationYear: number;
  creditCardExpirationMonth: number;
}

export interface OrderItem {
  item: CartItem;
  cost: Money;
}

export interface OrderResult {
  orderId: string;
  shippingTrackingId: string;
  shippingCost: Money;
  shippingAddress: Address;
  items: OrderItem[];
}

export interface PlaceOrderRequest {
  userId: string;
  userCurrency: string;
  address: Address;
  email: string;
  creditCard: CreditCardInfo;
}

export interface Ad {
  redirectUrl: string;
  text: string;
}

// ---------------------------------------------------------------------------------------------------
// The services (one component each in tsweaver, one gRPC server each in bench/boutique).

export interface ProductCatalogService {
  listProducts(): Promise<Product[]>;
  getProduct(id: string): Promise<Product>;
  searchProducts(query: string): Promise<Product[]>;
}

export interface CurrencyService {
  getSupportedCurrencies(): Promise<string[]>;
  convert(from: Money, toCode: string): Promise<Money>;
}

export interface CartService {
  addItem(userId: string, item: CartItem): Promise<void>;
  getCart(userId: string): Promise<Cart>;
  emptyCart(userId: string): Promise<void>;
}

export interface RecommendationService {
  listRecommendations(userId: string, productIds: string[]): Promise<string[]>;
}

export interface ShippingService {
  getQuote(address: Address, items: CartItem[]): Promise<Money>;
  shipOrder(address: Address, items: CartItem[]): Promise<string>;
}

export interface PaymentService {
  charge(amount: Money, card: CreditCardInfo): Promise<string>;
}

export interface EmailService {
  sendOrderConfirmation(email: string, order: OrderResult): Promise<void>;
}

export interface CheckoutService {
  placeOrder(req: PlaceOrderRequest): Promise<OrderResult>;
}

export interface AdService {
  getAds(contextKeys: string[]): Promise<Ad[]>;
}

/** What the frontend talks to. */
export interface FrontendServices {
  catalog: ProductCatalogService;
  currency: CurrencyService;
  cart: CartService;
  recommendation: RecommendationService;
  shipping: ShippingService;
  checkout: CheckoutService;
  ad: AdService;
}

/** What checkout talks to. */
export interface CheckoutDeps {
  catalog: ProductCatalogService;
  currency: CurrencyService;
  cart: CartService;
  shipping: ShippingService;
  payment: PaymentService;
  email: EmailService;
}

/** Where a service writes its log lines (ctx.logger in tsweaver, stdout JSON in bench/boutique). */
export interface Log {
  info(msg: string, attrs?: Record<string, string | number>): void;
}

/** An error a caller caused (bad card, unknown product, ...): the frontend answers it with 4xx. */
export class BoutiqueError extends Error {
  constructor(
    name: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = name;
  }
}
