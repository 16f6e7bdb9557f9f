import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseChallenges } from '../../src/upstream/challenge.js';
import { nextLink } from '../../src/upstream/client.js';
import { normalizeRepo } from '../../src/upstream/dockerhub.js';
import { parseRateLimitHeader, parseRetryAfter } from '../../src/upstream/ratelimit.js';

test('WWW-Authenticate: Docker Hub style Bearer challenge', () => {
  assert.deepEqual(
    parseChallenges(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
    ),
    [
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.docker.io/token',
          service: 'registry.docker.io',
          scope: 'repository:library/alpine:pull',
        },
      },
    ],
  );
});

test('WWW-Authenticate: several challenges, quoted commas, escapes, spaces, unquoted values', () => {
  const got = parseChallenges([
    'Basic realm="Registry Realm, \\"main\\""',
    'Bearer realm = "https://h/token?a=1,b=2" , service=svc,scope="repository:a/b:pull,push repository:c:pull", error="insufficient_scope"',
  ]);
  assert.equal(got.length, 2);
  assert.deepEqual(got[0], { scheme: 'basic', params: { realm: 'Registry Realm, "main"' } });
  assert.deepEqual(got[1], {
    scheme: 'bearer',
    params: {
      realm: 'https://h/token?a=1,b=2',
      service: 'svc',
      scope: 'repository:a/b:pull,push repository:c:pull',
      error: 'insufficient_scope',
    },
  });
  assert.deepEqual(
    parseChallenges('Negotiate abc==, BASIC realm=simple').map((c) => c.scheme),
    ['negotiate', 'basic'],
  );
  assert.deepEqual(parseChallenges('Basic'), [{ scheme: 'basic', params: {} }]);
  assert.deepEqual(parseChallenges(undefined), []);
});

test('Retry-After: seconds and HTTP date', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('120', now), 120);
  assert.equal(parseRetryAfter('Wed, 01 Jan 2025 00:00:30 GMT', now), 30);
  assert.equal(parseRetryAfter('Tue, 31 Dec 2024 23:00:00 GMT', now), 0);
  assert.equal(parseRetryAfter('soon', now), undefined);
  assert.equal(parseRetryAfter(undefined, now), undefined);
});

test('Docker Hub rate limit headers', () => {
  assert.equal(parseRateLimitHeader('100;w=21600'), 100);
  assert.equal(parseRateLimitHeader('0;w=21600'), 0);
  assert.equal(parseRateLimitHeader(undefined), undefined);
  assert.equal(parseRateLimitHeader('x'), undefined);
});

test('Link rel="next" resolution', () => {
  const cur = new URL('https://r.example/prefix/v2/a/tags/list');
  assert.equal(
    nextLink('</v2/a/tags/list?last=b&n=2>; rel="next"', cur)?.href,
    'https://r.example/v2/a/tags/list?last=b&n=2',
  );
  assert.equal(nextLink('<https://r.example/x?last=c>; rel=prev, <y?last=d>; rel=next', cur)?.href, 'https://r.example/prefix/v2/a/tags/y?last=d');
  assert.equal(nextLink('</v2/a/tags/list?last=b>; rel="prev"', cur), undefined);
  assert.equal(nextLink(undefined, cur), undefined);
});

test('Docker Hub repository normalization', () => {
  assert.equal(normalizeRepo('alpine', true), 'library/alpine');
  assert.equal(normalizeRepo('bitnami/redis', true), 'bitnami/redis');
  assert.equal(normalizeRepo('alpine', false), 'alpine');
});
