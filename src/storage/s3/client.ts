import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { S3Client } from '@aws-sdk/client-s3';
import { RegistryError } from '../../errors.js';

export interface S3ClientOptions {
  region: string;
  /** Full URL (scheme included) of an S3-compatible endpoint; absent = AWS. */
  regionendpoint?: string;
  accesskey?: string;
  secretkey?: string;
  forcepathstyle: boolean;
}

/**
 * An S3 client for the storage driver. Credentials come from config, else the standard AWS chain (env,
 * shared config/credentials files, web identity, ECS/EC2 metadata). Checksums are only sent where S3
 * requires them: newer SDK defaults (aws-chunked uploads with CRC trailers) are not understood by many
 * S3-compatible servers, and the driver verifies content by digest itself.
 */
export function createS3Client(o: S3ClientOptions): S3Client {
  const agentOpts = { keepAlive: true, maxSockets: 64 };
  return new S3Client({
    region: o.region,
    endpoint: o.regionendpoint,
    forcePathStyle: o.forcepathstyle,
    credentials: o.accesskey && o.secretkey ? { accessKeyId: o.accesskey, secretAccessKey: o.secretkey } : undefined,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
    requestHandler: {
      httpAgent: new HttpAgent(agentOpts),
      httpsAgent: new HttpsAgent(agentOpts),
      connectionTimeout: 10_000,
      // Longest silence on a socket: a stalled S3 response fails instead of hanging a client.
      socketTimeout: 120_000,
    },
  });
}

interface SdkError {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

export function isS3NotFound(e: unknown): boolean {
  const err = e as SdkError;
  return (
    err?.$metadata?.httpStatusCode === 404 ||
    err?.name === 'NoSuchKey' ||
    err?.name === 'NotFound' ||
    err?.name === 'NoSuchUpload'
  );
}

export function s3Error(op: string, e: unknown): RegistryError {
  const err = e as SdkError & { message?: string };
  const what = err?.name ?? err?.Code ?? 'error';
  return new RegistryError('STORAGE_ERROR', `s3 ${op} failed (${what}${err?.message ? `: ${err.message}` : ''})`, {
    cause: e,
  });
}
