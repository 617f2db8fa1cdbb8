// breaker: orders arrive at RATE per second; after OUTAGE_AT the payment
// provider goes down (PUT /admin/provider, outage) for OUTAGE_FOR, then it is
// healed. Orders during the outage must fail fast with 503 + Retry-After
// (the circuit breaker opens after a few failures and then rejects at once);
// after healing they must succeed again once the breaker half-opens.
//
// Each order is tagged with its phase: before, opening (the first
// OPENING of the outage, while the breaker counts failures), open (the rest
// of the outage), after (healed; the breaker closes within its delay) —
// thresholds hold per phase, and the summary has every phase's percentiles.
// Switching the provider is an admin call: it needs ORDERFLOW_ADMIN_TOKEN.
//   make loadtest SCENARIO=breaker          (RATE 20/s, OUTAGE_AT 10s, OUTAGE_FOR 15s)
import { sleep, check } from 'k6';
import { Rate } from 'k6/metrics';
import exec from 'k6/execution';
import { ADMIN_TOKEN, placeOrder, setProvider, summary, trendStats } from './lib.js';

if (ADMIN_TOKEN === '') {
  throw new Error('the breaker scenario switches the provider: set ORDERFLOW_ADMIN_TOKEN (a token with scope orderflow.admin)');
}

const rate = parseInt(__ENV.RATE || '20', 10);
const secs = (v, d) => parseFloat((__ENV[v] || d).replace(/s$/, ''));
const outageAt = secs('OUTAGE_AT', '10s');
const outageFor = secs('OUTAGE_FOR', '15s');
const opening = secs('OPENING', '2s');
const after = secs('AFTER', '15s');
const total = outageAt + outageFor + after;

// fastFailure: during the open phase, every order is a 503 with Retry-After.
const fastFailure = new Rate('outage_answered_503');

export const options = {
  scenarios: {
    orders: {
      executor: 'constant-arrival-rate', rate, timeUnit: '1s', duration: `${total}s`,
      preAllocatedVUs: 20, maxVUs: 200, exec: 'orders',
    },
    chaos: { executor: 'per-vu-iterations', vus: 1, iterations: 1, exec: 'chaos', maxDuration: `${total + 10}s` },
  },
  thresholds: {
    'order_duration{phase:before}': ['p(95)<250'],
    'order_duration{phase:open}': ['p(99)<100'],
    'order_duration{phase:after}': ['p(95)<1000'],
    'unexpected{phase:before}': ['rate<0.01'],
    'outage_answered_503{phase:open}': ['rate>0.99'],
    // After healing, the breaker half-opens within its delay (5s): most
    // orders of the after phase succeed.
    'unexpected{phase:after}': ['rate<0.5'],
  },
  summaryTrendStats: trendStats,
};

function phase() {
  const t = (Date.now() - exec.scenario.startTime) / 1000;
  if (t < outageAt) return 'before';
  if (t < outageAt + opening) return 'opening';
  if (t < outageAt + outageFor) return 'open';
  return 'after';
}

export function orders() {
  const p = phase();
  const outage = p === 'opening' || p === 'open';
  const res = placeOrder({ phase: p }, outage);
  if (p === 'open') {
    const ok = check(res, { 'outage: 503 with Retry-After': (r) => r.status === 503 && !!r.headers['Retry-After'] });
    fastFailure.add(ok, { phase: p });
  }
}

export function chaos() {
  setProvider({ outage: false });
  sleep(outageAt);
  setProvider({ outage: true });
  sleep(outageFor);
  setProvider({ outage: false });
}

export const handleSummary = summary('breaker');
