// The proxy-http suite against the undici forwarder, which still carries
// https upstreams (lean-forwarder.ts): both paths must keep the same behaviour.
process.env.EDGEWAY_TEST_FORWARDER = 'undici';
await import('./proxy-http.test.js');
