// One operation at a time, at several concurrencies: OP (sendMessage, messages,
// unreadSummary, markChatRead, searchMessages, chats, noop) with CONCURRENCY clients
// ("1,8,32"), STEP_SECONDS each, one after the other. Each concurrency is a scenario
// (c1, c8, ...); the summary export has each one's rate and percentiles.
//
// BARE=1 runs `noop` against an endpoint that is not the API (the bare ceiling): no set-up.
import { int, loadOptions, ops, setUp } from './lib.js';

const OP = __ENV.OP || 'sendMessage';
if (!ops[OP]) throw new Error(`unknown OP ${OP}`);
const STEP = int('STEP_SECONDS', 5);
const GAP = 1;
const LEVELS = (__ENV.CONCURRENCY || '1,8,32').split(',').map((c) => parseInt(c, 10));

const scenarios = {};
const thresholds = { gql_errors: ['rate<0.001'] };
LEVELS.forEach((vus, i) => {
  const name = `c${vus}`;
  scenarios[name] = {
    executor: 'constant-vus', exec: 'single', vus, duration: `${STEP}s`,
    startTime: `${i * (STEP + GAP)}s`, gracefulStop: '2s',
  };
  // A threshold per scenario puts its figures into the summary export (always true).
  thresholds[`http_req_duration{scenario:${name}}`] = ['max>=0'];
  thresholds[`http_reqs{scenario:${name}}`] = ['count>=0'];
});

export const options = loadOptions(scenarios, thresholds);

export function setup() {
  if (__ENV.BARE) return { agents: ['bare'], customers: [] };
  return setUp();
}

export function single(d) {
  ops[OP](d);
}
