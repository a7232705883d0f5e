import { readFileSync } from 'node:fs';

/** One fenced code block of a Markdown file. */
export interface Block {
  /** Path relative to the repository root, e.g. `docs/testing.md`. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  /** `name=value` attributes after the language (```ts file=app.ts). */
  attributes: Record<string, string>;
  /** The `<!-- run ... -->` marker on the line before the fence, if any. */
  run: RunMarker | undefined;
  code: string;
}

/**
 * How a block is executed. `<!-- run -->`: a script that must exit 0. `<!-- run server: GET /x -> 200; ... -->`:
 * a program that prints its `http://` URL, gets the listed requests, must answer with those statuses (and
 * bodies containing the text after `~`, if given) and
 * is then stopped. `<!-- run vitest -->`: a vitest test file. `user=NAME password=SECRET` connects it as
 * that role instead of the administrator.
 */
export interface RunMarker {
  mode: 'script' | 'server' | 'vitest';
  user?: { name: string; password: string };
  requests: ScriptedRequest[];
}

export interface ScriptedRequest {
  method: string;
  path: string;
  body: unknown;
  status: number;
  /** Text the response body must contain (`-> 200 ~ TEXT`). */
  contains: string | undefined;
}

/** Languages that are not code: shown to the reader, checked by nobody. */
export const NOT_CODE = new Set(['text', 'ini', 'python', 'mermaid']);
/** Languages the test checks. */
export const CHECKED = new Set(['ts', 'sql', 'bash', 'json']);

const FENCE = /^(`{3,}|~{3,})\s*([\w-]*)\s*(.*)$/;
const RUN = /^<!--\s*run\b(.*?)-->\s*$/;

/** Every fenced block of `path` (read from disk), named as `file` in messages. */
export function extractBlocks(path: string, file: string): Block[] {
  const lines = readFileSync(path, 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!);
    if (!open) continue;
    const [, fence, lang = '', info = ''] = open;
    const start = i;
    const body: string[] = [];
    const close = new RegExp(`^${fence![0]}{${fence!.length},}\\s*$`);
    for (i++; i < lines.length && !close.test(lines[i]!); i++) {
      body.push(lines[i]!);
    }
    if (i >= lines.length) throw new Error(`${file}:${start + 1}: the code fence is never closed`);
    const attributes = Object.fromEntries([...info.matchAll(/([\w-]+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
    const previous = start > 0 ? lines[start - 1]!.trim() : '';
    const marker = RUN.exec(previous);
    blocks.push({
      file,
      line: start + 1,
      lang,
      attributes,
      run: marker ? parseRunMarker(marker[1]!, `${file}:${start}`) : undefined,
      code: body.join('\n'),
    });
  }
  return blocks;
}

function parseRunMarker(text: string, where: string): RunMarker {
  const [head = '', requestList] = text.split(/:(.*)/s);
  const words = head.trim().split(/\s+/).filter(Boolean);
  const options = Object.fromEntries(words.filter((w) => w.includes('=')).map((w) => w.split('=', 2) as [string, string]));
  const flags = words.filter((w) => !w.includes('='));
  const mode = flags.includes('server') ? 'server' : flags.includes('vitest') ? 'vitest' : 'script';
  const marker: RunMarker = { mode, requests: [] };
  if (options.user) marker.user = { name: options.user, password: options.password ?? '' };
  for (const spec of (requestList ?? '')
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^(GET|POST|PUT|PATCH|DELETE)\s+(\S+)\s*(.*?)\s*->\s*(\d{3})(?:\s+~\s*(.+))?$/.exec(spec);
    if (!m) throw new Error(`${where}: cannot read the request "${spec}" (expected: METHOD /path [JSON] -> STATUS [~ TEXT])`);
    marker.requests.push({ method: m[1]!, path: m[2]!, body: m[3] ? JSON.parse(m[3]) : undefined, status: Number(m[4]), contains: m[5] });
  }
  if (mode === 'server' && marker.requests.length === 0) throw new Error(`${where}: a server block needs at least one request`);
  return marker;
}

/** The block's file name under `.blocks/<doc>/`: its `file=` attribute, else `L<line>.ts`. */
export function blockFileName(block: Block): string {
  return block.attributes.file ?? `L${block.line}.${block.lang}`;
}
