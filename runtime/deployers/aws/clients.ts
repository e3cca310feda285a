import { ApplicationAutoScalingClient } from "@aws-sdk/client-application-auto-scaling";
import { CloudFormationClient } from "@aws-sdk/client-cloudformation";
import { CloudWatchClient } from "@aws-sdk/client-cloudwatch";
import { CloudWatchLogsClient } from "@aws-sdk/client-cloudwatch-logs";
import { ECSClient } from "@aws-sdk/client-ecs";
import { ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { ServiceDiscoveryClient } from "@aws-sdk/client-servicediscovery";
import type * as XRaySdk from "@aws-sdk/client-xray";

/** Attempts per AWS call, the first included; throttling and 5xx errors are retried with backoff. */
const MAX_ATTEMPTS = Number(process.env["TSWEAVER_AWS_MAX_ATTEMPTS"] ?? 8);

/**
 * Settings every client shares: the region (`[aws] region` when the app names one, else the SDK's own
 * chain: AWS_REGION (or AWS_DEFAULT_REGION), then the profile's region in ~/.aws/config, then instance metadata), the standard
 * retry strategy (backoff with jitter on throttling and transient errors), and a custom endpoint when
 * AWS_ENDPOINT_URL is set (LocalStack, an emulator).
 */
function common(configured: string | undefined): { region?: string; maxAttempts: number; endpoint?: string } {
  const endpoint = process.env["AWS_ENDPOINT_URL"];
  // The SDK reads AWS_REGION only; AWS_DEFAULT_REGION (the AWS CLI's) counts too, below AWS_REGION.
  const region = configured ?? (process.env["AWS_REGION"] ? undefined : process.env["AWS_DEFAULT_REGION"]);
  return { ...(region ? { region } : {}), maxAttempts: MAX_ATTEMPTS, ...(endpoint ? { endpoint } : {}) };
}

/** Sees every request an AWS client sends: `api` is `<IAM prefix>:<Action>`, e.g. "servicediscovery:ListInstances". */
export type AwsCallObserver = (api: string) => void;

/** IAM service prefixes by SDK client name (the names AWS's throttling limits and IAM policies use). */
const IAM_PREFIX: Readonly<Record<string, string>> = {
  ECSClient: "ecs",
  ServiceDiscoveryClient: "servicediscovery",
  ElasticLoadBalancingV2Client: "elasticloadbalancing",
  CloudFormationClient: "cloudformation",
  CloudWatchLogsClient: "logs",
  ApplicationAutoScalingClient: "application-autoscaling",
  SecretsManagerClient: "secretsmanager",
  CloudWatchClient: "cloudwatch",
  XRayClient: "xray",
};

/** The part of a client's middleware stack the observer uses (each client types it for its own commands). */
interface ObservableStack {
  add(
    mw: (
      next: (args: unknown) => Promise<unknown>,
      context: { clientName?: string; commandName?: string },
    ) => (args: unknown) => Promise<unknown>,
    options: { step: "deserialize"; name: string },
  ): void;
}

/**
 * Counts requests as they go out: a middleware of the deserialize step runs once per attempt (retries
 * included), for every command and every page a paginator fetches, so the count is what AWS sees.
 */
function observed<C extends { middlewareStack: unknown }>(client: C, observe: AwsCallObserver | undefined): C {
  if (observe === undefined) return client;
  (client.middlewareStack as ObservableStack).add(
    (next, context) => (args) => {
      const name = context.clientName ?? "";
      observe(`${IAM_PREFIX[name] ?? name}:${(context.commandName ?? "").replace(/Command$/, "")}`);
      return next(args);
    },
    { step: "deserialize", name: "tsweaverCallObserver" },
  );
  return client;
}

/** One client per service, created on first use. */
export class AwsClients {
  /**
   * `region`: the app's `[aws] region`; undefined resolves it as the AWS SDK and CDK do.
   * `observe`: told of every request any of these clients sends (call budgets, tests).
   */
  constructor(
    private readonly region?: string,
    private readonly observe?: AwsCallObserver,
  ) {}

  private _ecs: ECSClient | undefined;
  private _sd: ServiceDiscoveryClient | undefined;
  private _elb: ElasticLoadBalancingV2Client | undefined;
  private _cfn: CloudFormationClient | undefined;
  private _logs: CloudWatchLogsClient | undefined;
  private _scaling: ApplicationAutoScalingClient | undefined;
  private _secrets: SecretsManagerClient | undefined;

  get ecs(): ECSClient {
    return (this._ecs ??= observed(new ECSClient(common(this.region)), this.observe));
  }
  get serviceDiscovery(): ServiceDiscoveryClient {
    // DiscoverInstances goes to a "data-" host prefix, which a custom endpoint does not resolve.
    return (this._sd ??= observed(
      new ServiceDiscoveryClient({
        ...common(this.region),
        disableHostPrefix: process.env["AWS_ENDPOINT_URL"] !== undefined,
      }),
      this.observe,
    ));
  }
  get elb(): ElasticLoadBalancingV2Client {
    return (this._elb ??= observed(new ElasticLoadBalancingV2Client(common(this.region)), this.observe));
  }
  get cloudFormation(): CloudFormationClient {
    return (this._cfn ??= observed(new CloudFormationClient(common(this.region)), this.observe));
  }
  get logs(): CloudWatchLogsClient {
    return (this._logs ??= observed(new CloudWatchLogsClient(common(this.region)), this.observe));
  }
  /** The region the clients talk to, as resolved; an error names how to set one when none is found. */
  async resolvedRegion(): Promise<string> {
    try {
      return await this.cloudFormation.config.region();
    } catch {
      throw new Error("no AWS region: set [aws] region in weaver.toml, AWS_REGION, or a region in your AWS profile (aws configure)");
    }
  }
  get scaling(): ApplicationAutoScalingClient {
    return (this._scaling ??= observed(new ApplicationAutoScalingClient(common(this.region)), this.observe));
  }
  get secrets(): SecretsManagerClient {
    return (this._secrets ??= observed(new SecretsManagerClient(common(this.region)), this.observe));
  }
  private _cloudWatch: CloudWatchClient | undefined;
  get cloudWatch(): CloudWatchClient {
    return (this._cloudWatch ??= observed(new CloudWatchClient(common(this.region)), this.observe));
  }
  private _xray: Promise<XRayApi> | undefined;
  /**
   * The X-Ray client and its commands, loaded on first use: only `tsweaver aws dashboard` of an app with
   * `[aws] tracing = "xray"` reads X-Ray, so @aws-sdk/client-xray is needed only there.
   */
  xray(): Promise<XRayApi> {
    return (this._xray ??= import("@aws-sdk/client-xray").then(
      (sdk) => ({ sdk, client: observed(new sdk.XRayClient(common(this.region)), this.observe) }),
      (err: NodeJS.ErrnoException) => {
        this._xray = undefined;
        if (err.code !== "ERR_MODULE_NOT_FOUND") throw err;
        throw new Error(
          'reading traces from X-Ray ([aws] tracing = "xray") needs @aws-sdk/client-xray, an optional peer dependency of tsweaver: npm install @aws-sdk/client-xray',
        );
      },
    ));
  }
}

/** The X-Ray SDK module (loaded lazily, see {@link AwsClients.xray}) and a client of it. */
export interface XRayApi {
  readonly sdk: typeof XRaySdk;
  readonly client: XRaySdk.XRayClient;
}

/** An AWS call failed (after the SDK's retries); the message names the API and the resource. */
export class AwsCallError extends Error {
  override readonly name = "AwsCallError";
  constructor(
    readonly api: string,
    readonly resource: string,
    readonly awsError: string,
    message: string,
  ) {
    super(message);
  }
}

const HINTS: Record<string, string> = {
  AccessDeniedException: "the task role lacks this permission; check the stack's IAM policy (cdk deploy the current infra/)",
  AccessDenied: "the credentials lack this permission",
  UnrecognizedClientException: "the AWS credentials are invalid or expired",
  ExpiredTokenException: "the AWS credentials expired; refresh them",
  ServiceNotFoundException: "the resource is gone; was the stack deleted or changed? (cdk deploy)",
  ClusterNotFoundException: "the ECS cluster does not exist; deploy the stack first (cdk deploy)",
  ValidationError: "check the stack name (--stack or [aws] stack in weaver.toml) and region",
};

/** Hints for errors the SDK raises before any request (no name to key on). */
function localHint(message: string): string | undefined {
  if (/Region is missing/i.test(message)) return "set [aws] region in weaver.toml, AWS_REGION, or a region in your AWS profile";
  return undefined;
}

/** Runs one AWS call; failures become an AwsCallError naming `api` and `resource`, with a hint. */
export async function callAws<T>(api: string, resource: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const e = err as Error & { name: string };
    const hint = HINTS[e.name] ?? localHint(e.message);
    throw new AwsCallError(api, resource, e.name, `${api} on ${resource} failed: ${e.name}: ${e.message}${hint ? ` (${hint})` : ""}`);
  }
}

/**
 * The pages of an SDK paginator, each fetched through `call` (so each page is counted and a failure
 * names `api` and `resource`). Lists that can exceed a page are only read this way: a count taken
 * from a first page goes wrong past 100.
 */
export async function* awsPages<P>(
  api: string,
  resource: string,
  paginator: AsyncIterable<P>,
  call: <T>(api: string, resource: string, fn: () => Promise<T>) => Promise<T> = callAws,
): AsyncGenerator<P> {
  const pages = paginator[Symbol.asyncIterator]();
  for (;;) {
    const next = await call(api, resource, () => pages.next());
    if (next.done === true) return;
    yield next.value;
  }
}
