// bench: the k6 load of `make bench` (loadtest/bench drives it; it is not a
// scenario to run by hand). One configurable scenario:
//   WORKLOAD  mix (browse 80% / order 15% / read 5%) or orders (orders only)
//   MODE      closed: VUS virtual users back to back, no think time (the
//             most the stack serves); open: RATE arrivals per second (the
//             latency at a given load)
//   DURATION  length, default 20s
// The thresholds are only the error rate: the bench judges the figures itself.
import { Rate } from 'k6/metrics';
import { mix, placeOrder, summary, trendStats } from './lib.js';

const mode = __ENV.MODE || 'closed';
const workload = __ENV.WORKLOAD || 'mix';
const dur = __ENV.DURATION || '20s';
const rate = parseInt(__ENV.RATE || '100', 10);
const vus = parseInt(__ENV.VUS || '16', 10);

export const options = {
  scenarios: {
    bench: mode === 'open'
      ? { executor: 'constant-arrival-rate', rate, timeUnit: '1s', duration: dur,
        preAllocatedVUs: Math.max(16, Math.ceil(rate / 10)), maxVUs: Math.max(64, rate) }
      : { executor: 'constant-vus', vus, duration: dur },
  },
  // unexpected is the only real threshold; the others always pass and are
  // there so the summary keeps these per-call percentiles.
  thresholds: {
    unexpected: ['rate<0.05'],
    'http_req_duration{name:product}': ['max>=0'],
    'http_req_duration{name:create_order}': ['max>=0'],
  },
  summaryTrendStats: trendStats,
  discardResponseBodies: false,
};

// http2 is the share of orders sent over HTTP/2: the gateway's protocol
// (ALPN over TLS 1.3) in the bench's trust phase; the services themselves
// speak HTTP/1.1.
const http2 = new Rate('http2');

export default function () {
  if (workload === 'orders') {
    const res = placeOrder();
    http2.add(res.proto === 'HTTP/2.0');
  } else {
    mix();
  }
}

export const handleSummary = summary('bench');
