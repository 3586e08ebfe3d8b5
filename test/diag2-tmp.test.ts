import t from 'tap';
import { gc } from './helpers/upstreams.js';
t.test('x', async (t) => {
  const { execArgv } = process;
  t.comment(execArgv.join(' '), process.env.NODE_V8_COVERAGE);
  await import('./diag-tmp.js').catch((e) => t.comment(String(e)));
});
