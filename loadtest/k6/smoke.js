// smoke: a few virtual users for a short while: does every call of the mix
// answer as the contract says? Run it first, after every change. A short
// pause between iterations keeps the two users (about 20 requests/s) well
// inside one customer's rate limit, as make loadtest runs it with the demo
// customer's token alone.
//   make loadtest SCENARIO=smoke            (DURATION, default 15s)
import { sleep } from 'k6';
import { mix, thresholds, duration, summary, trendStats } from './lib.js';

export const options = {
  scenarios: {
    smoke: { executor: 'constant-vus', vus: 2, duration: duration('DURATION', '15s') },
  },
  thresholds: Object.assign(thresholds(200, 500), { unexpected: ['rate==0'] }),
  summaryTrendStats: trendStats,
};

export default function () {
  mix();
  sleep(0.1);
}

export const handleSummary = summary('smoke');
