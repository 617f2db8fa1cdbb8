// The compose file's k6 service runs /loadtest/smoke.js; the scenarios live
// in k6/. This re-exports the smoke scenario so that path keeps working.
export { default, options, handleSummary } from './k6/smoke.js';
