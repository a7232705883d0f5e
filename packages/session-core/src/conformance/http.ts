import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';

/** A finished HTTP exchange. */
export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: any;
}

export interface RequestOptions {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: unknown;
  agent?: http.Agent | false;
  /** Send the headers first and the body later, in two parts (the body then arrives in events of the socket, not of the request). */
  trickleMs?: number;
  /** Runs when the status line and headers arrived, before the body is read. */
  onResponse?: (res: IncomingMessage) => Promise<void> | void;
}

/** Start a request over a real socket; `response` resolves at the status line. */
export function send(url: string, path: string, options: RequestOptions = {}): { req: http.ClientRequest; response: Promise<IncomingMessage> } {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  const headers: Record<string, string> = { ...options.headers };
  if (payload !== undefined) {
    headers['content-type'] ??= 'application/json';
    headers['content-length'] = String(Buffer.byteLength(payload));
  }
  const req = http.request(`${url}${path}`, { method: options.method ?? (payload === undefined ? 'GET' : 'POST'), headers, agent: options.agent ?? false });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  if (options.trickleMs === undefined || payload === undefined) {
    req.end(payload);
  } else {
    const half = Math.floor(payload.length / 2);
    const ms = options.trickleMs;
    req.flushHeaders();
    setTimeout(() => {
      req.write(payload.slice(0, half));
      setTimeout(() => req.end(payload.slice(half)), ms);
    }, ms);
  }
  return { req, response };
}

/** Read a whole response body. */
export async function readBody(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** One request, read to the end. */
export async function request(url: string, path: string, options: RequestOptions = {}): Promise<Reply> {
  const { response } = send(url, path, options);
  const res = await response;
  if (options.onResponse) await options.onResponse(res);
  const text = await readBody(res);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode ?? 0, headers: res.headers, text, json };
}
