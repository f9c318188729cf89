// The GraphQL documents the console sends (schema.graphql is the reference).
//
// Events are built by the server: a subscription receives every field it selects, whatever
// the mutation that caused it selected. Mutations select what the views show of their own
// answers.

const MESSAGE_CORE = 'appToken chatNumber number body senderId senderRole clientMessageId createdAt editedAt deleted';
// Attachments' URLs are signed when the message is read and last minutes (docs/attachments.md).
const MESSAGE = `${MESSAGE_CORE} attachments { name contentType size url width height }`;
// A chat's last message is a preview: its files' names, no URLs to sign.
// hasAgent: whether an agent handles the chat (everyone); assigneeId and team: null for a
// CUSTOMER (docs/assignment.md).
const CHAT = `appToken number customerId subject status messagesCount unreadCount customerLastRead agentsLastRead
  lastMessageAt createdAt updatedAt hasAgent assigneeId team lastMessage { ${MESSAGE_CORE} attachments { name } }`;

// The newest page of a chat: `before` the highest possible number.
export const NEWEST = 2147483647;

// filter (agents only): { assignee: "ME" | "UNASSIGNED" | "ANY" | <agentId>, team, status }.
export const CHATS = `query Chats($a: ID!, $status: ChatStatus, $limit: Int, $next: String, $filter: ChatFilter) {
  chats(appToken: $a, status: $status, limit: $limit, nextToken: $next, filter: $filter) { items { ${CHAT} } nextToken } }`;

// assignee: an agent's id (the caller's own: take; another's: transfer), null: unassign.
export const ASSIGN = `mutation Assign($a: ID!, $n: Int!, $assignee: ID) {
  assignChat(appToken: $a, chatNumber: $n, assignee: $assignee) { ${CHAT} } }`;

export const CHAT_BY_NUMBER = `query Chat($a: ID!, $n: Int!) { chat(appToken: $a, number: $n) { ${CHAT} } }`;

export const MESSAGES_BEFORE = `query Older($a: ID!, $c: Int!, $before: Int!, $limit: Int) {
  messages(appToken: $a, chatNumber: $c, before: $before, limit: $limit) { items { ${MESSAGE} } } }`;

export const MESSAGES_AFTER = `query Newer($a: ID!, $c: Int!, $after: Int, $limit: Int, $next: String) {
  messages(appToken: $a, chatNumber: $c, after: $after, limit: $limit, nextToken: $next) { items { ${MESSAGE} } nextToken } }`;

export const SEARCH = `query Search($a: ID!, $c: Int!, $q: String!, $limit: Int, $next: String) {
  searchMessages(appToken: $a, chatNumber: $c, query: $q, limit: $limit, nextToken: $next) { items { ${MESSAGE} } nextToken } }`;

// Across chats: every chat of an agent's application, a customer's own chats.
export const SEARCH_ALL = `query SearchAll($a: ID!, $q: String!, $limit: Int, $next: String, $filter: ChatFilter) {
  searchMessages(appToken: $a, query: $q, limit: $limit, nextToken: $next, filter: $filter) { items { ${MESSAGE} } nextToken } }`;

export const UNREAD_SUMMARY = `query Summary($a: ID!) {
  unreadSummary(appToken: $a) { appToken totalUnread unreadChats assignedUnread assignedUnreadChats } }`;

export const SEND = `mutation Send($a: ID!, $c: Int!, $body: String, $id: ID, $files: [ID!]) {
  sendMessage(appToken: $a, chatNumber: $c, body: $body, clientMessageId: $id, attachmentIds: $files) { ${MESSAGE} } }`;

// One message again: its attachments' URLs signed anew (they expire).
export const MESSAGE_BY_NUMBER = `query Message($a: ID!, $c: Int!, $n: Int!) {
  message(appToken: $a, chatNumber: $c, number: $n) { ${MESSAGE} } }`;

export const CREATE_UPLOAD = `mutation Upload($a: ID!, $c: Int!, $name: String!, $type: String!, $size: Int!) {
  createUpload(appToken: $a, chatNumber: $c, fileName: $name, contentType: $type, size: $size) {
    id url method headers { name value } expiresAt } }`;

export const CREATE_CHAT = `mutation Open($a: ID!, $subject: String) { createChat(appToken: $a, subject: $subject) { ${CHAT} } }`;

// Without `subject`: an absent subject is left as it is (a null one would clear it).
export const UPDATE_STATUS = `mutation Status($a: ID!, $n: Int!, $status: ChatStatus!) {
  updateChat(appToken: $a, number: $n, status: $status) { ${CHAT} } }`;

export const MARK_READ = `mutation Read($a: ID!, $c: Int!, $upTo: Int) {
  markChatRead(appToken: $a, chatNumber: $c, upTo: $upTo) { appToken chatNumber readerId readerRole lastReadNumber unreadCount } }`;

export const MARK_ALL_READ = 'mutation ReadAll($a: ID!) { markAllRead(appToken: $a) { appToken totalUnread unreadChats assignedUnread assignedUnreadChats } }';

export const ON_MESSAGE = `subscription OnMessage($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { ${MESSAGE} } }`;

export const ON_INBOX_MESSAGE = 'subscription OnInbox($a: ID!) { onInboxMessage(appToken: $a) { appToken chatNumber number } }';

export const ON_CHAT = 'subscription OnChat($a: ID!) { onChat(appToken: $a) { appToken number status } }';

// Presence and typing (docs/presence.md).
const PRESENCE = 'appToken userId role status chatNumber lastSeenAt expiresAt';

export const HEARTBEAT = `mutation Heartbeat($a: ID!, $status: PresenceStatus, $c: Int) {
  heartbeat(appToken: $a, status: $status, chatNumber: $c) { appToken status chatNumber } }`;

export const TYPING = 'mutation Typing($a: ID!, $c: Int!) { typing(appToken: $a, chatNumber: $c) { appToken chatNumber } }';

export const PRESENCES = `query Presences($a: ID!, $role: Role, $limit: Int, $next: String) {
  presences(appToken: $a, role: $role, limit: $limit, nextToken: $next) { items { ${PRESENCE} } nextToken } }`;

export const AVAILABILITY = 'query Availability($a: ID!) { availability(appToken: $a) { appToken agentsOnline agentsAway } }';

export const CHAT_VIEWERS = `query Viewers($a: ID!, $c: Int!) { chatViewers(appToken: $a, chatNumber: $c) { ${PRESENCE} } }`;

export const ON_PRESENCE = `subscription OnPresence($a: ID!) { onPresence(appToken: $a) { ${PRESENCE} } }`;

export const ON_AVAILABILITY = 'subscription OnAvailability($a: ID!) { onAvailability(appToken: $a) { appToken agentsOnline agentsAway } }';

export const ON_CHAT_VIEWER = `subscription OnChatViewer($a: ID!, $c: Int!) {
  onChatViewer(appToken: $a, chatNumber: $c) { appToken chatNumber userId role viewing at } }`;

export const ON_TYPING = `subscription OnTyping($a: ID!, $c: Int!) {
  onTyping(appToken: $a, chatNumber: $c) { appToken chatNumber userId role at } }`;

// The admin section (admin key; docs/webhooks.md).
const APPLICATION = 'token name chatsCount createdAt updatedAt previousSecretExpiresAt routing { enabled maxOpenChatsPerAgent }';
const ENDPOINT = 'id appToken url events enabled disabledReason previousSecretExpiresAt createdAt updatedAt';
const DELIVERY = 'id eventId eventType status attempts lastResponseCode lastError lastAttemptAt nextAttemptAt createdAt';

export const APPLICATION_BY_TOKEN = `query App($t: ID!) { application(token: $t) { ${APPLICATION} } }`;

export const CREATE_APPLICATION = `mutation CreateApp($name: String!) {
  createApplication(name: $name) { application { ${APPLICATION} } secret } }`;

export const RENAME_APPLICATION = `mutation RenameApp($t: ID!, $name: String!) {
  updateApplication(token: $t, name: $name) { ${APPLICATION} } }`;

export const SET_ROUTING = `mutation SetRouting($t: ID!, $routing: RoutingInput!) {
  updateApplication(token: $t, routing: $routing) { ${APPLICATION} } }`;

export const ROTATE_APPLICATION_SECRET = `mutation RotateAppSecret($t: ID!, $grace: Int) {
  rotateApplicationSecret(token: $t, graceSeconds: $grace) { application { ${APPLICATION} } secret } }`;

export const WEBHOOK_ENDPOINTS = `query Endpoints($a: ID!) { webhookEndpoints(appToken: $a) { ${ENDPOINT} } }`;

export const CREATE_WEBHOOK_ENDPOINT = `mutation CreateEndpoint($a: ID!, $url: String!, $events: [String!]!) {
  createWebhookEndpoint(appToken: $a, url: $url, events: $events) { endpoint { ${ENDPOINT} } secret } }`;

export const UPDATE_WEBHOOK_ENDPOINT = `mutation UpdateEndpoint($a: ID!, $id: ID!, $enabled: Boolean) {
  updateWebhookEndpoint(appToken: $a, id: $id, enabled: $enabled) { ${ENDPOINT} } }`;

export const ROTATE_WEBHOOK_SECRET = `mutation RotateEndpointSecret($a: ID!, $id: ID!, $grace: Int) {
  rotateWebhookSecret(appToken: $a, id: $id, graceSeconds: $grace) { endpoint { ${ENDPOINT} } secret } }`;

export const DELETE_WEBHOOK_ENDPOINT = `mutation DeleteEndpoint($a: ID!, $id: ID!) {
  deleteWebhookEndpoint(appToken: $a, id: $id) }`;

export const WEBHOOK_DELIVERIES = `query Deliveries($a: ID!, $id: ID!, $limit: Int, $next: String) {
  webhookDeliveries(appToken: $a, endpointId: $id, limit: $limit, nextToken: $next) { items { ${DELIVERY} } nextToken } }`;

export const REDELIVER_WEBHOOK = `mutation Redeliver($a: ID!, $endpoint: ID!, $delivery: ID!) {
  redeliverWebhook(appToken: $a, endpointId: $endpoint, deliveryId: $delivery) { ${DELIVERY} } }`;
