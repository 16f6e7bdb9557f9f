export { createUpstream, type UpstreamDeps } from './client.js';
export type { BlobResponse, ManifestHead, ManifestResponse, RateLimitInfo, Upstream } from './types.js';
