// Shared pieces of Orderflow's k6 scenarios: where the services are, the
// realistic traffic mix, the checks, and the JSON summary every run writes.
//
// Every call carries an OAuth 2.0 access token (scripts/loadtest.sh gets
// them from make dev's Hydra):
//   ORDERFLOW_TOKEN        a customer's access token (make token prints the
//                          demo customer's): orders are placed and read as
//                          that customer
//   ORDERFLOW_TOKENS_FILE  instead: a file of customers' access tokens, one
//                          per line (make bench writes one; an absolute path,
//                          or relative to loadtest/k6/); the simulated users
//                          take turns with them
//   ORDERFLOW_ADMIN_TOKEN  an orderflow.admin token, for the admin calls
//                          (PUT /admin/provider in the breaker scenario)
// Tokens live 15 minutes at make dev's Hydra: a longer run needs fresh ones.
//
// Environment (all optional; the defaults are make dev's ports):
//   ORDER_URL      http://127.0.0.1:8080     INVENTORY_URL http://127.0.0.1:8081
//   PAYMENT_URL    http://127.0.0.1:8082
//   DECLINE_RATE   0.05   share of orders paid with a declined card (402)
//   SKUS           1000   hot set: SKU-00001 … SKU-<SKUS> (inventory seeds 10,000)
//   USER_REQUESTS  20     requests one simulated user sends before the next one
//                         takes over (with the next token; see user)
//   RESULTS_DIR    loadtest/results   where handleSummary writes <scenario>.json
//   SUMMARY_NAME   the file name (default: the scenario's name)
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import exec from 'k6/execution';

export const ORDER_URL = __ENV.ORDER_URL || __ENV.BASE_URL || 'http://127.0.0.1:8080';
export const INVENTORY_URL = __ENV.INVENTORY_URL || 'http://127.0.0.1:8081';
export const PAYMENT_URL = __ENV.PAYMENT_URL || 'http://127.0.0.1:8082';
export const ADMIN_TOKEN = __ENV.ORDERFLOW_ADMIN_TOKEN || '';
const SKUS = parseInt(__ENV.SKUS || '1000', 10);
const USER_REQUESTS = parseInt(__ENV.USER_REQUESTS || '20', 10);
const DECLINE_RATE = parseFloat(__ENV.DECLINE_RATE || '0.05');
// RUN_ID keeps Idempotency-Keys unique across runs against the same stack.
const RUN_ID = __ENV.RUN_ID || `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;

// TOKENS are the customers' access tokens the simulated users take turns
// with (open() reads the file once, in the init context).
const TOKENS = (__ENV.ORDERFLOW_TOKENS_FILE
  ? open(__ENV.ORDERFLOW_TOKENS_FILE).split('\n')
  : [__ENV.ORDERFLOW_TOKEN || '']).map((t) => t.trim()).filter((t) => t !== '');
if (TOKENS.length === 0) {
  throw new Error('no access token: set ORDERFLOW_TOKEN (make token prints one) or ORDERFLOW_TOKENS_FILE; ' +
    'make loadtest does it for you');
}

// Business answers (402 declined, 409 out of stock) are correct answers, not
// failures: http_req_failed counts only what no client should ever see.
http.setResponseCallback(http.expectedStatuses(200, 201, 304, 402, 409));

// unexpected is the error rate the thresholds watch: a status outside the
// contract for that call (a 503 included, except where a scenario expects it).
export const unexpected = new Rate('unexpected');
export const orders = new Counter('orders_created');
export const orderDuration = new Trend('order_duration', true);

// etags remembers, per VU, the ETag of products it has seen, so a share of
// browsing revalidates with If-None-Match like a browser cache would.
const etags = {};
// created remembers this VU's last orders, and whose they are, for the
// order reads: another customer's order is a 404.
const created = [];

// user is the simulated user this iteration belongs to: its access token
// and a number. The rate limiters key on the token's subject (else on the
// client address, and a load generator is one address); a shop's traffic is
// many customers, each sending a few requests. One simulated user per
// USER_REQUESTS iterations of a VU, taking the tokens in turn, spreads the
// load over every customer of the tokens, so the limiter runs (a Redis call
// on every request) without throttling the measurement when there are
// enough of them. With one token (ORDERFLOW_TOKEN) every request is that
// customer's and counts against one allowance (make dev: ORDER_RATE_LIMIT
// 50/s, INVENTORY_RATE_LIMIT 100/s): scenarios above it see 429s.
function user() {
  const n = exec.vu.idInTest + Math.floor(exec.vu.iterationInScenario / USER_REQUESTS);
  return { n, token: TOKENS[n % TOKENS.length] };
}

function sku() {
  const n = 1 + Math.floor(Math.random() * SKUS);
  return `SKU-${String(n).padStart(5, '0')}`;
}

// headers are a call's headers as token's customer. Product reads need no
// token, but a signed-in shopper's client sends it anyway, and the limiter
// then counts the reads per customer rather than per load generator.
function headers(token, extra) {
  return Object.assign({ Authorization: `Bearer ${token}` }, extra || {});
}

// browse reads one product, revalidating a third of the known ones.
export function browse() {
  const s = sku();
  const h = headers(user().token);
  const known = etags[s];
  if (known && Math.random() < 0.33) {
    h['If-None-Match'] = known;
  }
  const res = http.get(`${INVENTORY_URL}/v1/products/${s}`, { headers: h, tags: { name: 'product' } });
  const ok = check(res, { 'product: 200 or 304': (r) => r.status === 200 || r.status === 304 });
  unexpected.add(!ok, { call: 'product' });
  if (res.status === 200 && res.headers.Etag) {
    etags[s] = res.headers.Etag;
  }
  return res;
}

// placeOrder places one order under a unique Idempotency-Key. DECLINE_RATE
// (default 1 in 20) pays with a card that is declined (402): part of a
// realistic mix, not an error.
// The customer is the token's subject: the body names none.
// expect503 marks calls where a 503 is the correct answer (breaker scenario).
export function placeOrder(tags, expect503) {
  const declined = Math.random() < DECLINE_RATE;
  const u = user();
  const body = JSON.stringify({
    email: `k6-user-${u.n % 1000}@example.com`,
    items: [{ sku: sku(), quantity: 1 + Math.floor(Math.random() * 2) }],
    payment_method: declined ? 'pm_card_declined' : 'pm_card_ok',
  });
  const key = `k6-${RUN_ID}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}-${Math.random().toString(36).slice(2, 8)}`;
  const res = http.post(`${ORDER_URL}/v1/orders`, body, {
    headers: headers(u.token, { 'Content-Type': 'application/json', 'Idempotency-Key': key }),
    tags: Object.assign({ name: 'create_order' }, tags || {}),
  });
  orderDuration.add(res.timings.duration, tags || {});
  const ok = check(res, {
    'order: 201, 402 or 409': (r) => r.status === 201 || r.status === 402 || r.status === 409 ||
      (expect503 === true && r.status === 503),
  });
  if (expect503 !== true || res.status !== 503) {
    unexpected.add(!ok, Object.assign({ call: 'create_order' }, tags || {}));
  }
  if (res.status === 201) {
    orders.add(1);
    created.push({ id: res.json('id'), token: u.token });
    if (created.length > 20) {
      created.shift();
    }
  }
  return res;
}

// readOrders reads one of this VU's orders as the customer who placed it,
// or the current user's first page of their own orders (GET /v1/orders
// lists the caller's).
export function readOrders() {
  let res;
  if (created.length > 0 && Math.random() < 0.5) {
    const o = created[Math.floor(Math.random() * created.length)];
    res = http.get(`${ORDER_URL}/v1/orders/${o.id}`, { headers: headers(o.token), tags: { name: 'get_order' } });
  } else {
    res = http.get(`${ORDER_URL}/v1/orders?limit=20`, { headers: headers(user().token), tags: { name: 'list_orders' } });
  }
  const ok = check(res, { 'order read: 200': (r) => r.status === 200 });
  unexpected.add(!ok, { call: 'read_order' });
  return res;
}

// mix is one iteration of the realistic traffic: browse 80%, order 15%,
// read orders 5%.
export function mix() {
  const r = Math.random();
  if (r < 0.80) {
    browse();
  } else if (r < 0.95) {
    placeOrder();
  } else {
    readOrders();
  }
}

// setProvider changes the simulated payment provider (admin call, with
// ORDERFLOW_ADMIN_TOKEN).
export function setProvider(settings) {
  if (ADMIN_TOKEN === '') {
    throw new Error('setProvider needs ORDERFLOW_ADMIN_TOKEN, a token with scope orderflow.admin');
  }
  const res = http.put(`${PAYMENT_URL}/admin/provider`, JSON.stringify(Object.assign(
    { latency_ms: 0, error_rate: 0, outage: false }, settings)), {
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ADMIN_TOKEN}` },
    tags: { name: 'admin_provider' },
  });
  check(res, { 'admin: provider changed (200)': (r) => r.status === 200 });
  return res;
}

// thresholds common to the scenarios: p95 per kind of call and error rate.
export function thresholds(p95Read, p95Order) {
  return {
    unexpected: ['rate<0.01'],
    http_req_failed: ['rate<0.01'],
    'http_req_duration{name:product}': [`p(95)<${p95Read}`],
    'http_req_duration{name:create_order}': [`p(95)<${p95Order}`],
    checks: ['rate>0.99'],
  };
}

// duration reads a duration from the environment (k6 syntax: 30s, 2m, 1h).
export function duration(name, def) {
  return __ENV[name] || def;
}

function metric(data, name, stat) {
  const m = data.metrics[name];
  if (!m || !m.values || m.values[stat] === undefined) {
    return '-';
  }
  return m.values[stat].toFixed(stat === 'rate' ? 4 : 2);
}

// summary returns a handleSummary that writes the whole k6 summary as JSON
// to RESULTS_DIR/<name>.json and prints the headline figures.
export function summary(name) {
  return function (data) {
    const dir = __ENV.RESULTS_DIR || 'loadtest/results';
    const file = `${dir}/${__ENV.SUMMARY_NAME || name}.json`;
    const lines = [
      `scenario ${name}: ${metric(data, 'http_reqs', 'rate')} req/s, ` +
        `${metric(data, 'iterations', 'count')} iterations, ${metric(data, 'orders_created', 'count')} orders created`,
      `  http_req_duration  p50 ${metric(data, 'http_req_duration', 'med')} ms  p95 ${metric(data, 'http_req_duration', 'p(95)')} ms  p99 ${metric(data, 'http_req_duration', 'p(99)')} ms`,
      `  order_duration     p50 ${metric(data, 'order_duration', 'med')} ms  p95 ${metric(data, 'order_duration', 'p(95)')} ms  p99 ${metric(data, 'order_duration', 'p(99)')} ms`,
      `  unexpected ${metric(data, 'unexpected', 'rate')}  http_req_failed ${metric(data, 'http_req_failed', 'rate')}  checks ${metric(data, 'checks', 'rate')}`,
    ];
    const failed = Object.entries(data.metrics)
      .flatMap(([m, v]) => Object.entries(v.thresholds || {}).filter(([, t]) => !t.ok).map(([t]) => `${m} ${t}`));
    lines.push(failed.length ? `  THRESHOLDS FAILED: ${failed.join('; ')}` : '  thresholds: all passed');
    lines.push(`  summary: ${file}`);
    const out = { stdout: lines.join('\n') + '\n' };
    out[file] = JSON.stringify(data, null, 2);
    return out;
  };
}

// trendStats are the statistics every summary keeps (p99 included).
export const trendStats = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'];
