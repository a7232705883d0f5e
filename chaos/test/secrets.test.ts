import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { createEngine, sessionmaker, type Engine } from '@sessionlocal/session-core';
import { freePort, startEmbeddedPostgres, type EmbeddedDatabase } from '@sessionlocal/session-core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

// A password with characters that URLs must escape: both its raw and its encoded form must stay hidden.
const PASSWORD = `Pw-${randomBytes(6).toString('hex')}-p@ss/w:rd`;
const WRONG = `Wrong-${randomBytes(6).toString('hex')}-pw`;
const ROLE = `sl_secret_${randomBytes(3).toString('hex')}`;
const forms = (secret: string) => [secret, encodeURIComponent(secret)];

/** Everything an error exposes: message, stack, the cause/parent/original chain, JSON, util.inspect. */
function exposures(error: unknown): string[] {
  const out: string[] = [];
  const seen = new Set<unknown>();
  const queue: unknown[] = [error];
  while (queue.length > 0) {
    const current = queue.shift();
    if (!current || typeof current !== 'object' || seen.has(current)) continue;
    seen.add(current);
    const e = current as Record<string, unknown>;
    for (const key of ['message', 'stack', 'sql', 'detail', 'hint', 'url']) if (typeof e[key] === 'string') out.push(e[key] as string);
    queue.push(e.cause, e.parent, e.original, ...(Array.isArray(e.errors) ? e.errors : []));
  }
  try {
    out.push(JSON.stringify(error) ?? '');
  } catch (serialise) {
    out.push(`JSON.stringify threw: ${String(serialise)}`);
  }
  out.push(inspect(error, { depth: 8, showHidden: true }));
  out.push(String(error));
  return out;
}

function expectHidden(error: unknown, secrets: string[]): void {
  expect(error).toBeDefined();
  const text = exposures(error).join('\n----\n');
  for (const secret of secrets.flatMap(forms)) expect(text, `the secret ${JSON.stringify(secret)} leaked`).not.toContain(secret);
}

async function caught(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}

let base: URL;
const engines: Engine[] = [];
const engine = (url: string, options: Parameters<typeof createEngine>[1] = {}) => {
  const e = createEngine(url, { pool: { max: 2, acquireTimeoutMs: 15_000 }, ...options });
  engines.push(e);
  return e;
};
const urlWith = (user: string, password: string, host: string, port: string | number, db = 'postgres') => `postgres://${user}:${encodeURIComponent(password)}@${host}:${port}/${db}`;

/** The three places a connection error surfaces: a session's first query, `engine.ping()`. */
async function connectionErrors(url: string): Promise<unknown[]> {
  const e = engine(url);
  const SessionLocal = sessionmaker(e);
  const first = await caught(() => SessionLocal.begin(async () => e.sequelize.query('SELECT 1')));
  const ping = await caught(() => e.ping());
  return [first, ping];
}

// Its own embedded server (scram-sha-256), whatever DATABASE_URL says: a wrong password must be
// refused for the test to mean anything, and a development server may well use trust auth.
let server: EmbeddedDatabase;

beforeAll(async () => {
  server = await startEmbeddedPostgres();
  base = new URL(server.url);
  const admin = new pg.Client({ connectionString: base.toString() });
  await admin.connect();
  await admin.query(`CREATE ROLE ${ROLE} LOGIN PASSWORD '${PASSWORD.replace(/'/g, "''")}'`);
  await admin.end();
});

afterAll(async () => {
  await Promise.all(engines.map((e) => e.dispose({ timeoutMs: 1_000 }).catch(() => {})));
  const admin = new pg.Client({ connectionString: base.toString() });
  await admin.connect();
  await admin.query(`DROP ROLE IF EXISTS ${ROLE}`);
  await admin.end();
  await server?.stop();
});

describe('a password never appears in an error, its cause chain, its JSON or a log line', () => {
  test('the role with the known password works (control)', async () => {
    const e = engine(urlWith(ROLE, PASSWORD, '127.0.0.1', base.port));
    expect(await e.ping()).toBeGreaterThanOrEqual(0);
    expect(e.url).not.toContain(encodeURIComponent(PASSWORD));
  });

  test('malformed URLs and unsupported dialects: createEngine throws ConfigError without the password', async () => {
    const P = encodeURIComponent(PASSWORD);
    const bad = [
      `postgres://u:${P}@127.0.0.1:notaport/db`,
      `postgres://u:${P}@[::1/db`,
      `postgres://u:${P}@127.0.0.1:99999/db`,
      `postgres://u:${P}@/db`,
      `postgres://u:${P}@127.0.0.1:5432/`,
      `mysql://u:${P}@127.0.0.1/db`,
    ];
    for (const url of bad) {
      const error = await caught(() => createEngine(url));
      expect((error as { code?: string }).code, url).toBe('CONFIG_INVALID');
      expect((error as { field?: string }).field).toBe('url');
      expectHidden(error, [PASSWORD]);
    }
  });

  test('undecodable percent-escapes in the database or password: no password in the error', async () => {
    for (const url of [`postgres://u:${encodeURIComponent(PASSWORD)}@127.0.0.1:5432/db%`, `postgres://u:${encodeURIComponent(PASSWORD)}%ZZ@127.0.0.1:5432/db`]) {
      expectHidden(await caught(() => createEngine(url)), [PASSWORD]);
    }
  });

  // Found by this suite, fixed in 3385304: this was a bare `URIError: URI malformed`.
  test('undecodable percent-escapes are a ConfigError naming the url', async () => {
    const error = await caught(() => createEngine(`postgres://u:${encodeURIComponent(PASSWORD)}@127.0.0.1:5432/db%`));
    expect((error as { code?: string }).code).toBe('CONFIG_INVALID');
  });

  // Found by this suite, fixed in 3385304: a scheme-less URL parsed as the scheme `user:` and the
  // ConfigError printed the rest, password included.
  test('a URL without its scheme (user:password@host/db): ConfigError without the password', () => {
    let error: unknown;
    try {
      createEngine(`u:${PASSWORD}@127.0.0.1/db`);
    } catch (e) {
      error = e;
    }
    expect((error as { code?: string }).code).toBe('CONFIG_INVALID');
    expectHidden(error, [PASSWORD]);
  });

  test('refused connection (nothing listens on the port)', async () => {
    const port = await freePort();
    for (const error of await connectionErrors(urlWith('u', PASSWORD, '127.0.0.1', port))) expectHidden(error, [PASSWORD]);
  });

  test('wrong password on a scram-sha-256 server', async () => {
    const errors = await connectionErrors(urlWith(ROLE, WRONG, '127.0.0.1', base.port));
    for (const error of errors) {
      expect(exposures(error).join('\n')).toMatch(/password authentication failed|28P01/);
      expectHidden(error, [WRONG, PASSWORD]);
    }
  });

  test('DNS failure (nonexistent.invalid)', async () => {
    for (const error of await connectionErrors('postgres://u:secret@nonexistent.invalid/db')) {
      // "secret" is an ordinary word: look for the URL form, and for the distinctive password too
      const text = exposures(error).join('\n');
      expect(text).not.toContain('u:secret@');
      expect(text).not.toMatch(/password.{0,5}secret/i);
    }
    for (const error of await connectionErrors(urlWith('u', PASSWORD, 'nonexistent.invalid', 5432, 'db'))) expectHidden(error, [PASSWORD]);
  });

  test('echo logging and query errors never print the password', async () => {
    const lines: string[] = [];
    const e = engine(urlWith(ROLE, PASSWORD, '127.0.0.1', base.port), { echo: (sql) => lines.push(sql) });
    const SessionLocal = sessionmaker(e, { settings: { 'app.note': 'x' } });
    await SessionLocal.begin(async () => {
      await e.sequelize.query('SELECT 1');
      await e.sequelize.query(`SELECT '${PASSWORD.replace(/'/g, "''")}' AS pasted`); // a user pasting the password into SQL
    });
    const failed = await caught(() => SessionLocal.begin(async () => e.sequelize.query('SELECT no_such_column FROM no_such_table')));
    expectHidden(failed, [PASSWORD]);
    expect(lines.length).toBeGreaterThan(3);
    expect(lines.join('\n')).toMatch(/BEGIN/);
    for (const secret of forms(PASSWORD)) expect(lines.join('\n')).not.toContain(secret);
    // the engine's own description
    expect(inspect(e.url)).not.toContain(encodeURIComponent(PASSWORD));
  });
});
