import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ApiResponse } from '../registry/api.js';
import { fileRegionOf } from '../seams.js';
import { sendFileRange } from './sendfile.js';

/**
 * Writes an API response, counting the body bytes sent into `counter.sent` as they go (the access log reads it
 * when the response closes, also after an abort). A body stream is opened before the status goes out,
 * so that a failure to open is still a clean error response; a body that is a region of a local file is sent
 * from its fd with pooled buffers. Throws when the body fails midway (the caller aborts the connection).
 */
export async function writeApiResponse(res: ServerResponse, result: ApiResponse, isHead: boolean, counter: { sent?: number }): Promise<void> {
  const sendBody = !isHead && result.status !== 304 && result.body !== undefined;
  if (!sendBody || Buffer.isBuffer(result.body)) {
    res.writeHead(result.status, result.headers);
    const body = sendBody ? (result.body as Buffer) : undefined;
    counter.sent = body?.length ?? 0;
    res.end(body);
    return;
  }
  const stream: Readable = await (result.body as () => Promise<Readable> | Readable)();
  counter.sent = 0;
  res.writeHead(result.status, result.headers);
  const region = fileRegionOf(stream);
  if (region) {
    try {
      counter.sent = await sendFileRange(res, region.fd, region.start, region.end);
    } finally {
      stream.destroy();
    }
    return;
  }
  stream.on('data', (chunk: Buffer) => (counter.sent! += chunk.length));
  await pipeline(stream, res);
}
