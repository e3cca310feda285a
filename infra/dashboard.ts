import { ArnFormat, Duration, Stack, Validations } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as actions from "aws-cdk-lib/aws-cloudwatch-actions";
import * as sns from "aws-cdk-lib/aws-sns";
import { Construct } from "constructs";
import { CONTROLPLANE_NAME, ENV, METRICS, versionedServiceName } from "../runtime/deployers/aws/contract.js";
import { nagResource, type WeaverApp } from "./weaver-app.js";

/** Thresholds of the opt-in alarms; an undefined one creates no alarm. */
export interface WeaverAlarmProps {
  /** A group's served calls failing above this fraction over 5 minutes. */
  readonly errorRate?: number | undefined;
  /** A group's p99 served latency above this many ms over 5 minutes. */
  readonly p99Ms?: number | undefined;
  /** At least this many target 5xx responses at the load balancer in 5 minutes. */
  readonly alb5xx?: number | undefined;
  /** At least this many failed control-plane reconcile passes in 5 minutes. */
  readonly reconcileErrors?: number | undefined;
  /** SNS topic every alarm notifies (on alarm and back to OK). */
  readonly topicArn?: string | undefined;
}

export interface WeaverDashboardProps {
  readonly app: WeaverApp;
  readonly appName: string;
  /** Create the CloudWatch dashboard. @default true */
  readonly dashboard?: boolean;
  readonly alarms?: WeaverAlarmProps;
}

const PERIOD = Duration.minutes(1);
const ALARM_PERIOD = Duration.minutes(5);

/**
 * The app in CloudWatch: a dashboard of this version (per group: tasks, CPU and memory from ECS, the
 * replicas registered in Cloud Map from the control plane's EMF metric, served
 * calls per second, error rate and p50/p99 latency from the agents' EMF metrics; the load balancer's
 * requests, 5xx and response time; the control plane's reconcile errors) and the alarms weaver.toml opts
 * into. Group services are named per version, so the dashboard follows the version each `cdk deploy` makes.
 */
export class WeaverDashboard extends Construct {
  readonly dashboard: cloudwatch.Dashboard | undefined;
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: WeaverDashboardProps) {
    super(scope, id);
    const { app, appName } = props;
    const D = METRICS.DIM;
    const groupMetric = (group: string, name: string, statistic: string, label: string) =>
      new cloudwatch.Metric({
        namespace: METRICS.NAMESPACE,
        metricName: name,
        dimensionsMap: { [D.APP]: appName, [D.GROUP]: group, [D.VERSION]: app.version },
        statistic,
        period: PERIOD,
        label,
      });
    const ecsMetric = (group: string, name: string, label: string) =>
      new cloudwatch.Metric({
        namespace: "AWS/ECS",
        metricName: name,
        dimensionsMap: { ClusterName: app.cluster.clusterName, ServiceName: versionedServiceName(group, app.version) },
        statistic: "Average",
        period: PERIOD,
        label,
      });
    const callsPerSecond = (group: string) =>
      new cloudwatch.MathExpression({
        expression: "calls / PERIOD(calls)",
        usingMetrics: { calls: groupMetric(group, METRICS.SERVED_CALLS, "Sum", "calls") },
        label: "served calls/s",
        period: PERIOD,
      });
    const errorRate = (group: string, period: Duration) =>
      new cloudwatch.MathExpression({
        expression: "IF(calls > 0, errors / calls, 0)",
        usingMetrics: {
          calls: groupMetric(group, METRICS.SERVED_CALLS, "Sum", "calls").with({ period }),
          errors: groupMetric(group, METRICS.SERVED_ERRORS, "Sum", "errors").with({ period }),
        },
        label: "error rate",
        period,
      });
    const lb = app.loadBalancer;
    const albMetric = (name: string, statistic: string, label: string) =>
      new cloudwatch.Metric({
        namespace: "AWS/ApplicationELB",
        metricName: name,
        dimensionsMap: { LoadBalancer: lb!.loadBalancerFullName },
        statistic,
        period: PERIOD,
        label,
      });
    const reconcileErrors = new cloudwatch.Metric({
      namespace: METRICS.NAMESPACE,
      metricName: METRICS.RECONCILE_ERRORS,
      dimensionsMap: { [D.APP]: appName },
      statistic: "Sum",
      period: PERIOD,
      label: "reconcile errors",
    });

    if (props.dashboard ?? true) {
      const dashboard = new cloudwatch.Dashboard(this, "Dashboard", {
        dashboardName: `${app.deploymentId}`,
        defaultInterval: Duration.hours(3),
      });
      dashboard.addWidgets(
        new cloudwatch.TextWidget({
          markdown: `# ${appName}, version ${app.version}\nGroups of this version; \`tsweaver aws status\` shows every version and its traffic.`,
          width: 24,
          height: 2,
        }),
      );
      for (const g of app.groups.values()) {
        dashboard.addWidgets(
          new cloudwatch.GraphWidget({
            title: `${g.name}: tasks and registered replicas`,
            left: [
              new cloudwatch.Metric({
                namespace: "ECS/ContainerInsights",
                metricName: "RunningTaskCount",
                dimensionsMap: { ClusterName: app.cluster.clusterName, ServiceName: versionedServiceName(g.name, app.version) },
                statistic: "Average",
                period: PERIOD,
                label: "running",
              }),
              new cloudwatch.Metric({
                namespace: "ECS/ContainerInsights",
                metricName: "DesiredTaskCount",
                dimensionsMap: { ClusterName: app.cluster.clusterName, ServiceName: versionedServiceName(g.name, app.version) },
                statistic: "Average",
                period: PERIOD,
                label: "desired",
              }),
              // Published by the control plane's reconcile (EMF): replicas other replicas can call.
              groupMetric(g.name, METRICS.REGISTERED_REPLICAS, "Average", "registered (Cloud Map)"),
            ],
            width: 6,
          }),
          new cloudwatch.GraphWidget({
            title: `${g.name}: CPU and memory (%)`,
            left: [ecsMetric(g.name, "CPUUtilization", "CPU"), ecsMetric(g.name, "MemoryUtilization", "memory")],
            width: 6,
          }),
          new cloudwatch.GraphWidget({
            title: `${g.name}: served calls/s and error rate`,
            left: [callsPerSecond(g.name)],
            right: [errorRate(g.name, PERIOD)],
            width: 6,
          }),
          new cloudwatch.GraphWidget({
            title: `${g.name}: served latency (ms)`,
            left: [groupMetric(g.name, METRICS.SERVED_LATENCY, "p50", "p50"), groupMetric(g.name, METRICS.SERVED_LATENCY, "p99", "p99")],
            width: 6,
          }),
        );
      }
      if (lb) {
        dashboard.addWidgets(
          new cloudwatch.GraphWidget({
            title: "load balancer: requests and target 5xx",
            left: [albMetric("RequestCount", "Sum", "requests")],
            right: [albMetric("HTTPCode_Target_5XX_Count", "Sum", "target 5xx")],
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: "load balancer: target response time (s)",
            left: [albMetric("TargetResponseTime", "p50", "p50"), albMetric("TargetResponseTime", "p99", "p99")],
            width: 12,
          }),
        );
      }
      dashboard.addWidgets(
        new cloudwatch.GraphWidget({ title: `control plane (${CONTROLPLANE_NAME}): reconcile errors`, left: [reconcileErrors], width: 24 }),
      );
      this.dashboard = dashboard;
    }

    const a = props.alarms ?? {};
    const topic = a.topicArn ? sns.Topic.fromTopicArn(this, "AlarmTopic", a.topicArn) : undefined;
    const alarmNames: string[] = [];
    // Counts alarm at the threshold ("at least N"), rates and latencies above it.
    const add = (id: string, metric: cloudwatch.IMetric, threshold: number, description: string, atLeast = false) => {
      // Named after the deployment: the control plane's rollout reads them by these names.
      const alarmName = `${alarmNamePrefix(app.deploymentId)}${id}`;
      alarmNames.push(alarmName);
      const alarm = new cloudwatch.Alarm(this, id, {
        alarmName,
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: atLeast
          ? cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
          : cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      if (topic) {
        alarm.addAlarmAction(new actions.SnsAction(topic));
        alarm.addOkAction(new actions.SnsAction(topic));
      }
      this.alarms.push(alarm);
    };
    for (const g of app.groups.values()) {
      const id = g.name.replace(/[^A-Za-z0-9]/g, "");
      if (a.errorRate !== undefined) {
        add(`${id}ErrorRate`, errorRate(g.name, ALARM_PERIOD), a.errorRate, `${appName} ${g.name}: served error rate above ${a.errorRate}`);
      }
      if (a.p99Ms !== undefined) {
        add(
          `${id}P99`,
          groupMetric(g.name, METRICS.SERVED_LATENCY, "p99", "p99").with({ period: ALARM_PERIOD }),
          a.p99Ms,
          `${appName} ${g.name}: p99 served latency above ${a.p99Ms} ms`,
        );
      }
    }
    if (a.alb5xx !== undefined && lb) {
      add(
        "Alb5xx",
        albMetric("HTTPCode_Target_5XX_Count", "Sum", "target 5xx").with({ period: ALARM_PERIOD }),
        a.alb5xx,
        `${appName}: target 5xx responses`,
        true,
      );
    }
    if (a.reconcileErrors !== undefined) {
      add(
        "ReconcileErrors",
        reconcileErrors.with({ period: ALARM_PERIOD }),
        a.reconcileErrors,
        `${appName}: control plane reconcile errors`,
        true,
      );
    }
    // The rollout rolls a new version back while one of these is in ALARM (runtime/deployers/aws/controlplane.ts).
    app.controlPlaneTaskDefinition.defaultContainer?.addEnvironment(ENV.ALARMS, JSON.stringify(alarmNames));
    // Granted on this stack's alarm names (whether or not weaver.toml opts into any), not on each alarm's
    // ARN: the grant stays the same as alarms come and go, and no other stack's alarms match the prefix.
    const ownAlarms = Stack.of(this).formatArn({
      service: "cloudwatch",
      resource: "alarm",
      resourceName: `${alarmNamePrefix(app.deploymentId)}*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    app.controlPlaneRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: "DescribeOwnAlarms",
        actions: ["cloudwatch:DescribeAlarms"],
        resources: [ownAlarms],
      }),
    );
    Validations.of(app.controlPlaneRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${nagResource(Stack.of(this), ownAlarms)}]`,
      reason: "cloudwatch:DescribeAlarms on this stack's alarms only: their names all start with the deployment id and a dot.",
    });
  }
}

/**
 * What the names of a deployment's alarms start with: the deployment id and a dot, which no stack name
 * contains, so `tsweaver-shop.` never matches the alarms of `tsweaver-shop-2`.
 */
export function alarmNamePrefix(deploymentId: string): string {
  return `${deploymentId}.`;
}
