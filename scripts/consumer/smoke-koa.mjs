import { sessionLocal } from '@sessionlocal/adapter-koa';
import Koa from 'koa';

export function start({ SessionLocal, Note, listen }) {
  const app = new Koa();
  app.use(sessionLocal({ factory: SessionLocal }));
  app.use(async (ctx) => {
    const note = await Note.create({ text: ctx.query.text });
    ctx.status = 201;
    ctx.body = { id: note.get('id'), sameSession: SessionLocal.current() === ctx.db, inTransaction: ctx.db.inTransaction };
  });
  return listen(app.callback());
}
