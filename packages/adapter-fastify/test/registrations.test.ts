import Fastify from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ConfigError, createEngine, sessionmaker, type Engine, type Session } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { fastifySessionLocal } from '../src/index.js';

let db: TestDatabase;
let first: Engine;
let second: Engine;

beforeAll(async () => {
  db = await createTestDatabase();
  first = createEngine(db.url, { pool: { max: 2 } });
  second = createEngine(db.url, { pool: { max: 2 } });
  await first.autocommit(() => first.sequelize.query('CREATE TABLE written (engine text)'));
});

afterAll(async () => {
  await first?.dispose();
  await second?.dispose();
  await db?.drop();
});

const rows = async (engine: string) => {
  const [result] = await first.autocommit(() => first.sequelize.query('SELECT count(*)::int AS n FROM written WHERE engine = $1', { bind: [engine] }));
  return (result as Array<{ n: number }>)[0]!.n;
};

it('two registrations (two engines), the second under its own name: each request gets both sessions, each commits', async () => {
  const First = sessionmaker(first);
  const Second = sessionmaker(second);
  const app = Fastify();
  await app.register(fastifySessionLocal, { factory: First });
  await app.register(fastifySessionLocal, { factory: Second, name: 'reportsDb' });
  app.post('/both', async (request, reply) => {
    const reports = (request as unknown as { reportsDb: Session }).reportsDb;
    await first.sequelize.query(`INSERT INTO written VALUES ('first')`);
    await second.sequelize.query(`INSERT INTO written VALUES ('second')`);
    return reply.code(201).send({ distinct: request.db !== reports, current: First.current() === request.db && Second.current() === reports });
  });
  const reply = await app.inject({ method: 'POST', url: '/both' });
  expect(reply.statusCode).toBe(201);
  expect(reply.json()).toEqual({ distinct: true, current: true });
  expect([await rows('first'), await rows('second')]).toEqual([1, 1]);
  expect([first.stats().pool.inUse, second.stats().pool.inUse]).toEqual([0, 0]);
  await app.close();
});

it('a second registration under the same name is refused with a ConfigError naming the option', async () => {
  const app = Fastify();
  await app.register(fastifySessionLocal, { factory: sessionmaker(first) });
  await expect(app.register(fastifySessionLocal, { factory: sessionmaker(second) })).rejects.toSatisfy((error: unknown) => error instanceof ConfigError && error.field === 'name');
  await app.close().catch(() => undefined);
});

it('bad per-route options are refused when the route is added, not at its first request', async () => {
  const app = Fastify();
  await app.register(fastifySessionLocal, { factory: sessionmaker(first) });
  expect(() => app.get('/bad', { config: { sessionLocal: { commitWhen: 'yes' as never } } }, async () => ({}))).toThrow(/commitWhen/);
  await app.close().catch(() => undefined);
});
