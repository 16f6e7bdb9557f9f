// The S3 implementations the s3 driver is tested against: s3rver as users get it (npm) and moto's S3 server
// (PyPI, installed by scripts/moto.sh). Each test that needs an S3 server runs once per implementation.
import { motoAvailable, startMoto } from './motoserver.js';
import { startS3, type RunningS3 } from './s3server.js';

export interface S3Implementation {
  name: string;
  start(): Promise<RunningS3>;
  /** False: not installed here (the test skips outside CI, fails under CI=true). */
  available(): boolean;
  /** AbortMultipartUpload and ListMultipartUploads: aborted or abandoned uploads are removed. */
  removesUploads: boolean;
}

export const S3_IMPLEMENTATIONS: S3Implementation[] = [
  { name: 's3rver', start: () => startS3(), available: () => true, removesUploads: false },
  { name: 'moto', start: () => startMoto(), available: motoAvailable, removesUploads: true },
];
