import { sessionLocal } from '@sessionlocal/adapter-express';
import express from 'express';

export function start({ SessionLocal, Note, listen }) {
  const app = express();
  app.use(express.json());
  app.use(sessionLocal({ factory: SessionLocal }));
  app.post('/notes', async (req, res) => {
    const note = await Note.create({ text: req.body.text });
    res.status(201).json({ id: note.get('id'), sameSession: SessionLocal.current() === req.db, inTransaction: req.db.inTransaction });
  });
  return listen(app);
}
