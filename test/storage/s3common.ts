// What every S3 server the tests start offers alike: an SDK client for it, the storage.s3 config block, and a
// dump of the bucket's objects.
import { GetObjectCommand, ListObjectsV2Command, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

export interface S3Access {
  client: S3Client;
  /** storage.s3 block for a distribution-style config (rootdirectory as given). */
  yaml(rootdirectory?: string): Record<string, unknown>;
  /** Every object in the bucket (key → bytes). */
  objects(prefix?: string): Promise<Map<string, Buffer>>;
}

export function s3Access(endpoint: string, bucket: string, key: string, secret: string, extra: Partial<S3ClientConfig> = {}): S3Access {
  const client = new S3Client({
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: key, secretAccessKey: secret },
    ...extra,
  });
  return {
    client,
    yaml: (rootdirectory = '') => ({
      region: 'us-east-1',
      bucket,
      regionendpoint: endpoint,
      accesskey: key,
      secretkey: secret,
      forcepathstyle: true,
      rootdirectory,
    }),
    async objects(prefix = '') {
      const out = new Map<string, Buffer>();
      let token: string | undefined;
      do {
        const res = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        for (const o of res.Contents ?? []) {
          const body = await client.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key! }));
          out.set(o.Key!, Buffer.from(await body.Body!.transformToByteArray()));
        }
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
      return out;
    },
  };
}
