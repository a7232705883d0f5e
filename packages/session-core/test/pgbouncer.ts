import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where the `pgbouncer` binary is (`apt-get install -y pgbouncer`), or undefined. */
export function findPgbouncer(): string | undefined {
  const which = spawnSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) return which.stdout.trim();
  return ['/usr/sbin/pgbouncer', '/usr/local/sbin/pgbouncer', '/usr/local/bin/pgbouncer'].find((candidate) => existsSync(candidate));
}

/**
 * A PgBouncer in transaction pooling mode on a free 127.0.0.1 port in front of the database of
 * `url` (trust auth, as the test server; one server connection per database and user, so every
 * client's transactions share one backend). The same settings as `chaos/src/pgbouncer.ts`.
 */
export class TestBouncer {
  private child: ChildProcess | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), 'sessionlocal-test-pgbouncer-'));
  port = 0;
  log = '';

  constructor(
    private readonly binary: string,
    private readonly url: string,
  ) {}

  /** The URL of the test database through the bouncer. */
  get bouncedUrl(): string {
    const url = new URL(this.url);
    url.hostname = '127.0.0.1';
    url.port = String(this.port);
    return url.toString();
  }

  async start(): Promise<void> {
    const target = new URL(this.url);
    const database = target.pathname.slice(1);
    const user = decodeURIComponent(target.username || 'postgres');
    this.port = await freePort();
    writeFileSync(join(this.dir, 'userlist.txt'), `"${user}" "${decodeURIComponent(target.password)}"\n`, { mode: 0o600 });
    const ini = [
      '[databases]',
      `${database} = host=${target.hostname} port=${target.port || 5432} dbname=${database} pool_size=1`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${this.port}`,
      'unix_socket_dir =',
      `auth_type = ${target.password ? 'plain' : 'trust'}`,
      `auth_file = ${join(this.dir, 'userlist.txt')}`,
      'pool_mode = transaction',
      'max_client_conn = 100',
      'server_check_delay = 0',
      'server_login_retry = 1',
      'ignore_startup_parameters = extra_float_digits,options,statement_timeout,idle_in_transaction_session_timeout',
      `logfile = ${join(this.dir, 'pgbouncer.log')}`,
      `pidfile = ${join(this.dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n');
    writeFileSync(join(this.dir, 'pgbouncer.ini'), ini, { mode: 0o600 });
    // PgBouncer refuses to run as root
    const asNobody = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    if ('uid' in asNobody) for (const file of ['', 'userlist.txt', 'pgbouncer.ini']) chownSync(join(this.dir, file), 65534, 65534);
    const child = spawn(this.binary, [join(this.dir, 'pgbouncer.ini')], { stdio: ['ignore', 'pipe', 'pipe'], ...asNobody });
    this.child = child;
    const collect = (chunk: Buffer) => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    const deadline = Date.now() + 15_000;
    while (!(await canConnect(this.port))) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`pgbouncer exited (${child.exitCode ?? child.signalCode}):\n${this.log}`);
      if (Date.now() > deadline) throw new Error(`pgbouncer did not listen within 15 s:\n${this.log}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGINT');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
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
