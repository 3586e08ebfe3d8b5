// Issue 2: a real browser through edgeway. Headless Debian Chromium, driven by
// playwright-core, resolves the test domain to 127.0.0.1, trusts the
// appliance's local CA through an NSS database (no certificate-error
// switches), loads a page on an org host and on a uc host over TLS and
// exchanges websocket messages with the upstream from those pages.

import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { admin, ORG_HOST, startTestAppliance, UC_HOST } from './helpers/appliance.js';
import { browserHome, launchChromium, missingTools, pageUpstream } from './helpers/browser.js';

/** The CN of an X.509 subject or issuer ("CN=…\nO=…"). */
function commonName(dn: string): string | undefined {
  return dn
    .split('\n')
    .find((part) => part.startsWith('CN='))
    ?.slice(3);
}

interface WsResult {
  readonly replies: string[];
  readonly binary: number[];
  readonly protocol: string;
  readonly close: { code: number; reason: string; wasClean: boolean };
}

/** Runs in the page: opens wss://<page host>/ws, sends `msgs` and one binary frame, returns what came back. */
function wsRoundTrip(msgs: string[]): Promise<WsResult> {
  const g = globalThis as unknown as { location: { host: string }; WebSocket: typeof WebSocket };
  return new Promise<WsResult>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('websocket round trip timed out')), 10_000);
    const ws = new g.WebSocket(`wss://${g.location.host}/ws`);
    ws.binaryType = 'arraybuffer';
    const replies: string[] = [];
    let binary: number[] = [];
    ws.onerror = () => {
      clearTimeout(timer);
      reject(new Error('websocket error'));
    };
    ws.onopen = () => {
      for (const m of msgs) ws.send(m);
      ws.send(new Uint8Array([0, 1, 2, 253, 254, 255]));
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data === 'string') replies.push(ev.data);
      else binary = Array.from(new Uint8Array(ev.data as ArrayBuffer));
      if (replies.length === msgs.length && binary.length > 0) ws.close(1000, 'done');
    };
    ws.onclose = (ev: CloseEvent) => {
      clearTimeout(timer);
      resolve({ replies, binary, protocol: ws.protocol, close: { code: ev.code, reason: ev.reason, wasClean: ev.wasClean } });
    };
  });
}

t.test('headless Chromium loads org and uc pages over TLS and talks websocket through edgeway', async (t) => {
  const missing = missingTools();
  if (missing !== null) {
    t.fail(missing);
    return;
  }

  const ta = await startTestAppliance(t);
  const up = await pageUpstream(t);
  for (const host of [ORG_HOST, UC_HOST]) {
    const r = await admin(ta, 'PUT', `/v1/hosts/${host}`, {
      access: 'public',
      locations: [{ path: '/', upstream: up.url }],
    });
    t.equal(r.status, 201, `registered ${host}`);
  }
  const caCn = commonName(new X509Certificate(ta.caPem).subject);
  t.ok(caCn, 'the local CA has a CN');

  // Two browsers at once: one whose NSS database trusts the local CA, one
  // with an empty HOME (the control: the trust is real, not a bypass).
  const [trusted, untrusted] = await Promise.all([
    browserHome(t, ta.caPem).then((home) => launchChromium(t, home)),
    browserHome(t).then((home) => launchChromium(t, home)),
  ]);

  await t.test('without the CA in NSS the certificate is refused', async (t) => {
    const page = await (await untrusted.newContext()).newPage();
    await t.rejects(page.goto(`https://${ORG_HOST}:${ta.httpsPort}/`), /net::ERR_CERT_AUTHORITY_INVALID/);
  });

  for (const [label, host] of [
    ['org host', ORG_HOST],
    ['uc host', UC_HOST],
  ] as const) {
    await t.test(label, async (t) => {
      const authority = `${host}:${ta.httpsPort}`;
      const upgradesBefore = up.upgrades.length;
      const context = await trusted.newContext();
      const page = await context.newPage();
      // The DevTools protocol reports the leaf's SAN list, which Playwright's
      // securityDetails() leaves out.
      const cdp = await context.newCDPSession(page);
      await cdp.send('Network.enable');
      let sanList: string[] | undefined;
      cdp.on('Network.responseReceived', (e) => {
        if (e.type === 'Document') sanList = e.response.securityDetails?.sanList;
      });

      const res = await page.goto(`https://${authority}/`);
      if (res === null) throw new Error('no response');
      t.equal(res.status(), 200, 'page loads');
      t.ok(res.ok(), 'response ok');
      t.equal(await page.title(), 'edgeway browser test', 'the upstream page, not an edgeway error page');

      const sec = await res.securityDetails();
      t.same(sanList, [host], 'leaf SAN is exactly this host (no wildcard)');
      // A CN holds at most 64 characters (RFC 5280 ub-common-name); longer
      // names (every uc host) live in the SAN only.
      t.equal(sec?.subjectName, host.length <= 64 ? host : '', 'leaf CN is the host when it fits');
      t.equal(sec?.issuer, caCn, 'leaf issued by the local CA');
      t.match(sec?.protocol, /^TLS 1\.[23]$/, 'TLS 1.2 or 1.3');
      t.equal(await page.evaluate(() => (globalThis as unknown as { isSecureContext: boolean }).isSecureContext), true, 'secure context');

      t.equal(await page.textContent('#host'), authority, 'Host reaches the upstream unchanged, port included');
      const headers = JSON.parse((await page.textContent('#headers')) ?? '{}') as Record<string, string>;
      t.equal(headers['x-forwarded-proto'], 'https', 'X-Forwarded-Proto');
      t.equal(headers['x-forwarded-host'], authority, 'X-Forwarded-Host');

      const msgs = ['hello', `from ${label}`, 'ünïcødé ✓', 'x'.repeat(70_000)];
      const ws = await page.evaluate(wsRoundTrip, msgs);
      t.same(ws.replies, msgs.map((m) => `echo:${m}`), 'text messages echoed in order');
      t.same(ws.binary, [0, 1, 2, 253, 254, 255], 'binary frame echoed');
      t.same(ws.close, { code: 1000, reason: 'done', wasClean: true }, 'clean close');

      t.same(
        up.upgrades.slice(upgradesBefore),
        [{ host: authority, origin: `https://${authority}`, url: '/ws' }],
        'one upgrade reached the upstream with Host and Origin unchanged',
      );
      await context.close();
    });
  }
});
