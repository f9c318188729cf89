// Where the console sends its requests. The dev server serves this file as it is; when you
// deploy the console as static files, edit it (see docs/console.md). URL parameters
// override it for one visit: ?endpoint=URL, ?realtime=graphql-transport-ws|poll, ?ws=URL.
export default {
  // The GraphQL HTTP endpoint, e.g. 'https://xxxx.appsync-api.eu-west-1.amazonaws.com/graphql'.
  // null: '/graphql' on the page's own origin (the dev server).
  endpoint: null,
  realtime: {
    // 'graphql-transport-ws': the dev server's WebSocket protocol (graphql-ws, Apollo, urql).
    // 'poll': no WebSocket; re-read the open chat and the inbox every intervalMs. Use it
    // against AppSync until the console speaks AppSync's own real-time protocol.
    protocol: 'graphql-transport-ws',
    // The WebSocket URL; null: the endpoint with ws:// or wss://.
    url: null,
    intervalMs: 5000,
  },
  // The development helper that mints a token from an application secret in the browser.
  // 'auto': shown only when the page comes from a loopback host (localhost, 127.0.0.1, [::1]).
  // Set it to false in a deployment: an application secret must never be typed into a page.
  devTokenHelper: 'auto',
};
