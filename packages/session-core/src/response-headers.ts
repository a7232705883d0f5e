/** Where headers go: a Node response (`setHeader`) or a framework's reply (Fastify's `header`). */
export type HeaderTarget = { getHeader(name: string): unknown } & (
  | { setHeader(name: string, value: string | string[]): unknown }
  | { header(name: string, value: string | string[]): unknown; removeHeader(name: string): unknown }
);

/**
 * Set `headers` on `target`: `set-cookie` is merged with the cookies the response already
 * carries, a cookie of the same name replaced. Used by the read-your-writes token, the response
 * holder's replay and the Fastify adapter.
 */
export function applyResponseHeaders(headers: Record<string, string | string[]>, target: HeaderTarget): void {
  for (const [name, value] of Object.entries(headers)) {
    const merged = name === 'set-cookie' ? mergeSetCookie(target.getHeader(name), value) : value;
    if ('setHeader' in target) target.setHeader(name, merged);
    else {
      // Fastify's `reply.header('set-cookie', …)` appends to the cookies already there: the merged list replaces them
      if (name === 'set-cookie') target.removeHeader(name);
      target.header(name, merged);
    }
  }
}

/** The response's cookies plus `added` (which replaces any cookie of the same name). */
export function mergeSetCookie(current: unknown, added: string | string[]): string[] {
  const ours = (Array.isArray(added) ? added : [added]).map(String);
  const names = new Set(ours.map(cookieName));
  const theirs = current === undefined ? [] : (Array.isArray(current) ? current : [current]).map(String);
  return [...theirs.filter((cookie) => !names.has(cookieName(cookie))), ...ours];
}

function cookieName(cookie: string): string {
  return cookie.slice(0, cookie.indexOf('='));
}
