/** WWW-Authenticate parsing (RFC 7235): several challenges, quoted values with commas and escapes. */
export interface Challenge {
  /** Lower-cased scheme, e.g. `basic`, `bearer`. */
  scheme: string;
  /** Lower-cased parameter names → values (unquoted). */
  params: Record<string, string>;
}

const TOKEN = /[!#$%&'*+\-.^_`|~0-9A-Za-z]+/y;
const TOKEN68 = /[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(,|$))/y;

export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const s = Array.isArray(header) ? header.join(', ') : header;
  const n = s.length;
  const out: Challenge[] = [];
  let cur: Challenge | undefined;
  let i = 0;

  const isWs = (c: string | undefined) => c === ' ' || c === '\t';
  const token = (): string | undefined => {
    TOKEN.lastIndex = i;
    const m = TOKEN.exec(s);
    if (!m) return undefined;
    i = TOKEN.lastIndex;
    return m[0];
  };
  const quoted = (): string => {
    let v = '';
    i++; // opening quote
    while (i < n && s[i] !== '"') {
      if (s[i] === '\\' && i + 1 < n) i++;
      v += s[i];
      i++;
    }
    i++; // closing quote (or end)
    return v;
  };

  while (i < n) {
    while (i < n && (isWs(s[i]) || s[i] === ',')) i++;
    if (i >= n) break;
    const tok = token();
    if (tok === undefined) {
      i++; // not a token character: skip it
      continue;
    }
    let j = i;
    while (isWs(s[j])) j++;
    if (cur && s[j] === '=') {
      i = j + 1;
      while (isWs(s[i])) i++;
      const value = s[i] === '"' ? quoted() : (token() ?? '');
      cur.params[tok.toLowerCase()] = value;
    } else {
      cur = { scheme: tok.toLowerCase(), params: {} };
      out.push(cur);
      i = j;
      // token68 form (`Negotiate abc==`): consume and ignore.
      TOKEN68.lastIndex = i;
      if (TOKEN68.exec(s)) i = TOKEN68.lastIndex;
    }
  }
  return out;
}
