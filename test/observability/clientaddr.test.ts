// regcache.trustproxy: which address the access log reports and the failed-login throttle keys on.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import { clientAddressResolver } from '../../src/net/clientaddr.js';

const req = (peer: string, xff?: string) =>
  ({ socket: { remoteAddress: peer }, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }) as unknown as IncomingMessage;

describe('client address', () => {
  it('ignores X-Forwarded-For unless configured', () => {
    for (const trust of [undefined, false, [] as string[]]) {
      assert.equal(clientAddressResolver(trust)(req('::ffff:10.0.0.5', '1.2.3.4')), '10.0.0.5');
    }
  });

  it('true: the first X-Forwarded-For entry', () => {
    const addr = clientAddressResolver(true);
    assert.equal(addr(req('10.0.0.5', '198.51.100.1, 10.0.0.9')), '198.51.100.1');
    assert.equal(addr(req('10.0.0.5')), '10.0.0.5');
    assert.equal(addr(req('10.0.0.5', 'garbage')), '10.0.0.5');
  });

  it('a list: only from a trusted peer, the right-most hop that is not a trusted proxy', () => {
    const addr = clientAddressResolver(['10.0.0.0/8', '2001:db8::1']);
    assert.equal(addr(req('192.0.2.7', '198.51.100.1')), '192.0.2.7', 'untrusted peer may not claim an address');
    assert.equal(addr(req('10.1.2.3', '203.0.113.50, 198.51.100.1, 10.9.9.9')), '198.51.100.1', 'spoofed left entries ignored');
    assert.equal(addr(req('2001:db8::1', '203.0.113.50')), '203.0.113.50');
    assert.equal(addr(req('10.1.2.3', '10.2.2.2')), '10.2.2.2', 'all hops trusted: the left-most');
  });
});
