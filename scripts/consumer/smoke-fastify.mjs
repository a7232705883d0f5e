import { fastifySessionLocal } from '@sessionlocal/adapter-fastify';
import Fastify from 'fastify';

export async function start({ SessionLocal, Note }) {
  const app = Fastify();
  await app.register(fastifySessionLocal, { factory: SessionLocal });
  app.post('/notes', async (request, reply) => {
    const note = await Note.create({ text: request.body.text });
    return reply.code(201).send({ id: note.get('id'), sameSession: SessionLocal.current() === request.db, inTransaction: request.db.inTransaction });
  });
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url: address, close: () => app.close() };
}
