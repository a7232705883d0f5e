import { fastifySessionLocal } from '@sessionlocal/adapter-fastify';
import type { Session } from '@sessionlocal/session-core';
import Fastify from 'fastify';
import { type IsAny, SessionLocal } from './types-core.js';

export async function build() {
  const app = Fastify();
  await app.register(fastifySessionLocal, { factory: SessionLocal, commitWhen: (status) => status < 400, finish: 'before-response' });
  app.post('/notes', async (request, reply) => {
    const notAny: IsAny<typeof request.db> = false;
    const db: Session | null | undefined = request.db;
    return reply.code(201).send({ notAny, session: db?.id, signal: request.db?.signal.aborted });
  });
  return app;
}
