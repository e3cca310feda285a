// ESLint flat config: the code's style rules and the layer table of DESIGN.md ("arrows point down only"),
// checked on every `npm run lint` (and so by `npm test`).
import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";
import { createNodeResolver, importX } from "eslint-plugin-import-x";

// ---------------------------------------------------------------------------------------------------
// Layers, checked by import-x/no-restricted-paths: it resolves each import to a file (.js specifiers to
// their .ts sources), so every spelling of a forbidden path is caught. ALLOWED below says what each
// runtime/ folder may import; every other runtime/ folder is forbidden to it. The table mirrors
// DESIGN.md, with the edges the code actually has between the middle layers:
//   core       imports nothing else from runtime/
//   protos     (generated control-protocol types) imports only core
//   codec      imports only core
//   telemetry  imports core and protos (log and span messages are protocol types)
//   rpc        imports core and codec
//   control    (the control protocol's channel and typed interfaces, shared by both of its ends)
//              imports core and protos
//   weavelet   imports core, protos, codec, rpc, telemetry, control; never envelope, deployers or cli
//   envelope   imports the layers below the weavelet; never weavelet, deployers or cli
//   deployers  import envelope and everything below the weavelet, never the weavelet, never cli,
//              never each other. The exception is deployers/single: the in-process deployer has no
//              envelope — it hosts every component in the current process — so it may import the
//              weavelet's hosting entry (weavelet/weavelet.ts) and nothing else of the weavelet.
//   cli        imports deployers and the layers below them, never the weavelet
//   index.ts / deployer.ts  the package entries: may import anything; nothing in runtime/ imports them.
// ---------------------------------------------------------------------------------------------------
const RUNTIME_LAYERS = ["core", "protos", "codec", "telemetry", "rpc", "control", "weavelet", "envelope", "deployers", "cli"];
const ENTRIES = ["./runtime/index.ts", "./runtime/deployer.ts"];

/** What each layer may import from runtime/ besides itself. */
const ALLOWED = {
  core: [],
  protos: ["core"],
  codec: ["core"],
  telemetry: ["core", "protos"],
  rpc: ["core", "codec"],
  control: ["core", "protos"],
  weavelet: ["core", "protos", "codec", "rpc", "telemetry", "control"],
  envelope: ["core", "protos", "codec", "rpc", "telemetry", "control"],
  deployers: ["core", "protos", "codec", "rpc", "telemetry", "control", "envelope"],
  cli: ["core", "protos", "codec", "rpc", "telemetry", "control", "envelope", "deployers"],
};

const DEPLOYERS = ["single", "multi", "aws"];

function layerZones() {
  const zones = [];
  for (const layer of RUNTIME_LAYERS) {
    const forbidden = RUNTIME_LAYERS.filter((other) => other !== layer && !ALLOWED[layer].includes(other));
    for (const other of forbidden) {
      const message = `layer rule (DESIGN.md "Layers"): runtime/${layer} may import only ${describe(ALLOWED[layer])} from runtime/.`;
      if (layer === "deployers" && other === "weavelet") {
        for (const deployer of DEPLOYERS) {
          zones.push({
            target: `./runtime/deployers/${deployer}`,
            from: "./runtime/weavelet",
            // deployers/single hosts components in-process: the weavelet's hosting entry is its one way in.
            ...(deployer === "single" ? { except: ["./weavelet.ts"] } : {}),
            message:
              deployer === "single"
                ? `layer rule (DESIGN.md "Layers"): the in-process deployer may import runtime/weavelet/weavelet.ts only, no other weavelet file.`
                : `layer rule (DESIGN.md "Layers"): deployers know the envelope, not the weavelet's insides (runtime/weavelet).`,
          });
        }
        continue;
      }
      zones.push({ target: `./runtime/${layer}`, from: `./runtime/${other}`, message });
    }
    zones.push({
      target: `./runtime/${layer}`,
      from: ENTRIES,
      message: `layer rule (DESIGN.md "Layers"): runtime/index.ts and runtime/deployer.ts are the package entries; code inside runtime/ never imports them.`,
    });
  }
  for (const deployer of DEPLOYERS) {
    zones.push({
      target: `./runtime/deployers/${deployer}`,
      from: DEPLOYERS.filter((d) => d !== deployer).map((d) => `./runtime/deployers/${d}`),
      message: `layer rule (DESIGN.md "Layers"): deployers do not import each other; shared code belongs in a lower layer.`,
    });
  }
  return zones;
}

// infra/ and the AWS runtime agree through one contract file (runtime/deployers/aws/contract.ts). The
// construct users deploy (infra/weaver-app.ts) imports nothing else from runtime/; the CDK app around it
// (infra/stack.ts, infra/bin/) also reads the app's weaver.toml and lists its components at synth time,
// so it may import the config loader and the component lister too.
const INFRA_APP_MAY_IMPORT = [
  "./deployers/aws/contract.ts",
  "./deployers/aws/config.ts",
  "./core/components.ts",
  "./core/config.ts",
  "./core/errors.ts",
];

function infraZones() {
  return [
    {
      target: "./infra/weaver-app.ts",
      from: "./runtime",
      except: ["./deployers/aws/contract.ts"],
      message: `layer rule (DESIGN.md "Layers"): the WeaverApp construct imports from runtime/ only the AWS contract (runtime/deployers/aws/contract.ts).`,
    },
    {
      target: "./infra",
      from: "./runtime",
      except: INFRA_APP_MAY_IMPORT,
      message: `layer rule (DESIGN.md "Layers"): infra/ imports from runtime/ only the AWS contract and, in the CDK app, the config loader and component lister.`,
    },
    {
      target: "./runtime",
      from: "./infra",
      message: `layer rule (DESIGN.md "Layers"): runtime/ never imports infra/ (the CDK app sits beside it, not below it).`,
    },
  ];
}

/** Packages that belong to one folder only: AWS SDK clients to the AWS deployer, the CDK to infra/. */
const AWS_SDK = { group: ["@aws-sdk/*"], message: 'AWS SDK clients belong under runtime/deployers/aws (DESIGN.md "Layers").' };
const CDK = {
  group: ["aws-cdk-lib", "aws-cdk-lib/*", "constructs", "cdk-nag"],
  message: 'aws-cdk-lib and constructs belong under infra/ (DESIGN.md "Layers").',
};

function describe(layers) {
  return layers.length === 0 ? "nothing" : layers.join(", ");
}

export default tseslint.config(
  {
    // runtime/protos/gen/ is generated (npm run gen) and checked against a fresh generation instead.
    ignores: ["dist/**", "node_modules/**", "**/cdk.out/**", "runtime/protos/gen/**"],
  },
  {
    linterOptions: { reportUnusedDisableDirectives: "error" },
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // Type-aware rules chosen for what they catch in async, socket-heavy code at little lint cost.
      "@typescript-eslint/no-floating-promises": [
        "error",
        // node:test's test()/describe() return promises the runner itself tracks.
        { allowForKnownSafeCalls: [{ from: "package", package: "node:test", name: ["test", "it", "describe", "suite"] }] },
      ],
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: false }],
      "@typescript-eslint/await-thenable": "error",
      "@typescript-eslint/switch-exhaustiveness-check": ["error", { considerDefaultExhaustiveForUnions: true }],
    },
  },
  {
    rules: {
      // A leading underscore marks a parameter an interface requires but this implementation ignores.
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }],
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      eqeqeq: ["error", "always", { null: "ignore" }],
      // A `let` read by a closure before its one assignment (a handler set up before the object it
      // serves) cannot be const.
      "prefer-const": ["error", { ignoreReadBeforeAssign: true }],
    },
  },
  {
    plugins: { "import-x": importX },
    settings: {
      "import-x/resolver-next": [createNodeResolver({ extensionAlias: { ".js": [".ts", ".js"] } })],
    },
    rules: {
      "import-x/no-restricted-paths": ["error", { zones: [...layerZones(), ...infraZones()] }],
    },
  },
  {
    // Tests walk synthesized CloudFormation templates and TOML documents as loose JSON; nothing typed
    // there reaches a user.
    files: ["test/**"],
    rules: { "@typescript-eslint/no-explicit-any": "off" },
  },
  {
    files: ["runtime/**", "examples/**", "bench/**"],
    ignores: ["runtime/deployers/aws/**", "runtime/cli/**"],
    rules: { "no-restricted-imports": ["error", { patterns: [AWS_SDK, CDK] }] },
  },
  {
    files: ["runtime/deployers/aws/**", "runtime/cli/**"],
    rules: { "no-restricted-imports": ["error", { patterns: [CDK] }] },
  },
  {
    files: ["infra/**"],
    rules: { "no-restricted-imports": ["error", { patterns: [AWS_SDK] }] },
  },
  {
    // Plain JavaScript: the browser dashboard, a test fixture and this file; no type information.
    files: ["**/*.js", "**/*.mjs"],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ["runtime/deployers/multi/dashboard/**/*.js"],
    languageOptions: { globals: { ...globals.browser } },
  },
  {
    files: ["eslint.config.js", "test/**/*.mjs"],
    languageOptions: { globals: { ...globals.node } },
  },
);
