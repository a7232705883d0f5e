const TAIL = Symbol('sessionlocal.tail');

interface Serial {
  [TAIL]?: Promise<unknown>;
}

const settle = () => {};

/**
 * Run `task` after every task queued before it on the same connection. pg 8 warns when one
 * client is given a second query before the first finished (pg 9 refuses), and a session's
 * statements must keep their order anyway.
 */
export function serial<T>(connection: object, task: () => Promise<T>): Promise<T> {
  const holder = connection as Serial;
  const previous = holder[TAIL];
  const run = previous ? previous.then(task, task) : task();
  holder[TAIL] = run.then(settle, settle);
  return run;
}

/** @internal Statements queued on `from` finish before any queued on `to` (a session moved to a fresh connection). */
export function handOver(from: object, to: object): void {
  const previous = (from as Serial)[TAIL];
  if (previous) (to as Serial)[TAIL] = previous;
}
