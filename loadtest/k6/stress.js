// stress: the arrival rate climbs in steps past what the machine can serve,
// to find where latency bends and what breaks first. Thresholds are loose:
// the point is the curve (look at the summary per stage with RATE_MAX).
//   make loadtest SCENARIO=stress           (RATE_MAX default 400/s, STEP 30s)
// With one customer's token (make loadtest's default) every request counts
// against that customer's allowance (make dev: 50 orders/s, 100 product
// reads/s), and above it the limiter answers 429: to see the services'
// curve, give ORDERFLOW_TOKENS_FILE with many customers' tokens or start
// make dev with ORDER_RATE_LIMIT=0 INVENTORY_RATE_LIMIT=0.
import { mix, thresholds, duration, summary, trendStats } from './lib.js';

const max = parseInt(__ENV.RATE_MAX || '400', 10);
const step = duration('STEP', '30s');

export const options = {
  scenarios: {
    stress: {
      executor: 'ramping-arrival-rate', startRate: Math.ceil(max / 8), timeUnit: '1s',
      preAllocatedVUs: 50, maxVUs: 400,
      stages: [
        { target: Math.ceil(max / 4), duration: step },
        { target: Math.ceil(max / 2), duration: step },
        { target: Math.ceil((max * 3) / 4), duration: step },
        { target: max, duration: step },
        { target: 0, duration: '10s' },
      ],
    },
  },
  thresholds: Object.assign(thresholds(500, 2000), { unexpected: ['rate<0.05'], http_req_failed: ['rate<0.05'] }),
  summaryTrendStats: trendStats,
};

export default function () {
  mix();
}

export const handleSummary = summary('stress');
