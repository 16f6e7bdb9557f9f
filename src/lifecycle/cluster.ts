import type { Logger } from 'pino';
import type { MetadataIndex } from '../metadata/index.js';
import { reconcile } from '../metadata/reconcile.js';
import { manifestId } from '../metadata/types.js';
import type { AccessRecorder } from '../seams.js';
import type { BlobStore } from '../storage/blobstore.js';
import { blobAccessId, buildUnits, type Removal, type Unit } from './plan.js';

/**
 * What an eviction plan needs to know when several replicas share one storage: what they stored (this
 * replica's index learns it by reconciling with storage) and when they last used it (the AccessRecorder in
 * Redis). Without `access` (a single process), the local index is the whole truth.
 */
export interface ClusterView {
  access?: AccessRecorder;
  index: MetadataIndex;
  storage: BlobStore;
  logger?: Logger;
}

/** Units for an eviction plan, with cluster-wide last accesses. Redis failing: this replica's view, with a warning. */
export async function clusterUnits(view: ClusterView): Promise<Unit[]> {
  if (!view.access) return buildUnits(view.index);
  let times: Map<string, number> = new Map();
  try {
    await reconcile(view.index, view.storage);
    times = await view.access.lastAccesses();
  } catch (e) {
    view.logger?.warn({ err: (e as Error).message }, 'cluster-wide access times unavailable; planning eviction on this replica\'s own');
  }
  return buildUnits(view.index, times);
}

/** Drops the cluster-wide access times of content that is gone (removals skipped as used again keep theirs). Best effort. */
export async function forgetRemoved(view: ClusterView, removals: Removal[]): Promise<void> {
  if (!view.access) return;
  const { index } = view;
  const ids = removals.flatMap((r) => [
    ...r.manifests.filter((m) => !index.manifest(m.upstream, m.repo, m.digest)).map((m) => manifestId(m.upstream, m.repo, m.digest)),
    ...r.blobs.filter((b) => !index.blob(b.digest)).map((b) => blobAccessId(b.digest)),
  ]);
  if (ids.length) await view.access.forget(ids).catch(() => {});
}
