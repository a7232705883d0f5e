import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopChild } from './child.js';

/** Where the `pgbouncer` binary is, or undefined. */
export function findPgbouncer(): string | undefined {
  const which = spawnSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' });
  const found = which.status === 0 ? which.stdout.trim() : '';
  if (found) return found;
  for (const candidate of ['/usr/sbin/pgbouncer', '/usr/local/sbin/pgbouncer', '/usr/local/bin/pgbouncer']) {
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** `pgbouncer --version`, first line. */
export function pgbouncerVersion(binary: string): string {
  const result = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  return (result.stdout || result.stderr).split('\n')[0]?.trim() ?? 'unknown';
}

export interface BouncerOptions {
  binary: string;
  port: number;
  postgresPort: number;
  /** user -> plaintext password (auth_file). */
  users: Record<string, string>;
  /** `ignore_startup_parameters` (comma separated), e.g. `statement_timeout`. */
  ignoreStartupParameters?: string;
  /** Run as this uid/gid (PgBouncer refuses to run as root). */
  uid?: number;
  gid?: number;
}

/** A PgBouncer in transaction pooling mode in front of database `chaos`. */
export class Bouncer {
  private child: ChildProcess | undefined;
  private readonly dir: string;
  log = '';

  constructor(readonly options: BouncerOptions) {
    this.dir = mkdtempSync(join(tmpdir(), 'sessionlocal-chaos-pgbouncer-'));
  }

  get port(): number {
    return this.options.port;
  }

  async start(timeoutMs = 20_000): Promise<void> {
    const { options, dir } = this;
    const userlist = Object.entries(options.users)
      .map(([user, password]) => `"${user}" "${password}"`)
      .join('\n');
    writeFileSync(join(dir, 'userlist.txt'), `${userlist}\n`, { mode: 0o600 });
    const ini = [
      '[databases]',
      `chaos = host=127.0.0.1 port=${options.postgresPort} dbname=chaos`,
      // a deliberately small pool: many client connections share two server connections
      `chaos_small = host=127.0.0.1 port=${options.postgresPort} dbname=chaos pool_size=2`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${options.port}`,
      'unix_socket_dir =',
      'auth_type = scram-sha-256',
      `auth_file = ${join(dir, 'userlist.txt')}`,
      'pool_mode = transaction',
      'default_pool_size = 20',
      'max_client_conn = 500',
      'server_check_delay = 0',
      // default 15 s: after a failed server login (PostgreSQL down) every client gets an error for 15 s
      // without a retry, so the apps "recover" ~13 s after PostgreSQL is back (measured; see README)
      'server_login_retry = 1',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      ...(options.ignoreStartupParameters ? [`ignore_startup_parameters = ${options.ignoreStartupParameters}`] : []),
      '',
    ].join('\n');
    writeFileSync(join(dir, 'pgbouncer.ini'), ini, { mode: 0o600 });
    if (options.uid !== undefined && options.gid !== undefined) {
      for (const file of ['', 'userlist.txt', 'pgbouncer.ini']) chownSync(join(dir, file), options.uid, options.gid);
    }
    const child = spawn(options.binary, [join(dir, 'pgbouncer.ini')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.uid !== undefined && { uid: options.uid, gid: options.gid }),
    });
    this.child = child;
    const collect = (chunk: Buffer) => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    const started = Date.now();
    for (let i = 0; i < 10_000; i++) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`pgbouncer exited (${child.exitCode ?? child.signalCode}):\n${this.log}`);
      if (await canConnect(options.port)) return;
      if (Date.now() - started > timeoutMs) throw new Error(`pgbouncer did not listen within ${timeoutMs} ms:\n${this.log}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(timeoutMs = 5_000): Promise<void> {
    if (this.child) await stopChild(this.child, 'SIGINT', timeoutMs);
    rmSync(this.dir, { recursive: true, force: true });
  }

  killSync(): void {
    if (this.child && this.child.exitCode === null) this.child.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
