import { sessionLocal } from '@sessionlocal/adapter-express';
import express from 'express';
import { SessionLocal } from './db.js';
import { Order, OrderLine } from './models.js';

/** The Express app, unchanged except for the one middleware line: handlers pass no transaction. */
export function createApp(): express.Express {
  const app = express();
  app.use(sessionLocal({ factory: SessionLocal })); // added
  app.use(express.json());
  app.post('/orders', async (req, res) => {
    const order = await Order.create({ customer: req.body.customer });
    for (const line of req.body.lines ?? []) await OrderLine.create({ ...line, orderId: order.id });
    res.status(201).json({ id: order.id });
  });
  app.get('/orders/:id', async (req, res) => {
    const order = await Order.findByPk(req.params.id, { include: [{ model: OrderLine, as: 'lines' }] });
    if (!order) return void res.status(404).json({});
    res.json({ customer: order.customer, lines: order.lines!.map((l) => `${l.quantity} x ${l.sku}`) });
  });
  app.use((_error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => void res.status(500).json({ error: 'internal' }));
  return app;
}
