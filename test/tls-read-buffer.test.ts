// src/server/tls-read-buffer.ts: an accepted TLS socket reads into the one
// shared buffer, and once handed on its reads arrive as 'data' copies.
import t from 'tap';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { isShared, pushCopy, readInto } from '../src/server/tls-read-buffer.js';

t.test('reads land in the shared buffer; after the switch to pushCopy they are copies delivered as data', async (t) => {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], { keySize: 2048, algorithm: 'sha256' });
  const viaCallback: string[] = [];
  const viaData: string[] = [];
  let sharedSeen = 0;
  let copiesShared = 0;
  let enabled: boolean | undefined;
  const server = tls.createServer({ key: pems.private, cert: pems.cert }, (s) => {
    enabled = readInto(s, function (this: tls.TLSSocket, nread: number, buf: Buffer): boolean {
      if (isShared(buf)) sharedSeen++;
      const text = buf.toString('latin1', 0, nread);
      viaCallback.push(text);
      this.write(`ack ${text}\n`);
      // After the first message the socket is "handed on": later reads become 'data' events.
      if (text === 'first') readInto(s, pushCopy);
      return true;
    });
    s.on('data', (d: Buffer) => {
      if (isShared(d)) copiesShared++;
      viaData.push(d.toString('latin1'));
      s.write(`data ${d.toString('latin1')}\n`);
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;

  const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
  t.teardown(() => c.destroy());
  let got = '';
  let want = 0;
  let wake: (() => void) | null = null;
  c.on('data', (d: Buffer) => {
    got += d.toString('latin1');
    if (wake !== null && got.split('\n').length - 1 >= want) wake();
  });
  c.on('error', () => undefined);
  const lines = (n: number): Promise<void> =>
    new Promise((resolve) => {
      want = n;
      wake = resolve;
      if (got.split('\n').length - 1 >= n) resolve();
    });
  await new Promise<void>((r) => c.once('secureConnect', () => r()));
  c.write('first');
  await lines(1);
  c.write('second');
  await lines(2);
  c.write('third');
  await lines(3);

  t.equal(enabled, true, 'this Node supports reading a TLS server socket into a caller buffer');
  t.same(viaCallback, ['first'], 'the first read went to the callback');
  t.equal(sharedSeen, 1, 'in the shared buffer');
  t.same(viaData, ['second', 'third'], "after the switch, reads are 'data' events");
  t.equal(copiesShared, 0, 'as copies, never views of the shared buffer');
  t.equal(got, 'ack first\ndata second\ndata third\n', 'the client got every answer in order');
});
