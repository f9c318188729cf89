// The customer-support mix: customers send, agents read the inbox, page history, mark
// read, check the badge and search, while subscribers listen over WebSocket.
//
//   MODE=steady (default): RATE iterations/s for DURATION, with thresholds (p95, p99, errors).
//   MODE=steps: RATES (e.g. "100,200,400") one after the other, STEP_SECONDS each, to find
//   the highest rate whose p99 stays within P99_MS (scripts/loadtest reports it).
//
// Run: k6 run -e ADMIN_KEY=... loadtest/mix.js (docs/loadtest.md has every variable).
import { config, int, loadOptions, seconds, setUp, mixOnce, subscribe } from './lib.js';

const MODE = __ENV.MODE || 'steady';
const SUBSCRIBERS = int('SUBSCRIBERS', 20);
const STEP = int('STEP_SECONDS', 10);
const GAP = 2;
const RATES = (__ENV.RATES || '100,200,400,800').split(',').map((r) => parseInt(r, 10));
const total = MODE === 'steps' ? RATES.length * (STEP + GAP) : seconds(__ENV.DURATION || '30s');

// k6 starts VUS virtual users (each with its own connection) and adds more, up to MAX_VUS,
// when they are all busy: an open model. The soak sets MAX_VUS = VUS, a fixed set of clients,
// so that what it measures over time is the server, not a client population that grows
// whenever the host stalls both (docs/loadtest.md, "What the soak judges"); k6 then counts the iterations
// it could not start on time as dropped.
function arrival(rate, duration, startTime) {
  const vus = Math.min(int('VUS', 50), rate);
  return {
    executor: 'constant-arrival-rate', exec: 'mix', rate, timeUnit: '1s', duration, startTime,
    preAllocatedVUs: vus, maxVUs: Math.max(vus, int('MAX_VUS', 200)),
  };
}

const scenarios = {};
if (MODE === 'steps') {
  RATES.forEach((rate, i) => {
    scenarios[`rate_${rate}`] = arrival(rate, `${STEP}s`, `${i * (STEP + GAP)}s`);
  });
} else {
  scenarios.mix = arrival(int('RATE', 200), `${total}s`, '0s');
}
if (SUBSCRIBERS > 0) {
  scenarios.subscribers = {
    executor: 'per-vu-iterations', exec: 'subscribers', vus: SUBSCRIBERS, iterations: 1,
    maxDuration: `${total + 10}s`,
  };
}

const thresholds = MODE === 'steps' ? {} : {
  'http_req_duration{scenario:mix}': [`p(95)<${config.p95}`, `p(99)<${config.p99}`],
  'gql_errors{scenario:mix}': ['rate<0.001'],
  ws_errors: ['count<1'],
  // Iterations k6 could not start on time: the server (or k6) did not keep up.
  dropped_iterations: [`count<${Math.max(1, int('RATE', 200))}`],
  ws_delivery: [`p(99)<${2 * config.p99}`],
};

export const options = loadOptions(scenarios, thresholds);

export function setup() {
  return setUp();
}

export function mix(d) {
  mixOnce(d);
}

export function subscribers(d) {
  subscribe(d, total);
}
