// k6 load for one feedrank RPC, driven by bench/load.py (or by hand, see README).
// The request body is the `data` of a ghz config in deploy/ghz/, so ghz and k6 send the same calls.
// ghz template fields ({{.UUID}}, {{.RequestNumber}}, {{.TimestampUnixMilli}}) are filled per call here.
import grpc from 'k6/net/grpc';
import { check } from 'k6';

const config = JSON.parse(open(__ENV.GHZ_CONFIG));
const client = new grpc.Client();
client.load([__ENV.PROTO_ROOT], config.proto.replace(/^protos\//, ''));
const method = config.call.replace(/\.([A-Za-z]+)$/, '/$1');
const template = JSON.stringify(config.data);

export const options = {
  scenarios: {
    load: { executor: 'constant-vus', vus: Number(__ENV.VUS || 1), duration: __ENV.DURATION || '20s' },
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};

function body() {
  const n = `${__VU}-${__ITER}`;
  return JSON.parse(template
    .replaceAll('{{.UUID}}', `${n}-${Date.now()}-${Math.random().toString(16).slice(2)}`)
    .replaceAll('{{.RequestNumber}}', n)
    .replaceAll('"{{.TimestampUnixMilli}}"', `${Date.now()}`));
}

export default () => {
  if (__ITER === 0) {
    client.connect(__ENV.TARGET, { plaintext: true, timeout: '30s' });
  }
  const response = client.invoke(method, body(), { timeout: '60s', metadata: { 'x-request-id': `k6-${__VU}-${__ITER}` } });
  check(response, { 'status is OK': (r) => r && r.status === grpc.StatusOK });
};

export function handleSummary(data) {
  return { [__ENV.SUMMARY]: JSON.stringify(data) };
}
