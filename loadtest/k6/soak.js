// soak: moderate traffic for a long time, to find leaks: pools that slowly
// fill, queues that grow, latency that creeps. Short by default so it runs
// in CI; set DURATION=1h (or more) for a real soak.
//   make loadtest SCENARIO=soak DURATION=1h (RATE default 30/s, DURATION 2m)
import { mix, thresholds, duration, summary, trendStats } from './lib.js';

const rate = parseInt(__ENV.RATE || '30', 10);

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate', rate, timeUnit: '1s', duration: duration('DURATION', '2m'),
      preAllocatedVUs: 20, maxVUs: 200,
    },
  },
  thresholds: thresholds(50, 250),
  summaryTrendStats: trendStats,
};

export default function () {
  mix();
}

export const handleSummary = summary('soak');
