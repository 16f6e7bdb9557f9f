/** The reference distribution config from DESIGN.md: must load unchanged. */
export const DESIGN_YAML = `
version: 0.1
log: { level: info, formatter: text, fields: {service: registry}, accesslog: {disabled: true} }
storage:
  cache: { blobdescriptor: inmemory }
  filesystem: { rootdirectory: /var/lib/registry }
  delete: { enabled: true }
http:
  addr: :5000
  relativeurls: false
  draintimeout: 60s
  headers: { X-Content-Type-Options: [nosniff] }
  debug: { addr: :5001, prometheus: { enabled: true, path: /metrics } }
  tls: { certificate: /path/cert.pem, key: /path/key.pem,
         letsencrypt: { cachefile: /path/le.json, email: a@b.c, hosts: [mirror.example.com] } }
auth:
  htpasswd: { realm: basic-realm, path: /auth/htpasswd }
health:
  storagedriver: { enabled: true, interval: 10s, threshold: 3 }
proxy:
  remoteurl: https://registry-1.docker.io
  username: user
  password: token
  ttl: 168h
`;
