// load: the expected busy-day traffic, an open model (requests arrive at
// RATE per second whatever the latency, like real users) with the realistic
// mix: browse 80%, order 15%, read orders 5%.
//   make loadtest SCENARIO=load             (RATE default 100/s, DURATION 1m)
import { mix, thresholds, duration, summary, trendStats } from './lib.js';

const rate = parseInt(__ENV.RATE || '100', 10);

export const options = {
  scenarios: {
    load: {
      executor: 'constant-arrival-rate', rate, timeUnit: '1s', duration: duration('DURATION', '1m'),
      preAllocatedVUs: Math.max(10, Math.ceil(rate / 5)), maxVUs: Math.max(50, rate * 2),
    },
  },
  thresholds: thresholds(50, 250),
  summaryTrendStats: trendStats,
};

export default function () {
  mix();
}

export const handleSummary = summary('load');
