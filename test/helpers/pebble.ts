// A real ACME server for tests (issue 5): Pebble and pebble-challtestsrv from
// the Debian package `pebble`. Debian ships no TLS certificates for Pebble,
// so a throwaway CA and a localhost certificate are made with openssl.
// Validation is real DNS-01: Pebble asks challtestsrv's DNS server on a
// loopback port (`-dnsserver`), where edgeway's webhook puts the TXT records.
// PEBBLE_VA_NOSLEEP=1 skips Pebble's random validation delay,
// PEBBLE_WFE_NONCEREJECT=0 its random bad-nonce answers, PEBBLE_AUTHZREUSE=0
// its reuse of valid authorizations (every order then proves DNS control
// again, which the fault tests rely on). Never PEBBLE_VA_ALWAYS_VALID.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Null when pebble, pebble-challtestsrv and openssl are installed, else what to install. */
export function missingPebble(): string | null {
  for (const bin of ['/usr/bin/pebble', '/usr/bin/pebble-challtestsrv', '/usr/bin/openssl']) {
    try {
      accessSync(bin, constants.X_OK);
    } catch {
      return `${bin} is missing: apt-get install -y pebble openssl (CI does this in .ci/run)`;
    }
  }
  return null;
}

/** A port free for TCP and UDP on 127.0.0.1 (challtestsrv's DNS listens on both). */
async function freePort(udp = false): Promise<number> {
  for (;;) {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise((r) => srv.close(r));
    if (!udp) return port;
    const sock = dgram.createSocket('udp4');
    const ok = await new Promise<boolean>((r) => {
      sock.once('error', () => r(false));
      sock.bind(port, '127.0.0.1', () => r(true));
    });
    await new Promise<void>((r) => sock.close(() => r()));
    if (ok) return port;
  }
}

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not come up within ${timeoutMs} ms`);
}

function get(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

export interface Pebble {
  /** ACME directory URL (https://localhost:PORT/dir). */
  readonly directoryUrl: string;
  /** PEM of the CA that signed Pebble's own https certificate (tls.acme.ca_file). */
  readonly caFile: string;
  /** challtestsrv's management API: the webhook URL. */
  readonly hookUrl: string;
  /** Pebble's issuing root, fetched from its management port (/roots/0). */
  root(): Promise<string>;
  /** Stops challtestsrv (DNS and webhook down). */
  stopDns(): Promise<void>;
  /** Starts challtestsrv again on the same ports. */
  startDns(): Promise<void>;
  /** Stops Pebble (the ACME server is down). */
  stopAcme(): Promise<void>;
  /** Starts Pebble again on the same ports: a new root, and every account forgotten. */
  startAcme(): Promise<void>;
  /** Pebble's https certificate and key (localhost, signed by caFile), for a fake ACME server. */
  readonly tlsCert: string;
  readonly tlsKey: string;
}

export async function startPebble(t: Teardown): Promise<Pebble> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-pebble-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const ssl = (args: string[]): Promise<unknown> => run('openssl', args, { cwd: dir });
  await ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=edgeway test pebble https CA']);
  await ssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'key.pem', '-out', 'req.csr', '-subj', '/CN=localhost']);
  await writeFile(join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  await ssl(['x509', '-req', '-in', 'req.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'cert.pem', '-days', '2', '-extfile', 'san.ext']);
  const ca = await readFile(join(dir, 'ca.pem'), 'utf8');

  const [acmePort, mgmtPort, dnsPort, hookPort, httpPort, tlsPort] = [
    await freePort(), await freePort(), await freePort(true), await freePort(), await freePort(), await freePort(),
  ];
  await writeFile(
    join(dir, 'pebble.json'),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: join(dir, 'cert.pem'),
        privateKey: join(dir, 'key.pem'),
        httpPort,
        tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }),
  );

  const children = new Set<ChildProcess>();
  const start = (cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
    child.stderr!.resume();
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  };
  const stop = async (child: ChildProcess): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await gone;
  };
  t.teardown(async () => {
    for (const c of [...children]) await stop(c);
  });

  let dns: ChildProcess | undefined;
  const hookUrl = `http://127.0.0.1:${hookPort}`;
  const startDns = async (): Promise<void> => {
    dns = start('/usr/bin/pebble-challtestsrv', [
      '-management', `127.0.0.1:${hookPort}`, '-dns01', `127.0.0.1:${dnsPort}`,
      '-http01', '', '-https01', '', '-tlsalpn01', '', '-defaultIPv6', '',
    ]);
    await waitFor('pebble-challtestsrv', async () => (await fetch(`${hookUrl}/clear-txt`, { method: 'POST', body: '{"host":"probe.test."}' })).ok);
  };
  await startDns();
  const directoryUrl = `https://localhost:${acmePort}/dir`;
  let acme: ChildProcess | undefined;
  const startAcme = async (): Promise<void> => {
    acme = start('/usr/bin/pebble', ['-config', join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dnsPort}`], {
      PEBBLE_VA_NOSLEEP: '1',
      PEBBLE_WFE_NONCEREJECT: '0',
      PEBBLE_AUTHZREUSE: '0',
    });
    await waitFor('pebble', async () => (await get(directoryUrl, ca)).status === 200);
  };
  await startAcme();

  return {
    directoryUrl,
    caFile: join(dir, 'ca.pem'),
    hookUrl,
    async root() {
      const r = await get(`https://localhost:${mgmtPort}/roots/0`, ca);
      if (r.status !== 200) throw new Error(`pebble /roots/0 answered ${r.status}`);
      return r.body;
    },
    async stopDns() {
      if (dns !== undefined) await stop(dns);
    },
    startDns,
    async stopAcme() {
      if (acme !== undefined) await stop(acme);
    },
    startAcme,
    tlsCert: join(dir, 'cert.pem'),
    tlsKey: join(dir, 'key.pem'),
  };
}
