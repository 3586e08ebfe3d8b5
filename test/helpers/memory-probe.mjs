// Preloaded into a spawned edgeway by the tests (node --expose-gc --import
// this file): on SIGUSR2 it runs a full garbage collection and prints one JSON
// line with the process's memory figures, so a test can tell retained memory
// from garbage not yet collected. Plain JavaScript: the child runs dist/ as is.

process.on('SIGUSR2', () => {
  if (typeof globalThis.gc === 'function') {
    globalThis.gc();
    globalThis.gc();
  }
  const m = process.memoryUsage();
  process.stdout.write(`${JSON.stringify({ msg: 'edgeway-test memory', gc: typeof globalThis.gc === 'function', ...m })}\n`);
});
