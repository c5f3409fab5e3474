// Test harness for balance-client.js: records what the client does so the C# tests can wait on it.
import { BalanceWebSocketService, acquireBalanceService } from '/balance-client.js';

const h = window.h = {
  sockets: 0, auths: 0, pongs: 0, pings: 0, authOks: [], statuses: [], errors: [], tokenCalls: [], received: [],
  loginRequired: [], closes: [], tokenTimes: [],
  // What the next getToken calls do before (or instead of) refreshing: { delay: ms, fail: 'network' | 401 }.
  tokenPlan: [],
};

// Counted here rather than in the client so the tests see what the browser really did.
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    h.sockets++;
    h.socket = this;
    this.addEventListener('message', event => {
      try {
        const data = JSON.parse(event.data);
        if (data.type === 'auth_ok') h.authOks.push(data.expires_at);
        if (data.type === 'ping') h.pings++;
      } catch { /* counted only */ }
    });
    this.addEventListener('close', event => h.closes.push(event.code));
  }
  send(data) {
    const text = String(data);
    if (text.includes('"pong"')) h.pongs++;
    if (text.includes('"auth"')) h.auths++;
    super.send(data);
  }
};

// The refresh token lives in memory for one page, or in localStorage when tabs share it (as an app that shares
// its socket across tabs must keep it); every token presented is logged so a test can see none went twice.
const store = {
  shared: false,
  get() { return this.shared ? localStorage.getItem('h-refresh') : h.refreshToken; },
  set(token) { if (this.shared) localStorage.setItem('h-refresh', token); else h.refreshToken = token; },
  spend(token) {
    const spent = JSON.parse(localStorage.getItem('h-spent') || '[]');
    spent.push(token);
    localStorage.setItem('h-spent', JSON.stringify(spent));
  },
};
h.spent = () => JSON.parse(localStorage.getItem('h-spent') || '[]');

// A frame as if it had come off the wire on the client's current socket: the tests hand the client what the
// real server never sends (stale, duplicate, malformed) through the same message path a server frame takes.
window.deliver = message => h.socket.dispatchEvent(new MessageEvent('message', { data: JSON.stringify(message) }));

async function refresh(reason) {
  h.tokenCalls.push(reason);
  h.tokenTimes.push(performance.now()); // monotonic: a test may have moved Date.now
  const plan = h.tokenPlan.shift();
  if (plan?.delay) await new Promise(resolve => setTimeout(resolve, plan.delay));
  if (plan?.fail === 'network') throw new TypeError('Failed to fetch');
  if (plan?.fail) throw Object.assign(new Error(`refresh answered ${plan.fail}`), { status: plan.fail });
  const presented = store.get();
  store.spend(presented);
  const response = await fetch('/api/auth/refresh', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: presented }),
  });
  if (!response.ok) throw Object.assign(new Error(`refresh answered ${response.status}`), { status: response.status });
  const pair = await response.json();
  store.set(pair.refresh_token);
  return pair.access_token;
}

function record(service, listeners) {
  for (let i = 0; i < listeners; i++) {
    const got = [];
    h.received.push(got);
    service.addListener(data => got.push(data.balance));
  }
  h.service = service;
}

function callbacks(refreshToken) {
  return {
    getToken: refreshToken || store.shared ? refresh : null,
    onStatus: status => h.statuses.push(status),
    onError: error => h.errors.push(`${error.code}: ${error.message}`),
    onLoginRequired: error => h.loginRequired.push(error?.code ?? null),
  };
}

window.startClient = ({ token, refreshToken = null, options = {}, listeners = 1 }) => {
  h.refreshToken = refreshToken;
  const service = new BalanceWebSocketService(location.origin.replace(/^http/, 'ws'), token, { ...options, ...callbacks(refreshToken) });
  record(service, listeners);
  service.connect();
};

// Through acquireBalanceService, as the hooks do: shared with every other tab of this browser context.
window.startShared = ({ token, refreshToken = null, options = {} }) => {
  store.shared = true;
  if (refreshToken) store.set(refreshToken);
  const lease = acquireBalanceService(location.origin.replace(/^http/, 'ws'), token, { ...options, ...callbacks(refreshToken) });
  h.lease = lease;
  record(lease.service, 1);
};

// The guide's class as code written against the guide extends it: its reconnect members set, its
// fallbackToRestAPI() overridden (and passed on to the client's polling).
window.startLegacy = ({ base, token, maxReconnectAttempts, options = {} }) => {
  h.fallbacks = 0;
  class LegacyBalanceService extends BalanceWebSocketService {
    constructor(baseUrl, accessToken) {
      super(baseUrl, accessToken, { restBaseUrl: location.origin, ...options, ...callbacks(null) });
      this.maxReconnectAttempts = maxReconnectAttempts;
      this.reconnectDelay = 50;
    }
    fallbackToRestAPI() {
      h.fallbacks++;
      super.fallbackToRestAPI();
    }
  }
  const service = new LegacyBalanceService(base, token);
  record(service, 1);
  service.connect();
};

// A page restored from the back/forward cache keeps its JavaScript: this counts the restores it saw.
h.restored = 0;
addEventListener('pageshow', event => { if (event.persisted) h.restored++; });

h.ready = true;
