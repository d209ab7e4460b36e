// The manifests under deploy/kubernetes and the overlay in deploy/examples/billing:
// Kubernetes schema and unknown-field checks, the references between the objects, and
// walhook's own validation of the configuration they mount. `kubectl kustomize` renders
// both directories offline, as `kubectl apply -k` would before sending them.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import YAML from 'yaml';

import { parseConfig } from '../../src/config/load.js';
import type { WalhookConfig } from '../../src/config/types.js';
import { instructionsOf, parseDockerfile } from '../helpers/dockerfile.js';
import {
  type KubernetesObject,
  type Manifest,
  parseManifests,
  schemaErrors,
  unknownFieldErrors,
} from '../helpers/kubernetes-manifests.js';
import { skipOrFail } from '../helpers/skip.js';
import { REPO_ROOT } from '../helpers/walhook-process.js';

const BASE_DIR = join(REPO_ROOT, 'deploy/kubernetes');
const BILLING_DIR = join(REPO_ROOT, 'deploy/examples/billing');
/** Applied on its own, because clusters without the Prometheus Operator lack its kind. */
const SERVICE_MONITOR_FILE = 'servicemonitor.yaml';
const NAMESPACE = 'walhook';

interface Kustomization {
  namespace?: string;
  resources?: string[];
  configMapGenerator?: { name: string; files: string[]; behavior?: string }[];
  images?: { name: string; newName?: string; newTag?: string }[];
  patches?: { path: string }[];
}

// Types of the parts of the objects that the checks read.
interface Probe {
  httpGet?: { path: string; port: number | string };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; value?: string }[];
  envFrom?: { secretRef?: { name: string }; configMapRef?: { name: string } }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: {
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    runAsNonRoot?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
  };
}
interface PodSpec {
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; runAsGroup?: number; seccompProfile?: { type: string } };
  topologySpreadConstraints?: { labelSelector?: { matchLabels?: Record<string, string> } }[];
  containers: Container[];
  volumes?: { name: string; configMap?: { name: string; items?: { key: string; path: string }[] } }[];
}
interface DeploymentSpec {
  replicas?: number;
  selector: { matchLabels?: Record<string, string> };
  strategy?: { rollingUpdate?: { maxSurge?: number | string; maxUnavailable?: number | string } };
  template: { metadata?: { labels?: Record<string, string> }; spec: PodSpec };
}

function readKustomization(directory: string): Kustomization {
  return YAML.parse(readFileSync(join(directory, 'kustomization.yaml'), 'utf8')) as Kustomization;
}

/** Parses the resources that `directory`'s kustomization.yaml lists, without kustomize. */
function readResources(directory: string): Manifest[] {
  return (readKustomization(directory).resources ?? []).flatMap((file) =>
    parseManifests(readFileSync(join(directory, file), 'utf8'), file),
  );
}

/** Builds the ConfigMaps of each configMapGenerator, named as written, without kustomize's hash. */
function generatedConfigMaps(directory: string): Manifest[] {
  return (readKustomization(directory).configMapGenerator ?? []).map((generator) => {
    const data: Record<string, string> = {};
    for (const file of generator.files) data[file] = readFileSync(join(directory, file), 'utf8');
    return {
      source: `configMapGenerator ${generator.name}`,
      object: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: generator.name }, data },
    };
  });
}

function only(manifests: readonly Manifest[], kind: string): KubernetesObject {
  const matching = manifests.filter((manifest) => manifest.object.kind === kind);
  assert.equal(matching.length, 1, `expected one ${kind}, found ${matching.length}`);
  return (matching[0] as Manifest).object;
}

function deploymentSpec(manifests: readonly Manifest[]): DeploymentSpec {
  return only(manifests, 'Deployment').spec as DeploymentSpec;
}

function walhookContainer(manifests: readonly Manifest[]): Container {
  const [container, ...others] = deploymentSpec(manifests).template.spec.containers;
  assert.ok(container !== undefined, 'the pod has no container');
  assert.equal(others.length, 0, 'the pod must have one container');
  return container;
}

/** Returns the Secret's values as the environment that `envFrom` gives the container. */
function secretEnvironment(manifests: readonly Manifest[]): Record<string, string> {
  const secret = only(manifests, 'Secret') as KubernetesObject & {
    stringData?: Record<string, string>;
    data?: Record<string, string>;
  };
  const env: Record<string, string> = { ...secret.stringData };
  for (const [key, value] of Object.entries(secret.data ?? {})) env[key] = Buffer.from(value, 'base64').toString('utf8');
  return env;
}

/** Returns the walhook.yaml of the ConfigMap and the result of walhook's own validation of it. */
function mountedConfig(manifests: readonly Manifest[]): { text: string; config: WalhookConfig } {
  const configMap = only(manifests, 'ConfigMap') as KubernetesObject & { data: Record<string, string> };
  const text = configMap.data['walhook.yaml'];
  assert.ok(text !== undefined, 'the ConfigMap has no walhook.yaml');
  return { text, config: parseConfig(text, { file: 'walhook.yaml', env: secretEnvironment(manifests) }) };
}

/** Converts a Kubernetes memory quantity such as `256Mi` to bytes. */
function memoryBytes(quantity: string): number {
  const units: Record<string, number> = { '': 1, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, k: 1e3, M: 1e6, G: 1e9 };
  const match = /^(\d+)(Ki|Mi|Gi|k|M|G)?$/.exec(quantity);
  assert.ok(match !== null, `cannot read the memory quantity ${quantity}`);
  return Number(match[1]) * (units[match[2] ?? ''] as number);
}

/** True when every label of `selector` is on `labels`. */
function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  assert.ok(selector !== undefined, 'missing selector');
  assert.ok(Object.keys(selector).length > 0, 'empty selector');
  return Object.entries(selector).every(([key, value]) => labels?.[key] === value);
}

/** Runs `kubectl kustomize directory` and returns its objects, or a reason it cannot run. */
function kustomize(directory: string): Promise<Manifest[] | { unavailable: string }> {
  const child = spawn('kubectl', ['kustomize', directory], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') resolve({ unavailable: 'kubectl is not installed, so kustomize cannot run' });
      else reject(error);
    });
    child.once('close', (code) => {
      if (code !== 0) reject(new Error(`kubectl kustomize ${directory} exited with ${code}: ${stderr}`));
      else resolve(parseManifests(stdout, `kubectl kustomize ${directory}`));
    });
  });
}

/** Checks every object of `manifests` against the schemas and for unknown fields. */
async function assertValidObjects(manifests: readonly Manifest[]): Promise<void> {
  for (const manifest of manifests) {
    const label = `${manifest.source}: ${manifest.object.kind} ${manifest.object.metadata.name}`;
    assert.deepEqual(await schemaErrors(manifest.object), [], label);
  }
  assert.deepEqual(await unknownFieldErrors(manifests), []);
}

/**
 * Checks the references inside one walhook instance: the Deployment's Secret and
 * ConfigMap exist, probes and Service use the container port that walhook.yaml sets,
 * selectors pick this instance's pods, and the grace period covers shutdown_timeout.
 */
function assertInstanceReferences(manifests: readonly Manifest[]): void {
  const spec = deploymentSpec(manifests);
  const pod = spec.template.spec;
  const container = walhookContainer(manifests);
  const podLabels = spec.template.metadata?.labels;
  const { config } = mountedConfig(manifests);

  const secretNames = manifests.filter((m) => m.object.kind === 'Secret').map((m) => m.object.metadata.name);
  for (const source of container.envFrom ?? []) {
    if (source.secretRef !== undefined) assert.ok(secretNames.includes(source.secretRef.name), `no Secret ${source.secretRef.name}`);
  }
  const configMapNames = manifests.filter((m) => m.object.kind === 'ConfigMap').map((m) => m.object.metadata.name);
  for (const volume of pod.volumes ?? []) {
    if (volume.configMap !== undefined) assert.ok(configMapNames.includes(volume.configMap.name), `no ConfigMap ${volume.configMap.name}`);
  }

  const port = container.ports?.find((candidate) => candidate.name === 'http');
  assert.equal(port?.containerPort, config.server.port, 'the container port differs from server.port');
  for (const [name, probe] of Object.entries({
    startupProbe: container.startupProbe,
    livenessProbe: container.livenessProbe,
    readinessProbe: container.readinessProbe,
  })) {
    assert.ok(probe?.httpGet !== undefined, `${name} is missing`);
    const probePort = probe.httpGet.port;
    assert.ok(probePort === 'http' || probePort === config.server.port, `${name} uses port ${probePort}`);
  }
  assert.ok(config.server.enabled, 'the probes need server.enabled');

  const grace = pod.terminationGracePeriodSeconds;
  assert.ok(grace !== undefined, 'terminationGracePeriodSeconds is not set');
  assert.ok(
    grace * 1000 >= config.shutdownTimeoutMs + 10_000,
    `terminationGracePeriodSeconds ${grace} leaves less than 10 s after shutdown_timeout ${config.shutdownTimeoutMs} ms`,
  );

  assert.ok(selects(spec.selector.matchLabels, podLabels), 'the Deployment selector misses its pods');
  for (const constraint of pod.topologySpreadConstraints ?? []) {
    assert.ok(selects(constraint.labelSelector?.matchLabels, podLabels), 'a spread constraint misses the pods');
  }
  const service = only(manifests, 'Service') as KubernetesObject & {
    spec: { selector: Record<string, string>; ports: { name: string; port: number; targetPort: string | number }[] };
  };
  assert.ok(selects(service.spec.selector, podLabels), 'the Service selector misses the pods');
  for (const servicePort of service.spec.ports) {
    assert.ok(
      servicePort.targetPort === 'http' || servicePort.targetPort === config.server.port,
      `Service port ${servicePort.name} targets ${servicePort.targetPort}`,
    );
  }
  const budget = only(manifests, 'PodDisruptionBudget') as KubernetesObject & {
    spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } };
  };
  assert.ok(selects(budget.spec.selector.matchLabels, podLabels), 'the PodDisruptionBudget selector misses the pods');
  assert.ok(budget.spec.minAvailable < (spec.replicas ?? 1), 'minAvailable must leave one replica to evict');
}

describe('Kubernetes manifests', () => {
  const resources = readResources(BASE_DIR);
  const serviceMonitor = parseManifests(readFileSync(join(BASE_DIR, SERVICE_MONITOR_FILE), 'utf8'), SERVICE_MONITOR_FILE);
  const manifests = [...resources, ...generatedConfigMaps(BASE_DIR)];

  test('kustomization lists every manifest', () => {
    const kustomization = readKustomization(BASE_DIR);
    const generatorFiles = (kustomization.configMapGenerator ?? []).flatMap((generator) => generator.files);
    const yamlFiles = readdirSync(BASE_DIR).filter((file) => file.endsWith('.yaml'));
    const listed = new Set([...(kustomization.resources ?? []), ...generatorFiles, 'kustomization.yaml', SERVICE_MONITOR_FILE]);
    assert.deepEqual(yamlFiles.filter((file) => !listed.has(file)), []);
    assert.equal(kustomization.namespace, NAMESPACE);
    assert.deepEqual(generatorFiles, ['walhook.yaml']);
    assert.equal(serviceMonitor.length, 1);
  });

  test('objects match the Kubernetes schemas', async () => {
    await assertValidObjects([...manifests, ...serviceMonitor]);
  });

  test('schema check rejects a wrong type', async () => {
    const deployment = structuredClone(only(manifests, 'Deployment')) as KubernetesObject & { spec: { replicas: unknown } };
    deployment.spec.replicas = 'two';
    const errors = await schemaErrors(deployment);
    assert.deepEqual(errors, ['data/spec/replicas must be integer']);
  });

  test('field check rejects a misspelled field', async () => {
    const deployment = structuredClone(only(manifests, 'Deployment')) as KubernetesObject & { spec: DeploymentSpec };
    const container = deployment.spec.template.spec.containers[0] as Container & Record<string, unknown>;
    container.readinesProbe = container.readinessProbe;
    const errors = await unknownFieldErrors([{ source: 'deployment.yaml', object: deployment }]);
    assert.equal(errors.length, 1, errors.join('\n'));
    assert.match(errors[0] as string, /'"readinesProbe"' does not exist in type 'IContainer'/);
  });

  test('objects refer to each other', () => {
    assertInstanceReferences(manifests);
  });

  test('service monitor scrapes the Service port', () => {
    const monitor = (serviceMonitor[0] as Manifest).object as KubernetesObject & {
      spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] };
    };
    const service = only(manifests, 'Service') as KubernetesObject & { spec: { ports: { name: string }[] } };
    assert.ok(selects(monitor.spec.selector.matchLabels, service.metadata.labels), 'the ServiceMonitor misses the Service');
    assert.deepEqual(
      monitor.spec.endpoints.map((endpoint) => [endpoint.port, endpoint.path]),
      [[service.spec.ports[0]?.name, '/metrics']],
    );
  });

  test('deployment runs two replicas with a surge', () => {
    const spec = deploymentSpec(manifests);
    assert.equal(spec.replicas, 2);
    assert.equal(spec.strategy?.rollingUpdate?.maxUnavailable, 0, 'a rollout must keep a standby');
    assert.equal(spec.strategy?.rollingUpdate?.maxSurge, 1);
  });

  test('probes use the walhook routes', () => {
    const container = walhookContainer(manifests);
    assert.equal(container.startupProbe?.httpGet?.path, '/healthz');
    assert.equal(container.livenessProbe?.httpGet?.path, '/healthz');
    assert.equal(container.readinessProbe?.httpGet?.path, '/readyz');
  });

  test('container reads the mounted config', () => {
    const container = walhookContainer(manifests);
    const volume = deploymentSpec(manifests).template.spec.volumes?.find((candidate) => candidate.configMap !== undefined);
    const mount = container.volumeMounts?.find((candidate) => candidate.name === volume?.name);
    const item = volume?.configMap?.items?.find((candidate) => candidate.key === 'walhook.yaml');
    assert.ok(item !== undefined, 'the config volume has no walhook.yaml item');
    assert.ok(mount !== undefined, 'the config volume is not mounted');
    assert.equal(mount.readOnly, true);
    const mountedPath = `${mount.mountPath}/${item.path}`;
    assert.deepEqual(container.args, ['run', '--config', mountedPath]);

    const dockerfile = parseDockerfile(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
    const runtime = dockerfile.stages[dockerfile.stages.length - 1];
    assert.ok(runtime !== undefined);
    assert.deepEqual(instructionsOf(runtime, 'CMD').at(-1)?.execForm, container.args, 'args differ from the image CMD');
  });

  test('pod runs non-root and read-only', () => {
    const pod = deploymentSpec(manifests).template.spec;
    const container = walhookContainer(manifests);
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.equal(pod.securityContext?.seccompProfile?.type, 'RuntimeDefault');
    assert.equal(container.securityContext?.runAsNonRoot, true);
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
    assert.deepEqual(container.securityContext?.capabilities?.drop, ['ALL']);
    assert.equal(container.securityContext?.capabilities?.add, undefined);

    const dockerfile = parseDockerfile(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
    const runtime = dockerfile.stages[dockerfile.stages.length - 1];
    assert.ok(runtime !== undefined);
    const user = instructionsOf(runtime, 'USER').at(-1)?.text;
    assert.equal(`${pod.securityContext?.runAsUser}:${pod.securityContext?.runAsGroup}`, user, 'runAsUser differs from the image USER');
  });

  test('memory limit leaves room for the heap', () => {
    const container = walhookContainer(manifests);
    const limit = container.resources?.limits?.memory;
    const request = container.resources?.requests?.memory;
    assert.ok(limit !== undefined, 'no memory limit');
    assert.ok(request !== undefined, 'no memory request');
    assert.ok(memoryBytes(request) <= memoryBytes(limit));
    assert.ok(container.resources?.requests?.cpu !== undefined, 'no CPU request');
    const nodeOptions = container.env?.find((variable) => variable.name === 'NODE_OPTIONS')?.value ?? '';
    const heapMiB = Number(/--max-old-space-size=(\d+)/.exec(nodeOptions)?.[1]);
    assert.ok(heapMiB > 0, 'NODE_OPTIONS sets no --max-old-space-size');
    // The RSS holds V8's old space and also code, buffers and the young generation, so
    // the heap limit must stay well below the container limit.
    assert.ok(heapMiB * 2 ** 20 <= memoryBytes(limit) * 0.7, `a heap of ${heapMiB} MiB leaves too little of ${limit}`);
  });

  test('walhook.yaml passes walhook validation', () => {
    const { config } = mountedConfig(manifests);
    assert.equal(config.source.connection, secretEnvironment(manifests).DATABASE_URL);
    assert.equal(config.server.host, '0.0.0.0', 'the probes come from outside the pod');
  });

  test('every Secret key is referenced', () => {
    const { text } = mountedConfig(manifests);
    for (const key of Object.keys(secretEnvironment(manifests))) {
      assert.ok(text.includes(`\${${key}`), `walhook.yaml does not use the Secret key ${key}`);
    }
  });

  test('names match least-privilege.sql defaults', () => {
    const { config } = mountedConfig(manifests);
    const script = readFileSync(join(BASE_DIR, 'sql/least-privilege.sql'), 'utf8');
    const defaultOf = (variable: string): string | undefined =>
      new RegExp(`^\\s*\\\\set ${variable} (\\S+)$`, 'm').exec(script)?.[1];
    assert.equal(config.source.publication, defaultOf('publication'));
    assert.equal(config.deadLetters.schema, defaultOf('dead_letter_schema'));
    const secretUrl = new URL(secretEnvironment(manifests).DATABASE_URL as string);
    assert.equal(secretUrl.username, defaultOf('walhook_role'));
  });
});

describe('kustomize build', () => {
  test('base renders valid objects', async (t) => {
    const rendered = await kustomize(BASE_DIR);
    if ('unavailable' in rendered) return skipOrFail(t, rendered.unavailable);
    await assertValidObjects(rendered);
    assertInstanceReferences(rendered);
    for (const manifest of rendered) {
      assert.equal(manifest.object.metadata.namespace, NAMESPACE, `${manifest.object.kind} ${manifest.object.metadata.name}`);
    }
    const configMap = only(rendered, 'ConfigMap');
    assert.match(configMap.metadata.name, /^walhook-config-[a-z0-9]{10}$/, 'kustomize adds a content hash');
    const image = readKustomization(BASE_DIR).images?.[0];
    assert.equal(walhookContainer(rendered).image, `${image?.newName}:${image?.newTag}`);
  });

  test('billing overlay is a separate instance', async (t) => {
    const base = await kustomize(BASE_DIR);
    const billing = await kustomize(BILLING_DIR);
    if ('unavailable' in base) return skipOrFail(t, base.unavailable);
    if ('unavailable' in billing) return skipOrFail(t, billing.unavailable);
    await assertValidObjects(billing);
    assertInstanceReferences(billing);

    const names = (manifests: readonly Manifest[]): string[] =>
      manifests.map((manifest) => `${manifest.object.kind}/${manifest.object.metadata.name}`);
    const shared = names(billing).filter((name) => names(base).includes(name));
    assert.deepEqual(shared, [], 'objects of the two instances would overwrite each other');

    // Neither instance's selectors may pick the other's pods.
    const basePods = deploymentSpec(base).template.metadata?.labels;
    const billingPods = deploymentSpec(billing).template.metadata?.labels;
    for (const [own, other, otherPods] of [
      [base, billing, billingPods],
      [billing, base, basePods],
    ] as const) {
      assert.ok(!selects(deploymentSpec(own).selector.matchLabels, otherPods), 'Deployment selectors overlap');
      const service = only(own, 'Service') as KubernetesObject & { spec: { selector: Record<string, string> } };
      assert.ok(!selects(service.spec.selector, otherPods), 'Service selectors overlap');
      const budget = only(own, 'PodDisruptionBudget') as KubernetesObject & {
        spec: { selector: { matchLabels: Record<string, string> } };
      };
      assert.ok(!selects(budget.spec.selector.matchLabels, otherPods), 'PodDisruptionBudget selectors overlap');
      assert.notEqual(only(own, 'Secret').metadata.name, only(other, 'Secret').metadata.name);
    }

    const baseConfig = mountedConfig(base).config;
    const billingConfig = mountedConfig(billing).config;
    assert.notEqual(billingConfig.source.slot, baseConfig.source.slot);
    assert.notEqual(billingConfig.source.publication, baseConfig.source.publication);
    assert.notEqual(billingConfig.deadLetters.schema, baseConfig.deadLetters.schema);
    assert.notEqual(
      new URL(billingConfig.source.connection).username,
      new URL(baseConfig.source.connection).username,
      'each instance has its own role',
    );
    const tablesOf = (config: WalhookConfig): string[] => config.triggers.map((trigger) => `${trigger.table.schema}.${trigger.table.name}`);
    assert.deepEqual(
      tablesOf(billingConfig).filter((table) => tablesOf(baseConfig).includes(table)),
      [],
      'a table streamed by both instances is decoded twice',
    );
  });
});
