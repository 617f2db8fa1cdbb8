// smoke: a few virtual users for a short while: does every call of the mix
// answer as the contract says? Run it first, after every change.
//   make loadtest SCENARIO=smoke            (DURATION, default 15s)
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
}

export const handleSummary = summary('smoke');
