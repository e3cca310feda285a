// The original Online Boutique's shipped data: products.json (productcatalogservice), the EUR-based
// currency_conversion.json (currencyservice) and the ad service's ads by category.
import type { Ad, Product } from "./types.js";

const usd = (units: number, nanos: number) => ({ currencyCode: "USD", units, nanos });

export const PRODUCTS: readonly Product[] = [
  {
    id: "OLJCESPC7Z",
    name: "Sunglasses",
    description: "Add a modern touch to your outfits with these sleek aviator sunglasses.",
    picture: "/static/img/products/sunglasses.jpg",
    priceUsd: usd(19, 990_000_000),
    categories: ["accessories"],
  },
  {
    id: "66VCHSJNUP",
    name: "Tank Top",
    description: "Perfectly cropped cotton tank, with a scooped neckline.",
    picture: "/static/img/products/tank-top.jpg",
    priceUsd: usd(18, 990_000_000),
    categories: ["clothing", "tops"],
  },
  {
    id: "1YMWWN1N4O",
    name: "Watch",
    description: "This gold-tone stainless steel watch will work with most of your outfits.",
    picture: "/static/img/products/watch.jpg",
    priceUsd: usd(109, 990_000_000),
    categories: ["accessories"],
  },
  {
    id: "L9ECAV7KIM",
    name: "Loafers",
    description: "A neat addition to your summer wardrobe.",
    picture: "/static/img/products/loafers.jpg",
    priceUsd: usd(89, 990_000_000),
    categories: ["footwear"],
  },
  {
    id: "2ZYFJ3GM2N",
    name: "Hairdryer",
    description: "This lightweight hairdryer has 3 heat and speed settings. It's perfect for travel.",
    picture: "/static/img/products/hairdryer.jpg",
    priceUsd: usd(24, 990_000_000),
    categories: ["hair", "beauty"],
  },
  {
    id: "0PUK6V6EV0",
    name: "Candle Holder",
    description: "This small but intricate candle holder is an excellent gift.",
    picture: "/static/img/products/candle-holder.jpg",
    priceUsd: usd(18, 990_000_000),
    categories: ["decor", "home"],
  },
  {
    id: "LS4PSXUNUM",
    name: "Salt & Pepper Shakers",
    description: "Add some flavor to your kitchen.",
    picture: "/static/img/products/salt-and-pepper-shakers.jpg",
    priceUsd: usd(18, 490_000_000),
    categories: ["kitchen"],
  },
  {
    id: "9SIQT8TOJO",
    name: "Bamboo Glass Jar",
    description: "This bamboo glass jar can hold 57 oz (1.7 l) and is perfect for any kitchen.",
    picture: "/static/img/products/bamboo-glass-jar.jpg",
    priceUsd: usd(5, 490_000_000),
    categories: ["kitchen"],
  },
  {
    id: "6E92ZMYYFZ",
    name: "Mug",
    description: "A simple mug with a mustard interior.",
    picture: "/static/img/products/mug.jpg",
    priceUsd: usd(8, 990_000_000),
    categories: ["kitchen"],
  },
];

/** Units of each currency per 1 EUR (the original's currency_conversion.json). */
export const EUR_RATES: Readonly<Record<string, number>> = {
  EUR: 1.0,
  USD: 1.1305,
  JPY: 126.4,
  BGN: 1.9558,
  CZK: 25.592,
  DKK: 7.4609,
  GBP: 0.8597,
  HUF: 315.51,
  PLN: 4.3058,
  RON: 4.7626,
  SEK: 10.5375,
  CHF: 1.136,
  ISK: 136.8,
  NOK: 9.804,
  HRK: 7.421,
  RUB: 74.4208,
  TRY: 6.1247,
  AUD: 1.6072,
  BRL: 4.2682,
  CAD: 1.5128,
  CNY: 7.5857,
  HKD: 8.8743,
  IDR: 15999.4,
  ILS: 4.0875,
  INR: 79.432,
  KRW: 1275.05,
  MXN: 21.7999,
  MYR: 4.6289,
  NZD: 1.6679,
  PHP: 59.083,
  SGD: 1.5349,
  THB: 36.012,
  ZAR: 16.0583,
};

/** The currencies the frontend offers (the original frontend's whitelist). */
export const FRONTEND_CURRENCIES: readonly string[] = ["USD", "EUR", "CAD", "JPY", "GBP", "TRY"];

/** The ad service's ads, by product category. */
export const ADS_BY_CATEGORY: Readonly<Record<string, readonly Ad[]>> = {
  clothing: [{ redirectUrl: "/product/66VCHSJNUP", text: "Tank top for sale. 20% off." }],
  accessories: [{ redirectUrl: "/product/1YMWWN1N4O", text: "Watch for sale. Buy one, get second kit for free" }],
  footwear: [{ redirectUrl: "/product/L9ECAV7KIM", text: "Loafers for sale. Buy one, get second one for free" }],
  hair: [{ redirectUrl: "/product/2ZYFJ3GM2N", text: "Hairdryer for sale. 50% off." }],
  decor: [{ redirectUrl: "/product/0PUK6V6EV0", text: "Candle holder for sale. 30% off." }],
  kitchen: [
    { redirectUrl: "/product/9SIQT8TOJO", text: "Bamboo glass jar for sale. 10% off." },
    { redirectUrl: "/product/6E92ZMYYFZ", text: "Mug for sale. Buy two, get third one for free" },
  ],
};
