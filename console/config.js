// Where the console sends its requests. The dev server serves this file as it is; when you
// deploy the console as static files, edit it (see docs/console.md). URL parameters
// override it for one visit: ?endpoint=URL, ?realtime=graphql-transport-ws|appsync|poll,
// ?ws=URL. The page's Content-Security-Policy decides which of them may be reached.
export default {
  // The GraphQL HTTP endpoint, e.g. 'https://xxxx.appsync-api.eu-west-1.amazonaws.com/graphql'.
  // null: '/graphql' on the page's own origin (the dev server).
  endpoint: null,
  realtime: {
    // 'graphql-transport-ws': the dev server's WebSocket protocol (graphql-ws, Apollo, urql).
    // 'appsync': AppSync's real-time protocol (the dev server speaks it too).
    // 'poll': no WebSocket; re-read the open chat and the inbox every intervalMs.
    // null: 'appsync' when the endpoint is an AppSync host, else 'graphql-transport-ws'.
    protocol: null,
    // The WebSocket URL; null: derived from the endpoint ('appsync': the API's
    // appsync-realtime-api host, or the endpoint + /realtime on a custom domain; otherwise
    // the endpoint with ws:// or wss://).
    url: null,
    intervalMs: 5000,
  },
  // The development helper that mints a token from an application secret in the browser.
  // 'auto': shown only when the page comes from a loopback host (localhost, 127.0.0.1, [::1]).
  // Set it to false in a deployment: an application secret must never be typed into a page.
  devTokenHelper: 'auto',
};
