// The layer rules of src/ (README "Layout", docs/architecture.md), checked by scripts/test.sh:
//   npx depcruise src --config .dependency-cruiser.cjs
// A folder (or top-level module) may import from its own layer's folder and from any lower layer, never
// from a higher one; no import cycles at all; storage and upstream never see HTTP-server code. Tests may
// import anything (they are not cruised).

/** Highest first. Modules of one row do not import each other unless listed in PEERS. */
const LAYERS = [
  ['cli'],
  ['server'],
  ['registry', 'lifecycle', 'observability'],
  ['proxy', 'coordination'],
  ['metadata', 'upstream', 'auth'],
  ['storage', 'tls', 'log.ts'],
  ['config', 'clientconfig'],
  ['oci', 'net', 'util', 'errors.ts', 'seams.ts'],
];

const path = (name) => (name.endsWith('.ts') ? `^src/${name.replace('.', '\\.')}$` : `^src/${name}/`);

const layerRules = LAYERS.flatMap((row, i) => {
  const allowed = LAYERS.slice(i + 1).flat();
  return row.flatMap((name) => {
    const others = LAYERS.flat().filter((n) => n !== name && !allowed.includes(n));
    if (others.length === 0) return [];
    return {
      name: `layer-${name}`,
      comment: `src/${name} may import only from itself and lower layers: ${allowed.join(', ') || '(none)'}`,
      severity: 'error',
      from: { path: path(name) },
      to: { path: others.map(path) },
    };
  });
});

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'no-circular',
      comment: 'No import cycles, between folders or files.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'storage-upstream-not-http-server',
      comment: 'Storage drivers and upstream clients never depend on the HTTP server (node:http servers, server/).',
      severity: 'error',
      from: { path: ['^src/storage/', '^src/upstream/'] },
      to: { path: ['^src/server/', '^src/registry/', '^src/observability/', '^(node:)?https?$'] },
    },
    {
      name: 'no-orphans',
      comment: 'Every module of src/ is used (dead files are removed, not kept).',
      severity: 'error',
      from: { orphan: true, pathNot: ['\\.d\\.ts$'] },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^src/.*\\.d\\.ts$' },
  },
};
