/**
 * The config document between YAML and zod: maps, lists and scalar Leafs that keep their source text, so a
 * key typed as a string gets exactly what was written (`password: 0123` stays "0123", as Go's yaml.v2 does).
 * Env overrides are applied to this tree, then `normalize` walks it against the schema: it warns about unknown
 * and ignored keys and hands zod plain values.
 */
import { isAlias, isMap, isScalar, isSeq, type Document } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { notes } from './schema.js';

export class Leaf {
  /** `value` as YAML typed it; `text` as written (quotes and escapes resolved). */
  constructor(
    readonly value: unknown,
    readonly text: string,
  ) {}
}
export type RawMap = { [key: string]: Raw };
export type Raw = Leaf | RawMap | Raw[];
export type Path = Array<string | number>;

export function isRawMap(r: Raw | undefined): r is RawMap {
  return r !== undefined && !(r instanceof Leaf) && !Array.isArray(r);
}

export function newMap(): RawMap {
  return Object.create(null) as RawMap;
}

/** `http.tls.key`, `regcache.upstreams[1].name` */
export function formatPath(path: Path): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

const MAX_NODES = 10_000;

/** YAML AST → Raw. Resolves aliases and `<<` merge keys; refuses alias bombs and cycles. */
export function yamlToRaw(doc: Document): Raw {
  let budget = MAX_NODES;
  const walk = (node: unknown, depth: number): Raw => {
    if (--budget < 0 || depth > 64) {
      throw new ConfigError([{ path: '', message: 'YAML document too large or recursive (aliases)' }]);
    }
    if (isAlias(node)) return walk(node.resolve(doc), depth + 1);
    if (isScalar(node)) return new Leaf(node.value, node.source ?? (node.value == null ? '' : String(node.value)));
    if (isSeq(node)) return node.items.map((i) => walk(i, depth + 1));
    if (isMap(node)) {
      const out = newMap();
      const merged: Raw[] = [];
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? (pair.key.source ?? String(pair.key.value)) : JSON.stringify(pair.key);
        const value = walk(pair.value, depth + 1);
        if (key === '<<') merged.push(...(Array.isArray(value) ? value : [value]));
        else out[key] = value;
      }
      for (const m of merged) if (isRawMap(m)) for (const [k, v] of Object.entries(m)) if (!(k in out)) out[k] = v;
      return out;
    }
    return new Leaf(null, '');
  };
  return walk(doc.contents, 0);
}

type Schema = z.ZodType;
type Def = { type: string; [k: string]: unknown };
const def = (s: Schema): Def => s._zod.def as unknown as Def;

/** Strips optional/default/nullable wrappers and transforms, to the schema that checks the input. */
export function base(s: Schema): Schema {
  for (;;) {
    const d = def(s);
    if (d.type === 'optional' || d.type === 'default' || d.type === 'nullable' || d.type === 'prefault') {
      s = d.innerType as Schema;
    } else if (d.type === 'pipe') {
      const input = d.in as Schema;
      s = def(input).type === 'transform' ? (d.out as Schema) : input;
    } else return s;
  }
}

export function kind(s: Schema | undefined): string | undefined {
  return s && def(base(s)).type;
}

export function shapeOf(s: Schema): Record<string, Schema> {
  return def(base(s)).shape as Record<string, Schema>;
}

export function elementOf(s: Schema): Schema {
  return def(base(s)).element as Schema;
}

export function valueTypeOf(s: Schema): Schema {
  return def(base(s)).valueType as Schema;
}

export function optionsOf(s: Schema): Schema[] {
  return def(base(s)).options as Schema[];
}

/** The option of a union that takes the given container kind. */
export function unionOption(s: Schema, want: 'object' | 'array'): Schema | undefined {
  return optionsOf(s).find((o) => kind(o) === want || (want === 'object' && kind(o) === 'record'));
}

/** A leaf read as text: a string, or a union that accepts a string. */
export function isTextLeaf(s: Schema | undefined): boolean {
  const k = kind(s);
  return k === 'string' || (k === 'union' && optionsOf(s!).some((o) => kind(o) === 'string'));
}

export function plain(raw: Raw): unknown {
  if (raw instanceof Leaf) return raw.value;
  if (Array.isArray(raw)) return raw.map(plain);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) if (k !== '__proto__') out[k] = plain(v);
  return out;
}

/**
 * Raw → plain values shaped for `schema`, warning (via `warn`) about keys the schema does not know and keys it
 * marks as ignored. An empty key (`tls:`) counts as absent, except a mapping key (`inmemory:`) which becomes {}.
 */
export function normalize(raw: Raw, schema: Schema | undefined, path: Path, warn: (w: string) => void): unknown {
  let k = kind(schema);
  if (raw instanceof Leaf) {
    if (raw.value === null) return k === 'object' ? {} : null;
    return isTextLeaf(schema) ? raw.text : raw.value;
  }
  if (k === 'union') {
    const option = unionOption(schema!, Array.isArray(raw) ? 'array' : 'object');
    if (!option) return plain(raw);
    schema = option;
    k = kind(option);
  }
  if (Array.isArray(raw)) {
    return k === 'array' ? raw.map((r, i) => normalize(r, elementOf(schema!), [...path, i], warn)) : plain(raw);
  }
  if (k === 'record') {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(raw)) {
      if (key !== '__proto__') out[key] = normalize(v, valueTypeOf(schema!), [...path, key], warn);
    }
    return out;
  }
  if (k !== 'object') return plain(raw);
  const shape = shapeOf(schema!);
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(raw)) {
    const child = Object.hasOwn(shape, key) ? shape[key] : undefined;
    const p = formatPath([...path, key]);
    if (!child) {
      warn(`unknown key "${p}" ignored`);
      continue;
    }
    const note = notes.get(child);
    if (note) warn(`key "${p}" ignored: ${note.ignored}`);
    if (v instanceof Leaf && v.value === null && kind(child) !== 'object') continue;
    out[key] = normalize(v, child, [...path, key], warn);
  }
  return out;
}
