const USERINFO_PASSWORD = /(\/\/[^:/?#@\s]*:)[^@\s]*@/g;

/** Replace the password of every URL in `text` with `***`. */
export function redactUrl(text: string): string {
  return text.replace(USERINFO_PASSWORD, '$1***@');
}

/** Replace each secret (and URL passwords) in `text` with `***`. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = redactUrl(text);
  for (const secret of secrets) {
    if (secret) out = out.split(secret).join('***');
  }
  return out;
}

/**
 * Scrub secrets from an error's message, stack and cause chain in place (and from
 * Sequelize's `parent`/`original`), so it can be logged or serialised safely.
 */
export function scrubError<T>(error: T, secrets: readonly string[]): T {
  const seen = new Set<unknown>();
  let current: unknown = error;
  const queue: unknown[] = [current];
  while (queue.length > 0) {
    current = queue.shift();
    if (!current || typeof current !== 'object' || seen.has(current)) continue;
    seen.add(current);
    const e = current as Record<string, unknown>;
    for (const key of ['message', 'stack', 'sql', 'detail']) {
      const value = e[key];
      if (typeof value === 'string') {
        try {
          e[key] = redact(value, secrets);
        } catch {
          // read-only property: leave it
        }
      }
    }
    queue.push(e.cause, e.parent, e.original);
  }
  return error;
}
