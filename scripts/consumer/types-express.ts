import { sessionLocal } from '@sessionlocal/adapter-express';
import type { Session } from '@sessionlocal/session-core';
import express from 'express';
import { type IsAny, SessionLocal } from './types-core.js';

const app = express();
app.use(express.json());
app.use(sessionLocal({ factory: SessionLocal, commitWhen: (status) => status < 400, finish: 'before-response', settings: (req) => ({ 'app.user_id': req.get('x-user-id') ?? '' }) }));
app.post('/notes', async (req, res) => {
  const notAny: IsAny<typeof req.db> = false;
  const db: Session | null | undefined = req.db;
  res.status(201).json({ notAny, session: db?.id, signal: req.db?.signal.aborted });
});
export { app };
