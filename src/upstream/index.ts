export { createUpstream, type UpstreamDeps } from './client.js';
export type { BlobResponse, ManifestHead, ManifestResponse, RateLimitInfo, Upstream } from './types.js';
export { BREAKER_STATE_VALUE, type BreakerState, type BreakerStatus } from './breaker.js';
