// gRPC glue for the microservices version: loads boutique.proto with protobufjs (a dependency already;
// this is what @grpc/proto-loader does: fromObject+encode to serialize, decode+toObject to deserialize),
// serves a service's handlers, and gives the frontend and checkout client objects implementing the same
// TypeScript interfaces as the tsweaver components.
import * as grpc from "@grpc/grpc-js";
import path from "node:path";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import type {
  AdService,
  CartService,
  CheckoutService,
  CurrencyService,
  EmailService,
  PaymentService,
  ProductCatalogService,
  RecommendationService,
  ShippingService,
} from "../../examples/boutique/types.js";

/** The proto file (source tree; dist/bench/boutique → bench/boutique). */
export const PROTO_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../bench/boutique/boutique.proto");

const root = protobuf.loadSync(PROTO_FILE);
const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true, arrays: true };

/** The service names, as in the proto and as the bench names the processes. */
export const SERVICES = {
  catalog: "ProductCatalogService",
  currency: "CurrencyService",
  cart: "CartService",
  recommendation: "RecommendationService",
  shipping: "ShippingService",
  payment: "PaymentService",
  email: "EmailService",
  checkout: "CheckoutService",
  ad: "AdService",
} as const;
export type ServiceKey = keyof typeof SERVICES;

const definitions = new Map<string, grpc.ServiceDefinition>();

/** grpc-js's service definition for `hipstershop.<name>`, built from the proto's reflection. */
export function definition(name: string): grpc.ServiceDefinition {
  let def = definitions.get(name);
  if (def) return def;
  const svc = root.lookupService(`hipstershop.${name}`);
  const out: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const m of svc.methodsArray) {
    m.resolve();
    const req = m.resolvedRequestType!;
    const res = m.resolvedResponseType!;
    out[m.name] = {
      path: `/hipstershop.${name}/${m.name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: (v: object) => Buffer.from(req.encode(req.fromObject(v)).finish()),
      requestDeserialize: (b: Buffer) => req.toObject(req.decode(b), TO_OBJECT),
      responseSerialize: (v: object) => Buffer.from(res.encode(res.fromObject(v)).finish()),
      responseDeserialize: (b: Buffer) => res.toObject(res.decode(b), TO_OBJECT),
    };
  }
  def = out as grpc.ServiceDefinition;
  definitions.set(name, def);
  return def;
}

// Errors: the error's name travels in the trailers' metadata, its message as the status details.
const ERROR_NAME_KEY = "x-error-name";

function toStatus(err: unknown): Partial<grpc.StatusObject> {
  const e = err instanceof Error ? err : new Error(String(err));
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_NAME_KEY, e.name);
  const client = (e as { status?: number }).status;
  return {
    code: client === 404 ? grpc.status.NOT_FOUND : client !== undefined ? grpc.status.INVALID_ARGUMENT : grpc.status.UNKNOWN,
    details: e.message,
    metadata,
  };
}

function fromStatus(err: grpc.ServiceError): Error {
  const e = new Error(err.details);
  const name = err.metadata?.get(ERROR_NAME_KEY)[0];
  e.name = typeof name === "string" ? name : "GrpcError";
  return e;
}

type Handler = (req: any) => Promise<object>; // eslint-disable-line @typescript-eslint/no-explicit-any -- decoded proto objects

/** Starts a gRPC server for `name` with one async handler per method; resolves to its port. */
export function serve(name: string, handlers: Record<string, Handler>): Promise<number> {
  const server = new grpc.Server();
  const impl: grpc.UntypedServiceImplementation = {};
  for (const method of Object.keys(definition(name))) {
    const h = handlers[method];
    if (!h) throw new Error(`${name}.${method}: no handler`);
    impl[method] = (call: grpc.ServerUnaryCall<unknown, object>, cb: grpc.sendUnaryData<object>) => {
      h(call.request).then(
        (r) => cb(null, r),
        (err: unknown) => cb(toStatus(err)),
      );
    };
  }
  server.addService(definition(name), impl);
  return new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
}

/** A promise-returning unary caller for one service at `address`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- replies are loose protobufjs objects the load generator reads by field
export function caller(name: string, address: string): (method: string, req: object) => Promise<any> {
  const Ctor = grpc.makeGenericClientConstructor(definition(name), name);
  const client = new Ctor(address, grpc.credentials.createInsecure()) as unknown as Record<
    string,
    (req: object, cb: (err: grpc.ServiceError | null, res?: object) => void) => void
  >;
  return (method, req) =>
    new Promise((resolve, reject) => client[method]!.call(client, req, (err, res) => (err ? reject(fromStatus(err)) : resolve(res))));
}

/** Clients with the same interfaces as the tsweaver components. */
export interface Clients {
  catalog: ProductCatalogService;
  currency: CurrencyService;
  cart: CartService;
  recommendation: RecommendationService;
  shipping: ShippingService;
  payment: PaymentService;
  email: EmailService;
  checkout: CheckoutService;
  ad: AdService;
}

/** Clients for the services whose addresses are given (others throw when called). */
export function clients(addresses: Partial<Record<ServiceKey, string>>): Clients {
  const c = (k: ServiceKey) => {
    const addr = addresses[k];
    if (!addr) return () => Promise.reject(new Error(`no address for ${k}`));
    return caller(SERVICES[k], addr);
  };
  const catalog = c("catalog"),
    currency = c("currency"),
    cart = c("cart"),
    rec = c("recommendation"),
    shipping = c("shipping");
  const payment = c("payment"),
    email = c("email"),
    checkout = c("checkout"),
    ad = c("ad");
  return {
    catalog: {
      listProducts: async () => (await catalog("ListProducts", {})).products,
      getProduct: (id) => catalog("GetProduct", { id }),
      searchProducts: async (query) => (await catalog("SearchProducts", { query })).results,
    },
    currency: {
      getSupportedCurrencies: async () => (await currency("GetSupportedCurrencies", {})).currencyCodes,
      convert: (from, toCode) => currency("Convert", { from, toCode }),
    },
    cart: {
      addItem: async (userId, item) => void (await cart("AddItem", { userId, item })),
      getCart: (userId) => cart("GetCart", { userId }),
      emptyCart: async (userId) => void (await cart("EmptyCart", { userId })),
    },
    recommendation: {
      listRecommendations: async (userId, productIds) => (await rec("ListRecommendations", { userId, productIds })).productIds,
    },
    shipping: {
      getQuote: async (address, items) => (await shipping("GetQuote", { address, items })).costUsd,
      shipOrder: async (address, items) => (await shipping("ShipOrder", { address, items })).trackingId,
    },
    payment: { charge: async (amount, creditCard) => (await payment("Charge", { amount, creditCard })).transactionId },
    email: { sendOrderConfirmation: async (email_, order) => void (await email("SendOrderConfirmation", { email: email_, order })) },
    checkout: { placeOrder: async (req) => (await checkout("PlaceOrder", req)).order },
    ad: { getAds: async (contextKeys) => (await ad("GetAds", { contextKeys })).ads },
  };
}
