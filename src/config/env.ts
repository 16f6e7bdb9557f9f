/**
 * REGISTRY_* environment overrides, as distribution: `REGISTRY_` + key path upper-cased and joined by `_`
 * (`REGISTRY_PROXY_REMOTEURL`, `REGISTRY_REGCACHE_UPSTREAMS_0_REMOTEURL`). Names are resolved against the
 * schema, longest key first, so a key holding `_` is not mis-split. Applied in name order, so `REGISTRY_STORAGE`
 * comes before `REGISTRY_STORAGE_S3_BUCKET`.
 *
 * Values: for a string key the variable's text as is; otherwise parsed as YAML (`true`, `10`, `[a, b]`,
 * `{enabled: true}`). An empty variable unsets the key. Naming a storage driver other than the file's
 * (`REGISTRY_STORAGE_S3_BUCKET=...`, or `REGISTRY_STORAGE=s3`) replaces the file's driver; the other storage keys
 * (cache, delete, redirect, ...) are kept.
 */
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { describe, fileSchema, STORAGE_DRIVERS } from './schema.js';
import {
  elementOf,
  formatPath,
  isRawMap,
  kind,
  Leaf,
  newMap,
  shapeOf,
  unionOption,
  valueTypeOf,
  yamlToRaw,
  type Path,
  type Raw,
  type RawMap,
} from './tree.js';

const PREFIX = 'REGISTRY_';
/** Read by loadConfig as the config file path (as distribution's `registry serve` does), not an override. */
export const CONFIG_PATH_VAR = 'REGISTRY_CONFIGURATION_PATH';

export interface EnvOverrides {
  warnings: string[];
  problems: Array<{ path: string; message: string }>;
  /** Key path set → variable that set it. */
  sources: Map<string, string>;
}

const DRIVERS: ReadonlySet<string> = new Set(STORAGE_DRIVERS);

export function applyEnv(root: RawMap, env: NodeJS.ProcessEnv): EnvOverrides {
  const out: EnvOverrides = { warnings: [], problems: [], sources: new Map() };
  const names = Object.keys(env)
    .filter((n) => n.startsWith(PREFIX) && n !== CONFIG_PATH_VAR && env[n] !== undefined)
    .sort();
  let envDriver: string | undefined;
  for (const name of names) {
    const target = resolve(root, name.slice(PREFIX.length).split('_'));
    if (typeof target === 'string') {
      out.problems.push({ path: name, message: target });
      continue;
    }
    if (!target) {
      out.warnings.push(`unknown environment variable ${name} ignored`);
      continue;
    }
    const value = envValue(env[name]!, target.schema);
    const p = formatPath(target.path);
    // Storage driver switch: REGISTRY_STORAGE=<driver>, or REGISTRY_STORAGE_<DRIVER>_... .
    const driver =
      p === 'storage' && value instanceof Leaf && typeof value.value === 'string'
        ? value.value
        : target.path[0] === 'storage' && DRIVERS.has(String(target.path[1]))
          ? String(target.path[1])
          : undefined;
    if (driver !== undefined) {
      if (!DRIVERS.has(driver)) {
        out.problems.push({ path: 'storage', message: `unknown storage driver ${describe(driver)} (from ${name})` });
        continue;
      }
      if (!isRawMap(root.storage)) root.storage = newMap();
      const storage = root.storage as RawMap;
      if (envDriver !== undefined && envDriver !== driver) {
        out.problems.push({ path: 'storage', message: `environment names two storage drivers: ${envDriver} and ${driver}` });
        delete storage[driver];
        continue;
      }
      envDriver = driver;
      for (const d of DRIVERS) if (d !== driver) delete storage[d];
      if (p === 'storage') {
        if (!isRawMap(storage[driver])) storage[driver] = newMap();
        out.sources.set(p, name);
        continue;
      }
    }
    setAt(target.container, target.key, value);
    out.sources.set(p, name);
  }
  return out;
}

interface Target {
  container: RawMap | Raw[];
  key: string | number;
  schema: z.ZodType | undefined;
  path: Path;
}

/**
 * Walks `segs` down the schema, creating containers in `root` as needed. Returns the slot to set, undefined
 * when the name matches no key, or a message when it cannot be applied.
 */
function resolve(root: RawMap, segs: string[]): Target | string | undefined {
  let schema: z.ZodType | undefined = fileSchema;
  let container: RawMap | Raw[] = root;
  const path: Path = [];
  for (let i = 0; i < segs.length; ) {
    if (segs[i] === '') return undefined;
    if (kind(schema) === 'union') schema = unionOption(schema!, 'object');
    const k = kind(schema);
    let key: string | number;
    let child: z.ZodType | undefined;
    if (k === 'object') {
      const shape = shapeOf(schema!);
      let n = segs.length - i;
      for (; n > 0; n--) {
        const want = segs.slice(i, i + n).join('_').toLowerCase();
        if (Object.hasOwn(shape, want)) break;
      }
      if (n === 0) return undefined;
      key = segs.slice(i, i + n).join('_').toLowerCase();
      child = shape[key];
      i += n;
    } else if (k === 'array') {
      if (!/^\d+$/.test(segs[i]!)) return undefined;
      key = Number(segs[i]);
      const len = Array.isArray(container) ? container.length : 0;
      if (key > len) return `index ${key} skips entries (${formatPath(path)} has ${len})`;
      child = elementOf(schema!);
      i += 1;
    } else if (k === 'record' || k === 'any' || schema === undefined) {
      key = segs[i]!.toLowerCase();
      child = k === 'record' ? valueTypeOf(schema!) : undefined;
      i += 1;
    } else {
      return undefined;
    }
    path.push(key);
    if (i === segs.length) return { container, key, schema: child, path };
    if (!canHoldKeys(child)) return undefined; // a scalar key with more name left
    const wantList = kind(child) === 'array';
    let next = getAt(container, key);
    if (wantList ? !Array.isArray(next) : !isRawMap(next)) {
      next = wantList ? [] : newMap();
      setAt(container, key, next);
    }
    container = next as RawMap | Raw[];
    schema = child;
  }
  return undefined;
}

function canHoldKeys(s: z.ZodType | undefined): boolean {
  const k = kind(s);
  if (k === 'union') return !!unionOption(s!, 'object');
  return k === undefined || k === 'object' || k === 'record' || k === 'array' || k === 'any';
}

function getAt(c: RawMap | Raw[], key: string | number): Raw | undefined {
  return Array.isArray(c) ? c[key as number] : c[key as string];
}

function setAt(c: RawMap | Raw[], key: string | number, v: Raw): void {
  if (Array.isArray(c)) c[key as number] = v;
  else c[key as string] = v;
}

function envValue(text: string, schema: z.ZodType | undefined): Raw {
  if (text === '') return new Leaf(null, '');
  if (kind(schema) === 'string') return new Leaf(text, text);
  const doc = parseDocument(text);
  return doc.errors.length > 0 ? new Leaf(text, text) : yamlToRaw(doc);
}
