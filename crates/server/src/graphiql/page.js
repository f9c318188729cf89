// Starts GraphiQL against this server's POST /graphql. Served from the binary, so the page's
// policy allows no inline script; the libraries come from unpkg.com pinned by version and
// checked by their integrity hashes.
ReactDOM.createRoot(document.getElementById('graphiql')).render(
  React.createElement(GraphiQL, {
    fetcher: GraphiQL.createFetcher({ url: new URL('/graphql', window.location.origin).toString() }),
    defaultEditorToolsVisibility: true,
    defaultHeaders: '{"Authorization": ""}',
  }),
);
