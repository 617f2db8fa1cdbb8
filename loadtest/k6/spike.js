// spike: steady traffic, then a sudden burst of SPIKE_RATE for SPIKE seconds,
// then steady again. Shows the rate limiter, the bulkheads and the pools
// absorbing it, and how fast latency recovers after.
//   make loadtest SCENARIO=spike            (RATE 50/s, SPIKE_RATE 400/s, SPIKE 20s)
// With one customer's token (make loadtest's default) the spike is one
// client, and the limiter answers its excess with 429s (make dev: 50
// orders/s, 100 product reads/s each): give ORDERFLOW_TOKENS_FILE with many
// customers' tokens to spike as many clients.
import { mix, thresholds, duration, summary, trendStats } from './lib.js';

const rate = parseInt(__ENV.RATE || '50', 10);
const spike = parseInt(__ENV.SPIKE_RATE || '400', 10);

export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate', startRate: rate, timeUnit: '1s', preAllocatedVUs: 50, maxVUs: 400,
      stages: [
        { target: rate, duration: '20s' },
        { target: spike, duration: '5s' },
        { target: spike, duration: duration('SPIKE', '20s') },
        { target: rate, duration: '5s' },
        { target: rate, duration: '20s' },
      ],
    },
  },
  thresholds: Object.assign(thresholds(500, 2000), { unexpected: ['rate<0.05'], http_req_failed: ['rate<0.05'] }),
  summaryTrendStats: trendStats,
};

export default function () {
  mix();
}

export const handleSummary = summary('spike');
