// sendMessage for the webhooks benchmark (scripts/bench-webhooks): at a constant arrival
// rate (RATE/s for SECONDS) or as fast as VUS clients go (RATE=0), each VU in its own chat.
import http from "k6/http";
import { check } from "k6";

const URL = `${__ENV.URL}/graphql`;
const APP = __ENV.APP;
const TOKEN = __ENV.TOKEN;
const CHATS = __ENV.CHATS.split(",").map(Number);
const RATE = Number(__ENV.RATE || 0);
const SECONDS = Number(__ENV.SECONDS || 10);
const VUS = Number(__ENV.VUS || 32);

export const options = {
  discardResponseBodies: false,
  scenarios: {
    send: RATE > 0
      ? { executor: "constant-arrival-rate", rate: RATE, timeUnit: "1s", duration: `${SECONDS}s`,
          preAllocatedVUs: VUS, maxVUs: VUS }
      : { executor: "constant-vus", vus: VUS, duration: `${SECONDS}s` },
  },
  summaryTrendStats: ["med", "p(99)"],
};

const QUERY = "mutation($a: ID!, $c: Int!, $b: String!) { sendMessage(appToken: $a, chatNumber: $c, body: $b) { number } }";

export default function () {
  const chat = CHATS[(__VU - 1) % CHATS.length];
  const res = http.post(URL, JSON.stringify({ query: QUERY, variables: { a: APP, c: chat, b: "webhook bench" } }), {
    headers: { "Content-Type": "application/json", Authorization: TOKEN },
  });
  check(res, { sent: (r) => r.status === 200 && !r.body.includes('"errors"') });
}
