import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { clientAddressResolver } from '../net/clientaddr.js';
import type { AuthProvider } from '../seams.js';

/**
 * The configured client authentication, or undefined for an open mirror. A new scheme (token, OIDC)
 * implements AuthProvider and is chosen here from its config key.
 */
export async function openAuthProvider(config: Config, logger: Logger): Promise<AuthProvider | undefined> {
  const ht = config.auth?.htpasswd;
  if (!ht) return undefined;
  // Loaded on use: bcrypt and the htpasswd reader cost start-up time and memory a mirror without client auth never needs.
  const { HtpasswdAuthenticator } = await import('./htpasswd.js');
  const htpasswd = await HtpasswdAuthenticator.open({ path: ht.path, realm: ht.realm, logger: logger.child({ component: 'auth' }) });
  // Failed logins are throttled per client: behind a load balancer that is the X-Forwarded-For address the
  // access log reports (regcache.trustproxy), not the balancer's. Without trustproxy, the peer address.
  const clientAddress = clientAddressResolver(config.regcache.trustproxy);
  return {
    async authenticate(req) {
      await htpasswd.authenticate(req.headers.authorization, clientAddress(req) ?? '');
    },
    close: () => htpasswd.close(),
  };
}
