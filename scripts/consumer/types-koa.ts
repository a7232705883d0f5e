import { sessionLocal } from '@sessionlocal/adapter-koa';
import type { Session } from '@sessionlocal/session-core';
import Koa from 'koa';
import { type IsAny, SessionLocal } from './types-core.js';

const app = new Koa();
app.use(sessionLocal({ factory: SessionLocal, commitWhen: (status) => status < 400, readOnly: (ctx) => ctx.method === 'GET' }));
app.use(async (ctx) => {
  const notAny: IsAny<typeof ctx.db> = false;
  const db: Session | null | undefined = ctx.db;
  ctx.status = 201;
  ctx.body = { notAny, session: db?.id, signal: ctx.db?.signal.aborted };
});
export { app };
