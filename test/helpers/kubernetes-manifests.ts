/**
 * Offline checks of Kubernetes manifests against the Kubernetes API schemas, as
 * packaged by kubernetes-models (generated from the Kubernetes OpenAPI schema) and
 * @kubernetes-models/prometheus-operator (ServiceMonitor). Two checks run:
 *
 * - `schemaErrors`: the packages' validators, which ajv compiled from the schemas. They
 *   check types, required fields and formats, but accept unknown fields, because the
 *   OpenAPI schemas do not forbid them.
 * - `unknownFieldErrors`: tsc on the objects as TypeScript literals typed with the
 *   packages' interfaces. Excess property checks then reject misspelled or misplaced
 *   fields, as `kubectl apply` does by default (`--validate=strict` in kubectl 1.32).
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import YAML from 'yaml';

import { REPO_ROOT } from './walhook-process.js';

/** A Kubernetes object as parsed from YAML. */
export interface KubernetesObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels?: Record<string, string> };
  readonly [field: string]: unknown;
}

/** A parsed object and where it came from, for messages. */
export interface Manifest {
  readonly source: string;
  readonly object: KubernetesObject;
}

interface ModelReference {
  /** Module that exports the model class. */
  readonly module: string;
  /** The model class, whose `validate()` runs the schema validator. */
  readonly className: string;
  /** The interface of the object, used for the unknown-field check. */
  readonly interfaceName: string;
}

/** Models of the kinds that walhook's manifests use, by `apiVersion/kind`. */
const MODELS: Readonly<Record<string, ModelReference>> = {
  'v1/ConfigMap': model('kubernetes-models/v1/ConfigMap', 'ConfigMap'),
  'v1/Secret': model('kubernetes-models/v1/Secret', 'Secret'),
  'v1/Service': model('kubernetes-models/v1/Service', 'Service'),
  'v1/Namespace': model('kubernetes-models/v1/Namespace', 'Namespace'),
  'apps/v1/Deployment': model('kubernetes-models/apps/v1/Deployment', 'Deployment'),
  'policy/v1/PodDisruptionBudget': model('kubernetes-models/policy/v1/PodDisruptionBudget', 'PodDisruptionBudget'),
  'monitoring.coreos.com/v1/ServiceMonitor': model(
    '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
    'ServiceMonitor',
  ),
};

function model(module: string, className: string): ModelReference {
  return { module, className, interfaceName: `I${className}` };
}

function modelOf(object: KubernetesObject): ModelReference {
  const reference = MODELS[`${object.apiVersion}/${object.kind}`];
  if (reference === undefined) {
    throw new Error(`no schema for ${object.apiVersion} ${object.kind}; add its model to MODELS`);
  }
  return reference;
}

/**
 * Parses every YAML document in `text`. Throws on a YAML error, such as a duplicate
 * key, and on a document that is not an object with apiVersion, kind and metadata.name.
 */
export function parseManifests(text: string, source: string): Manifest[] {
  const manifests: Manifest[] = [];
  YAML.parseAllDocuments(text).forEach((document, index) => {
    if (document.errors.length > 0) {
      throw new Error(`${source}, document ${index + 1}: ${document.errors.map((error) => error.message).join('; ')}`);
    }
    const object: unknown = document.toJS();
    if (object === null) return;
    const fields = object as Partial<KubernetesObject>;
    if (typeof fields.apiVersion !== 'string' || typeof fields.kind !== 'string' || typeof fields.metadata?.name !== 'string') {
      throw new Error(`${source}, document ${index + 1}: not a Kubernetes object with apiVersion, kind and metadata.name`);
    }
    manifests.push({ source, object: object as KubernetesObject });
  });
  return manifests;
}

/** Returns the schema validator's messages for `object`, or [] when it is valid. */
export async function schemaErrors(object: KubernetesObject): Promise<string[]> {
  const reference = modelOf(object);
  const exports = (await import(reference.module)) as Record<string, new (data: unknown) => { validate(): void }>;
  const Model = exports[reference.className];
  if (Model === undefined) {
    throw new Error(`${reference.module} exports no ${reference.className}`);
  }
  try {
    new Model(object).validate();
    return [];
  } catch (error) {
    return (error as Error).message.split(', ');
  }
}

/**
 * Type-checks `manifests` as literals of their model interfaces with the project's tsc
 * and returns one message per error, naming the manifest and the offending line.
 */
export async function unknownFieldErrors(manifests: readonly Manifest[]): Promise<string[]> {
  // The file must sit inside the repository so that tsc resolves node_modules.
  const parent = join(REPO_ROOT, '.tmp');
  await mkdir(parent, { recursive: true });
  const directory = await mkdtemp(join(parent, 'manifest-types-'));
  try {
    const lines: string[] = [];
    const owners: string[] = [];
    const add = (line: string, owner: string): void => {
      lines.push(line);
      owners.push(owner);
    };
    manifests.forEach((manifest, index) => {
      const reference = modelOf(manifest.object);
      add(`import type { ${reference.interfaceName} as Type${index} } from '${reference.module}';`, manifest.source);
    });
    manifests.forEach((manifest, index) => {
      const label = `${manifest.source}: ${manifest.object.kind} ${manifest.object.metadata.name}`;
      const json = JSON.stringify(manifest.object, null, 2).split('\n');
      add(`export const manifest${index}: Type${index} = ${json[0]}`, label);
      for (const line of json.slice(1)) add(line, label);
      lines[lines.length - 1] += ';';
    });
    await writeFile(join(directory, 'manifests.ts'), `${lines.join('\n')}\n`);
    await writeFile(
      join(directory, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          skipLibCheck: true,
          types: [],
        },
        files: ['manifests.ts'],
      }),
    );
    const output = await runTsc(join(directory, 'tsconfig.json'));
    return output
      .split('\n')
      .filter((line) => /\berror TS\d+/.test(line))
      .map((line) => {
        const lineNumber = Number(/\((\d+),\d+\)/.exec(line)?.[1]);
        const owner = owners[lineNumber - 1] ?? 'unknown manifest';
        const code = (lines[lineNumber - 1] ?? '').trim();
        return `${owner}: ${line.replace(/^.*?error /, 'error ')} (at ${code})`;
      });
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

function runTsc(project: string): Promise<string> {
  const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const child = spawn(process.execPath, [tsc, '-p', project, '--pretty', 'false'], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      // tsc exits 0 without errors and 1 or 2 with type errors. Any other result is a failure.
      if (code === 0 || /\berror TS\d+/.test(output)) resolve(output);
      else reject(new Error(`tsc exited with ${code}: ${output}`));
    });
  });
}
