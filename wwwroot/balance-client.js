// Balance client: the frontend guide's BalanceWebSocketService, made to survive real networks, and shared
// by every tab of a browser. ES module, no dependencies. Speaks the balance.v2 subprotocol (auth_ok, error,
// ping/pong) and falls back to REST polling when the socket keeps failing. Types: balance-client.d.ts.

export const SUBPROTOCOL = 'balance.v2';

export const STATUS = Object.freeze({
  CONNECTING: 'connecting',
  CONNECTED: 'connected',
  RECONNECTING: 'reconnecting',
  FALLBACK: 'fallback',
  OFFLINE: 'offline',
  UNAUTHORIZED: 'unauthorized',
  CLOSED: 'closed',
});

const DEFAULTS = {
  getToken: null,
  restBaseUrl: null,
  onStatus: null,
  onError: null,
  onLoginRequired: null,
  currency: null,
  debounce: 0,
  debug: false,
  storage: undefined,
  initialDelay: 500,
  maxDelay: 20000,
  stableAfter: 5000,
  fallbackAfter: 3,
  pollInterval: 5000,
  authTimeout: 10000,
  heartbeatTimeout: 40000,
  refreshAhead: null,
  shareAcrossTabs: true,
  tabHeartbeat: 2000,
  maxReconnectAttempts: Infinity,
};

// A browser page: on a server (SSR in Node, which has WebSocket built in from 22 on) nothing may connect.
export function isBrowser() {
  return typeof globalThis.window !== 'undefined' && typeof globalThis.document !== 'undefined';
}

// The server's currencies and their decimals; any other ISO code gets Intl's, and a balance never has more.
const DECIMALS = { USD: 2, EUR: 2, GBP: 2, CAD: 2, AUD: 2, JPY: 0, BTC: 8, ETH: 8 };
const MONEY = /^\d+(?:\.(\d+))?$/;
const CURRENCY = /^[A-Z]{3,5}$/;

export function currencyDecimals(currency) {
  if (Object.hasOwn(DECIMALS, currency)) return DECIMALS[currency];
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
  } catch {
    return null;
  }
}

export function decodeJwt(token) {
  try {
    const part = String(token).split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(b64 + '==='.slice((b64.length + 3) % 4)),
      c => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

// Whether candidate should replace current: another user's token always does (an explicit switch); for the
// same user only a later one, so a component mounting with the token it was rendered with cannot undo a refresh.
function isNewerToken(candidate, current) {
  if (!candidate || candidate === current) return false;
  if (!current) return true;
  const a = decodeJwt(candidate), b = decodeJwt(current);
  if (typeof a?.exp !== 'number' || typeof b?.exp !== 'number' || a.sub !== b.sub) return true;
  return a.exp > b.exp || (a.exp === b.exp && (a.iat ?? 0) > (b.iat ?? 0));
}

function defaultBaseUrl() {
  return globalThis.location ? globalThis.location.origin.replace(/^http/, 'ws') : '';
}

function restFromSocketUrl(baseUrl) {
  return String(baseUrl).replace(/^ws(s?):/i, 'http$1:').replace(/\/+$/, '');
}

function defaultStorage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // storage disabled (privacy mode, sandboxed iframe)
  }
}

export function isValidBalance(data) {
  if (data === null || typeof data !== 'object' || data.type !== 'balance' || typeof data.user_id !== 'string'
    || typeof data.currency !== 'string' || !CURRENCY.test(data.currency)
    || !Number.isSafeInteger(data.version) || data.version < 0 || typeof data.balance !== 'string') return false;
  // A wallet never goes below zero and never holds a fraction of the currency's smallest unit.
  const money = MONEY.exec(data.balance);
  const decimals = currencyDecimals(data.currency);
  return money !== null && decimals !== null && (money[1]?.length ?? 0) <= decimals;
}

export class BalanceError extends Error {
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = 'BalanceError';
    this.code = code;
    Object.assign(this, extra);
  }
}

// getToken's answer "no": null, or an error carrying the refresh endpoint's 401/403. Anything else it throws
// (a network error, a 5xx) is a blip that is retried.
function isRefusal(error) {
  return error?.status === 401 || error?.status === 403 || error?.code === 'token_unavailable';
}

const TOKEN_OK = Object.freeze({ ok: true });

export class BalanceWebSocketService {
  constructor(baseUrl, token, options = {}) {
    this.baseUrl = String(baseUrl || defaultBaseUrl()).replace(/\/+$/, '');
    this.token = null;
    this.options = { ...DEFAULTS, ...options };
    this.restBaseUrl = String(this.options.restBaseUrl || restFromSocketUrl(this.baseUrl)).replace(/\/+$/, '');
    this.ws = null;
    this.listeners = new Set();
    this.status = STATUS.CLOSED;
    this.error = null;
    this.userId = null;
    this.expiresAt = null;
    this.balances = new Map();     // currency -> last balance message shown
    this._storage = this.options.storage === undefined ? defaultStorage() : this.options.storage;
    this._statusListeners = new Set();
    this._errorListeners = new Set();
    this._loginListeners = new Set();
    this._serverVersion = new Map(); // currency -> highest version the server sent this session
    this._etags = new Map();
    this._pending = new Map();     // debounced notifications per currency
    this._debounceTimer = null;
    this._failures = 0;
    this._started = false;
    this._authenticated = false;
    this._connectedAt = 0;
    this._lastServerError = null;
    this._timers = { retry: null, poll: null, auth: null, heartbeat: null, refresh: null };
    this._tokenPromise = null;
    this._clockOffset = 0;         // the token issuer's clock minus this device's, in ms
    this._lastRefreshAt = 0;
    this._refreshFailures = 0;
    this._onOnline = () => this._handleOnline();
    this._onOffline = () => this._handleOffline();
    this._suspended = false;         // the page is in the back/forward cache or frozen: no socket, no lock
    this._lifecycle = null;
    this._adoptToken(token, false);
  }

  // ---- the guide's API ----

  connect() {
    // On a server (SSR) there is no page to show a balance in: never open a socket with the user's token there.
    if (!isBrowser()) { this._log('not a browser page: not connecting'); return; }
    this._watchLifecycle(true);
    if (!this._started) {
      this._started = true;
      this._failures = 0;
      globalThis.addEventListener?.('online', this._onOnline);
      globalThis.addEventListener?.('offline', this._onOffline);
      this._scheduleRefresh(); // disconnect() cleared it
    }
    if (this.ws && (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN)) return;
    if (this.status === STATUS.UNAUTHORIZED || this.status === STATUS.CLOSED) this._setStatus(STATUS.CONNECTING);
    this._openSocket();
  }

  addListener(callback) {
    this.listeners.add(callback);
    // A late subscriber still sees what is known (including the cached balance while offline).
    const known = [...this.balances.values()];
    if (known.length) queueMicrotask(() => { if (this.listeners.has(callback)) known.forEach(b => callback(b)); });
  }

  removeListener(callback) {
    this.listeners.delete(callback);
  }

  notifyListeners(data) {
    this.listeners.forEach(callback => {
      try { callback(data); } catch (e) { this._report(new BalanceError('listener_failed', e?.message, { cause: e })); }
    });
  }

  disconnect() {
    this._watchLifecycle(false);
    this._suspended = false;
    this._halt();
  }

  // The guide's names for the reconnect policy, kept working. reconnectAttempts: socket attempts failed in a row;
  // maxReconnectAttempts: after that many the socket is given up and REST polling goes on alone (default: never);
  // reconnectDelay: the backoff's first step (options.initialDelay).
  get reconnectAttempts() { return this._failures; }
  set reconnectAttempts(value) { this._failures = Number(value) || 0; }
  get maxReconnectAttempts() { return this.options.maxReconnectAttempts ?? Infinity; }
  set maxReconnectAttempts(value) { this.options.maxReconnectAttempts = value; }
  get reconnectDelay() { return this.options.initialDelay; }
  set reconnectDelay(value) { this.options.initialDelay = value; }

  // The guide's step after a socket closed: the next attempt after a backoff, REST polling after fallbackAfter
  // failures, and no more socket attempts after maxReconnectAttempts. Called by the client; an override replaces it.
  handleReconnection() {
    if (!this._started) return;
    if (this.status !== STATUS.FALLBACK) this._setStatus(STATUS.RECONNECTING);
    if (this._failures >= this.options.fallbackAfter || this._failures >= this.maxReconnectAttempts) this._startPolling();
    if (this._failures >= this.maxReconnectAttempts) { this._log('maxReconnectAttempts reached: REST polling only'); return; }
    this._setTimer('retry', this._backoff(this._failures), () => this._openSocket());
  }

  // The guide's hook, called when REST polling starts (the socket keeps failing). This implementation polls
  // GET /api/balance every pollInterval; an override that does not call super.fallbackToRestAPI() polls its own way.
  fallbackToRestAPI() {
    if (!this._polling) this._poll();
  }

  _halt() {
    this._started = false;
    globalThis.removeEventListener?.('online', this._onOnline);
    globalThis.removeEventListener?.('offline', this._onOffline);
    for (const name of Object.keys(this._timers)) this._clear(name);
    this._stopPolling();
    this._dropSocket(1000, 'client_closed');
    this._flush();
    this._setStatus(STATUS.CLOSED);
  }

  updateToken(newToken) {
    // An older token of the same user (a component rendered before the last refresh) changes nothing.
    if (!isNewerToken(newToken, this.token)) return;
    const wasUnauthorized = this.status === STATUS.UNAUTHORIZED;
    const previousUser = this.userId;
    this._adoptToken(newToken, false);
    // A socket belongs to one player (re-auth as another is 4503): another user's token needs a new socket.
    if (previousUser && this.userId !== previousUser && this._started && !wasUnauthorized) {
      this._failures = 0;
      this._setStatus(STATUS.CONNECTING);
      this._openSocket();
      return;
    }
    if (this._authenticated && this.ws?.readyState === WebSocket.OPEN) this.authenticate();
    else if (wasUnauthorized && this._started) { this._failures = 0; this._setError(null); this.connect(); }
  }

  authenticate() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.token) {
      this.ws.send(JSON.stringify({ type: 'auth', access_token: this.token, data: {} }));
    }
  }

  // ---- additions ----

  // One wallet: the one asked for, else options.currency, else the default wallet (primaryCurrency).
  getBalance(currency) {
    return this.balances.get(currency ?? this.primaryCurrency) ?? null;
  }

  // Which wallet to show when none is named: options.currency if given; else the wallet that changed last among
  // those holding money; else the one that changed last; with nothing known yet, 'USD' (the server's default).
  get primaryCurrency() {
    if (this.options.currency) return this.options.currency;
    let best = null;
    for (const b of this.balances.values()) {
      if (best === null) { best = b; continue; }
      const money = b.balance.replace(/[0.]/g, '') !== '', bestMoney = best.balance.replace(/[0.]/g, '') !== '';
      if (money !== bestMoney) { if (money) best = b; continue; }
      if ((Date.parse(b.updated_at ?? '') || 0) > (Date.parse(best.updated_at ?? '') || 0)) best = b;
    }
    return best?.currency ?? 'USD';
  }

  // The user logged out: stop, forget the cached balance, and tell the app to show its login.
  logout() {
    this._forget();
    this._stop(STATUS.UNAUTHORIZED, new BalanceError('logged_out', 'The user logged out.'));
  }

  addStatusListener(callback) { this._statusListeners.add(callback); }
  removeStatusListener(callback) { this._statusListeners.delete(callback); }
  addErrorListener(callback) { this._errorListeners.add(callback); }
  removeErrorListener(callback) { this._errorListeners.delete(callback); }
  addLoginRequiredListener(callback) { this._loginListeners.add(callback); }
  removeLoginRequiredListener(callback) { this._loginListeners.delete(callback); }

  get isConnected() { return this.status === STATUS.CONNECTED; }

  // This instance holds its own socket; a follower tab of a shared service does not.
  get isLeader() { return true; }

  // ---- the page's lifecycle ----

  // A page going into the back/forward cache (pagehide, persisted) or frozen (freeze) can run nothing: it lets go
  // of its socket (and, shared, of the tabs' lock, telling the other tabs) and comes back on pageshow / resume.
  _watchLifecycle(on) {
    const doc = globalThis.document;
    if (!doc || !globalThis.addEventListener || on === !!this._lifecycle) return;
    if (on) {
      const hide = event => { if (event.type === 'freeze' || event.persisted) this._suspend(event.type); };
      const show = event => { if (event.type === 'resume' || event.persisted) this._resume(event.type); };
      this._lifecycle = { hide, show };
      globalThis.addEventListener('pagehide', hide);
      globalThis.addEventListener('pageshow', show);
      doc.addEventListener('freeze', hide);
      doc.addEventListener('resume', show);
    } else {
      const { hide, show } = this._lifecycle;
      this._lifecycle = null;
      globalThis.removeEventListener('pagehide', hide);
      globalThis.removeEventListener('pageshow', show);
      doc.removeEventListener('freeze', hide);
      doc.removeEventListener('resume', show);
    }
  }

  _running() { return this._started; }

  _suspend(why) {
    if (this._suspended || !this._running() || this.status === STATUS.UNAUTHORIZED || this.status === STATUS.CLOSED) return;
    this._log(`${why}: letting go of the socket`);
    this._suspended = true;
    this._pause();
  }

  _pause() { this._halt(); }

  _resume(why) {
    if (!this._suspended) return;
    this._log(`${why}: connecting again`);
    this._suspended = false;
    this.connect();
  }

  // ---- socket lifecycle ----

  async _openSocket() {
    if (!this._started) return;
    this._clear('retry');
    if (globalThis.navigator && globalThis.navigator.onLine === false) { this._handleOffline(); return; }
    if (!this.token || this._tokenExpired()) {
      if (!(await this._ensureToken())) return;
      if (!this._started) return;
    }
    this._dropSocket(1000, 'replaced');
    this._authenticated = false;
    this._lastServerError = null;
    let ws;
    try {
      ws = new WebSocket(`${this.baseUrl}/ws/balance/player`, [SUBPROTOCOL]);
    } catch (e) {
      this._report(new BalanceError('socket_failed', e?.message, { cause: e }));
      this._failures++;
      this._scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.authenticate();
      // Without auth_ok (or, from a server without balance.v2, a first balance) in time, the socket is useless.
      this._setTimer('auth', this.options.authTimeout, () => this._socketFailed(ws, 'auth_timeout'));
    };
    ws.onmessage = event => { if (ws === this.ws) this._handleMessage(ws, event.data); };
    ws.onerror = () => { /* onclose follows with the code; nothing to add here */ };
    ws.onclose = event => { if (ws === this.ws) this._handleClose(event.code, event.reason); };
  }

  _handleMessage(ws, raw) {
    let data;
    try { data = JSON.parse(raw); } catch { this._report(new BalanceError('bad_message', 'The server sent a frame that is not JSON.')); return; }
    this._alive(ws);
    switch (data?.type) {
      case 'auth_ok':
        this._authenticatedOn(ws);
        return;
      case 'ping':
        ws.send('{"type":"pong"}');
        return;
      case 'error':
        this._lastServerError = data;
        return;
      case 'balance':
        if (!this._authenticated) this._authenticatedOn(ws);
        this._apply(data, 'socket');
        // 'connected' means balances are flowing: the snapshot's first balance, not just auth_ok.
        // Polling (if any) goes on until then.
        if (this._authenticated && isValidBalance(data)) {
          this._stopPolling();
          this._setStatus(STATUS.CONNECTED);
        }
        return;
      default:
        return; // unknown frame types are reserved for later versions
    }
  }

  _authenticatedOn(ws) {
    this._clear('auth');
    if (this._authenticated) return; // a re-auth on the open socket
    this._authenticated = true;
    this._connectedAt = Date.now();
    // The server took a token this device thinks has run out: the device's clock is ahead, by at least that much.
    if (this.expiresAt !== null && this.expiresAt <= this._now()) this._learnClock(decodeJwt(this.token));
    this._setError(null);
    this._log('authenticated; waiting for the snapshot');
    this._alive(ws);
  }

  // Any frame proves the connection lives; with balance.v2 the server pings, so silence means it died.
  _alive(ws) {
    if (ws.protocol !== SUBPROTOCOL) return;
    this._setTimer('heartbeat', this.options.heartbeatTimeout, () => this._socketFailed(ws, 'heartbeat_timeout'));
  }

  _socketFailed(ws, code) {
    if (ws !== this.ws) return;
    this._lastServerError = { code, message: code === 'heartbeat_timeout' ? 'No heartbeat from the server.' : 'The server did not accept the token in time.' };
    this._handleClose(4000, code);
  }

  _handleClose(code, reason) {
    const wasAuthenticated = this._authenticated;
    const lived = wasAuthenticated ? Date.now() - this._connectedAt : 0;
    const serverError = this._lastServerError;
    this._dropSocket(4000, reason);
    this._authenticated = false;
    this._clear('auth');
    this._clear('heartbeat');
    if (!this._started) return;
    const detail = { code, reason: serverError?.code || reason || '', message: serverError?.message };

    if (code === 1009) {
      this._stop(STATUS.CLOSED, new BalanceError('frame_too_large', detail.message || 'The server refused a frame as too large.', { closeCode: code }));
      return;
    }
    if (code >= 4500 && code <= 4999) {
      this._stop(STATUS.UNAUTHORIZED, new BalanceError(detail.reason || 'unauthorized', detail.message || `The server refused the credentials (${code}).`, { closeCode: code }));
      return;
    }
    if (lived >= this.options.stableAfter) this._failures = 0;
    if (code === 4001) {
      // The token ran out: a fresh one makes the next attempt good, so do not wait for it.
      this._failures++;
      this._setStatus(STATUS.RECONNECTING);
      // A second 4001 in a row (a server clock ahead of the token issuer?) waits like any failure.
      this._ensureToken().then(ok => {
        if (!ok || !this._started || this.ws) return;
        if (this._failures <= 1) this._openSocket();
        else this._scheduleRetry();
      });
      return;
    }
    this._failures++;
    if (code !== 1000 && code !== 1001) this._report(new BalanceError(detail.reason || 'connection_lost', detail.message || `The balance socket closed (${code}).`, { closeCode: code }));
    this._scheduleRetry();
  }

  _scheduleRetry() {
    this.handleReconnection();
  }

  // Full jitter: spread reconnecting clients over the whole window so a restarted server is not stampeded.
  _backoff(failures) {
    return Math.random() * Math.min(this.options.maxDelay, this.options.initialDelay * 2 ** Math.max(0, failures - 1));
  }

  _dropSocket(code, reason) {
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try { if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(code, reason); } catch { /* already gone */ }
  }

  _stop(status, error) {
    for (const name of Object.keys(this._timers)) this._clear(name);
    this._stopPolling();
    this._dropSocket(1000, 'stopped');
    // The server ended the login (4501, 4503, a refused refresh...): on a shared computer the next person must not
    // find this player's balance in storage, whatever ended it.
    if (status === STATUS.UNAUTHORIZED) this._forget();
    if (this.status === status && this.error) return; // already stopped: the first reason stands
    this._setError(error);
    this._setStatus(status);
  }

  _handleOnline() {
    if (!this._started || this.status === STATUS.UNAUTHORIZED || this._authenticated) return;
    this._failures = 0;
    this._openSocket();
  }

  _handleOffline() {
    if (!this._started || this.status === STATUS.UNAUTHORIZED) return;
    this._clear('retry');
    this._stopPolling();
    this._dropSocket(1000, 'offline');
    this._authenticated = false;
    this._setStatus(STATUS.OFFLINE);
  }

  // ---- REST fallback ----

  // 'fallback' is shown once a poll succeeds, and only while polls keep succeeding.
  _startPolling() {
    if (!this._polling) { this._log('REST polling'); this.fallbackToRestAPI(); }
  }

  _stopPolling() {
    this._clear('poll');
    this._polling = null;
  }

  async _poll() {
    this._clear('poll');
    const run = {};
    this._polling = run;
    const currencies = new Set([this.options.currency ?? 'USD', ...this.balances.keys()]);
    try {
      for (const currency of currencies) await this._fetchBalance(currency, run);
      if (this._polling === run && this._started) this._setStatus(STATUS.FALLBACK);
    } catch (e) {
      if (this._polling === run) {
        this._report(e instanceof BalanceError ? e : new BalanceError('poll_failed', e?.message, { cause: e }));
        if (this.status === STATUS.FALLBACK) this._setStatus(STATUS.RECONNECTING);
      }
    }
    if (this._polling === run && this._started) this._setTimer('poll', this.options.pollInterval, () => this._poll());
  }

  async _fetchBalance(currency, run, retried = false) {
    const headers = { Accept: 'application/json', Authorization: `Bearer ${this.token}` };
    const etag = this._etags.get(currency);
    if (etag) headers['If-None-Match'] = etag;
    const response = await fetch(`${this.restBaseUrl}/api/balance?currency=${encodeURIComponent(currency)}`, { headers, cache: 'no-store' });
    if (response.status === 304) return;
    if (response.status === 401 && !retried) {
      const result = await this._freshToken('expired');
      if (result.ok) return this._fetchBalance(currency, run, true);
      if (result.refused) this._stop(STATUS.UNAUTHORIZED, result.error);
      return; // a blip: the next poll asks again
    }
    if (response.status === 401 || response.status === 403) {
      this._stop(STATUS.UNAUTHORIZED, new BalanceError(response.status === 401 ? 'unauthorized' : 'forbidden', `GET /api/balance answered ${response.status}.`));
      return;
    }
    if (!response.ok) throw new BalanceError('poll_failed', `GET /api/balance answered ${response.status}.`, { status: response.status });
    const data = await response.json();
    if (this._polling !== run) return; // the socket came back while this was in flight
    if (this._apply(data, 'rest')) {
      const tag = response.headers.get('ETag');
      if (tag) this._etags.set(currency, tag);
    }
  }

  // ---- balances: validate, order, cache, notify ----

  _apply(data, source) {
    if (!isValidBalance(data) || (this.userId && data.user_id !== this.userId)) {
      this._report(new BalanceError('bad_balance', 'Ignored a balance message that does not look right.', { data }));
      return false;
    }
    const seen = this._serverVersion.get(data.currency);
    if (seen !== undefined && data.version < seen) return false; // stale: a newer one was already shown
    if (seen !== undefined && data.version === seen) return source === 'rest'; // same state: nothing to redraw
    this._serverVersion.set(data.currency, data.version);
    this._etags.set(data.currency, `"${data.version}"`);
    this.balances.set(data.currency, data);
    this._save();
    if (this.options.debounce > 0) {
      this._pending.set(data.currency, data);
      if (!this._debounceTimer) this._debounceTimer = setTimeout(() => this._flush(), this.options.debounce);
    } else {
      this.notifyListeners(data);
    }
    return true;
  }

  _flush() {
    clearTimeout(this._debounceTimer);
    this._debounceTimer = null;
    const pending = [...this._pending.values()];
    this._pending.clear();
    pending.forEach(data => this.notifyListeners(data));
  }

  _cacheKey() { return this.userId ? `balance-client:${this.userId}` : null; }

  _save() {
    const key = this._cacheKey();
    if (!this._storage || !key) return;
    try { this._storage.setItem(key, JSON.stringify(Object.fromEntries(this.balances))); } catch { /* quota or disabled */ }
  }

  _load() {
    const key = this._cacheKey();
    if (!this._storage || !key) return;
    try {
      const cached = JSON.parse(this._storage.getItem(key) || '{}');
      // Cached balances are for display only; they do not set the version floor, the server's snapshot does.
      for (const data of Object.values(cached)) if (isValidBalance(data) && data.user_id === this.userId) this.balances.set(data.currency, data);
    } catch { /* a corrupt cache is no cache */ }
  }

  // What a logged-out user leaves behind: nothing another person at this browser could read.
  _forget() {
    const key = this._cacheKey();
    try { if (key) this._storage?.removeItem?.(key); } catch { /* disabled */ }
    this.balances.clear();
    this._serverVersion.clear();
    this._etags.clear();
    this._pending.clear();
  }

  // ---- tokens ----

  // fresh: the token was issued just now (getToken's answer), so its iat tells this device the issuer's time.
  _adoptToken(token, fresh) {
    this.token = token || null;
    const claims = token ? decodeJwt(token) : null;
    const userId = typeof claims?.sub === 'string' ? claims.sub : null;
    if (userId && userId !== this.userId) {
      this.userId = userId;
      this.balances.clear();
      this._serverVersion.clear();
      this._etags.clear();
      this._load();
    }
    if (fresh) this._learnClock(claims);
    this.expiresAt = typeof claims?.exp === 'number' ? claims.exp * 1000 : null;
    this._scheduleRefresh();
  }

  // iat is second-granular and the fetch took a moment: offsets under 2 s are noise, not a wrong clock.
  _learnClock(claims) {
    if (typeof claims?.iat !== 'number') return;
    const offset = claims.iat * 1000 - Date.now();
    this._clockOffset = Math.abs(offset) > 2000 ? offset : 0;
  }

  // The issuer's time as well as this device can tell; exp and iat are in that clock, not the device's.
  _now() { return Date.now() + this._clockOffset; }

  _tokenExpired() {
    return this.options.refreshAhead !== false && this.expiresAt !== null && this.expiresAt <= this._now() && !!this.options.getToken;
  }

  _lifetime() {
    const iat = decodeJwt(this.token)?.iat;
    return typeof iat === 'number' && this.expiresAt ? Math.max(1000, this.expiresAt - iat * 1000) : 60000;
  }

  _scheduleRefresh() {
    this._clear('refresh');
    if (!this._started || !this.options.getToken || this.options.refreshAhead === false || !this.expiresAt) return;
    const lifetime = this._lifetime();
    const ahead = this.options.refreshAhead ?? Math.min(60000, Math.max(1000, lifetime / 4));
    const due = this.expiresAt - ahead - this._now();
    // Whatever the clocks say, at most one refresh per half lifetime: a wrong clock must not become a loop.
    const earliest = this._lastRefreshAt ? this._lastRefreshAt + lifetime / 2 - Date.now() : 0;
    this._setTimer('refresh', Math.max(0, due, earliest), () => this._refreshAhead());
  }

  async _refreshAhead() {
    if (!this._started) return;
    const result = await this._freshToken('refresh');
    if (!this._started || result.ok) { if (result.ok) this._refreshFailures = 0; return; }
    if (result.refused) { this._stop(STATUS.UNAUTHORIZED, result.error); return; }
    // The current token still works for a while: try again before it runs out. Once it has, the 4001 (or the
    // next attempt to open a socket) asks for a token on its own.
    this._refreshFailures++;
    const left = this.expiresAt - this._now();
    if (left > 500) this._setTimer('refresh', Math.min(Math.max(250, this._backoff(this._refreshFailures)), left / 2), () => this._refreshAhead());
  }

  // A token for a path that cannot go on without one (opening a socket, a 4001). Every outcome leads on:
  // true to go ahead, or a retry scheduled, or a terminal status.
  async _ensureToken() {
    const result = await this._freshToken('expired');
    if (result.ok) return true;
    if (!this._started) return false;
    if (result.refused) this._stop(STATUS.UNAUTHORIZED, result.error);
    else { this._failures++; this._scheduleRetry(); }
    return false;
  }

  // Asks the app for a token, once at a time: a caller that finds a request in flight shares its answer and
  // decides for itself what a failure means. Resolves to { ok } or { refused, error }.
  _freshToken(reason) {
    if (!this.options.getToken) {
      return Promise.resolve({ ok: false, refused: true, error: new BalanceError('token_expired', 'The access token expired and no getToken option was given.') });
    }
    this._tokenPromise ??= this._obtainToken(reason).finally(() => { this._tokenPromise = null; });
    return this._tokenPromise;
  }

  async _obtainToken(reason) {
    this._lastRefreshAt = Date.now();
    try {
      const token = await this._callGetToken(reason);
      if (!token) throw new BalanceError('token_unavailable', 'getToken returned no token.');
      if (token !== this.token) this._adoptToken(token, true);
      if (this._authenticated) this.authenticate();
      return TOKEN_OK;
    } catch (e) {
      const error = e instanceof BalanceError && !e.status ? e
        : new BalanceError(isRefusal(e) ? 'token_refused' : 'token_refresh_failed', e?.message, { cause: e, status: e?.status });
      if (isRefusal(e)) return { ok: false, refused: true, error };
      this._report(error);
      return { ok: false, refused: false, error };
    }
  }

  _callGetToken(reason) {
    return this.options.getToken(reason);
  }

  // ---- plumbing ----

  _setStatus(status) {
    if (this.status === status) return;
    this._log(`status ${this.status} -> ${status}`, this.error?.code ?? '');
    this.status = status;
    try { this.options.onStatus?.(status); } catch { /* an app callback must not break the client */ }
    this._statusListeners.forEach(cb => { try { cb(status); } catch { /* ditto */ } });
    if (status === STATUS.UNAUTHORIZED) this._loginRequired(this.error);
  }

  // One signal for "send the user to the login page", whatever ended the session.
  _loginRequired(error) {
    try { this.options.onLoginRequired?.(error); } catch { /* an app callback must not break the client */ }
    this._loginListeners.forEach(cb => { try { cb(error); } catch { /* ditto */ } });
  }

  _setError(error) {
    this.error = error;
    if (error) this._report(error);
  }

  _report(error) {
    try { this.options.onError?.(error); } catch { /* an app callback must not break the client */ }
    this._errorListeners.forEach(cb => { try { cb(error); } catch { /* ditto */ } });
  }

  // options.debug: true logs to console.debug; a function receives the same arguments.
  _log(...args) {
    const debug = this.options.debug;
    if (!debug) return;
    try { (typeof debug === 'function' ? debug : console.debug)('[balance-client]', ...args); } catch { /* never break on logging */ }
  }

  _setTimer(name, ms, fn) {
    this._clear(name);
    this._timers[name] = setTimeout(() => { this._timers[name] = null; fn(); }, ms);
  }

  _clear(name) {
    if (this._timers[name]) clearTimeout(this._timers[name]);
    this._timers[name] = null;
  }
}

// ---- one socket per browser ----

function canShareAcrossTabs() {
  return typeof globalThis.BroadcastChannel === 'function' && typeof globalThis.navigator?.locks?.request === 'function';
}

function errorToWire(error) {
  return error ? { code: error.code, message: error.message, closeCode: error.closeCode, status: error.status } : null;
}

function errorFromWire(wire) {
  return wire ? new BalanceError(wire.code, wire.message, { closeCode: wire.closeCode, status: wire.status }) : null;
}

// The service acquireBalanceService hands out when the browser can coordinate tabs. Every tab of one user
// and server asks for the same Web Lock; the tab that holds it runs the socket (the base class, unchanged)
// and tells the others over a BroadcastChannel what it shows: balances, status, errors, and each new token.
// When that tab goes, the browser hands the lock to a waiting tab, which opens the socket; the server's
// snapshot on connect covers whatever was committed in between, and versions drop what was seen twice.
class TabSharedBalanceService extends BalanceWebSocketService {
  constructor(baseUrl, token, options, key) {
    super(baseUrl, token, options);
    this._key = key;
    this._leader = false;
    this._joined = false;
    this._loggedOut = false;
    this._channel = null;
    this._lockAbort = null;
    this._releaseLock = null;
    this._leaderStatus = null;   // what the leader last said it shows: { status, error }
    this._leaderQuiet = false;
    this._timers.beat = null;     // the leader's heartbeat to the other tabs
    this._timers.watch = null;    // a follower's watch on that heartbeat
    this._onVisible = () => { if (this._leaderQuiet && this._visible()) this._takeOver(); };
  }

  get isLeader() { return this._leader; }

  connect() {
    if (!isBrowser()) return;
    this._watchLifecycle(true);
    if (this._joined) {
      if (this._leader) super.connect();
      return;
    }
    this._joined = true;
    this._channel = new BroadcastChannel(`balance-client:${this._key}`);
    this._channel.onmessage = event => this._fromPeer(event.data);
    globalThis.document?.addEventListener?.('visibilitychange', this._onVisible);
    if (this.status === STATUS.CLOSED || this.status === STATUS.UNAUTHORIZED) {
      this.error = null;
      this._setStatus(STATUS.CONNECTING);
    }
    this._post({ type: 'hello', token: this.token });
    this._watchLeader();
    this._queueForLock(false);
  }

  // Waits for the socket lock; with steal, takes it from a leader that went quiet (frozen without a freeze event,
  // as Safari does), which then steps down when it runs again.
  _queueForLock(steal) {
    const abort = this._lockAbort = steal ? null : new AbortController();
    const options = steal ? { steal: true } : { signal: abort.signal };
    let granted = false;
    navigator.locks.request(`balance-client:socket:${this._key}`, options, () => {
      if (abort?.signal.aborted || !this._joined) return undefined;
      granted = true;
      return new Promise(resolve => {
        this._releaseLock = resolve;
        this._lead();
      });
    }).catch(e => {
      // A lock taken from this tab (steal) rejects while this tab still leads: the other tab has the socket now.
      if (granted && this._leader && this._joined) { this._stepDown(); return; }
      if (e?.name !== 'AbortError') this._report(new BalanceError('tab_lock_failed', e?.message, { cause: e }));
    });
  }

  _lead() {
    this._leader = true;
    this._clear('watch');
    this._leaderQuiet = false;
    this._log('leading: this tab holds the socket');
    // The old leader's socket is gone: say so until this tab's own socket is authenticated.
    if (this.status !== STATUS.CONNECTING && this.status !== STATUS.CLOSED && this.status !== STATUS.UNAUTHORIZED) this._setStatus(STATUS.RECONNECTING);
    super.connect();
    this._beat();
  }

  // Another tab stole the lock: this one's socket is surplus. Back in line, and listen to the new leader.
  _stepDown() {
    this._log('the lock was taken over: following');
    this._leader = false;
    this._releaseLock = null;
    this._lockAbort = null;
    this._started = false;
    globalThis.removeEventListener?.('online', this._onOnline);
    globalThis.removeEventListener?.('offline', this._onOffline);
    for (const name of Object.keys(this._timers)) this._clear(name);
    this._stopPolling();
    this._dropSocket(1000, 'stepped_down');
    this._authenticated = false;
    this._post({ type: 'hello', token: this.token });
    this._watchLeader();
    this._queueForLock(false);
  }

  // ---- the leader's heartbeat over the channel ----

  _beat() {
    if (!this._leader) return;
    this._post({ type: 'beat', status: this.status, error: errorToWire(this.error) });
    this._setTimer('beat', this.options.tabHeartbeat, () => this._beat());
  }

  // A follower hears the leader at least every tabHeartbeat; three beats missed and it stops claiming the leader's
  // status, and a visible tab takes the socket over.
  _watchLeader() {
    if (this._leader || !this._joined) return;
    this._setTimer('watch', this.options.tabHeartbeat * 3, () => this._leaderWentQuiet());
  }

  _heardLeader() {
    if (this._leader) return;
    this._watchLeader();
    if (this._leaderQuiet) {
      this._leaderQuiet = false;
      if (this._leaderStatus) this._mirror(this._leaderStatus.status, this._leaderStatus.error);
    }
  }

  _leaderWentQuiet() {
    // A leader that stopped by itself (the login ended, or 1009) beats no more, and there is nothing to take over:
    // a new token (updateToken) starts it again, and its beats re-arm this watch.
    if (this._leader || !this._joined || this.status === STATUS.UNAUTHORIZED || this.status === STATUS.CLOSED) return;
    this._log('the leader tab went quiet');
    this._leaderQuiet = true;
    if (this.status !== STATUS.OFFLINE) super._setStatus(STATUS.RECONNECTING);
    if (this._visible()) this._takeOver();
    else this._watchLeader();
  }

  _visible() { return globalThis.document?.visibilityState !== 'hidden'; }

  _takeOver() {
    if (this._leader || !this._joined) return;
    this._log('taking the socket over from a quiet leader');
    this._leaderQuiet = false;
    this._lockAbort?.abort();
    this._queueForLock(true);
  }

  disconnect() {
    this._watchLifecycle(false);
    this._suspended = false;
    this._leave();
  }

  _running() { return this._joined; }

  _pause() {
    // Tell the other tabs at once rather than leave them to notice the lock: one of them opens the socket now.
    if (this._leader) this._post({ type: 'leaving' });
    this._leave();
  }

  _leave() {
    const wasLeader = this._leader;
    this._joined = false;
    this._leader = false;
    this._leaderQuiet = false;
    this._lockAbort?.abort();
    this._lockAbort = null;
    globalThis.document?.removeEventListener?.('visibilitychange', this._onVisible);
    if (wasLeader) this._post({ type: 'status', status: STATUS.RECONNECTING, error: null }); // until the next leader speaks
    this._halt();
    this._releaseLock?.();
    this._releaseLock = null;
    this._channel?.close();
    this._channel = null;
  }

  logout() {
    this._post({ type: 'logout' });
    this._endedByLogout();
  }

  _endedByLogout() {
    this._watchLifecycle(false);
    this._suspended = false;
    this._leave();
    this._loggedOut = true;
    super.logout();
  }

  updateToken(newToken) {
    // After a logout only a new login brings the service back, in this tab and through it in every other.
    const rejoin = this._loggedOut && isNewerToken(newToken, this.token);
    super.updateToken(newToken);
    if (rejoin) {
      this._loggedOut = false;
      this.connect();
    }
  }

  // ---- what the leader tells the others ----

  _post(message) {
    try { this._channel?.postMessage(message); } catch { /* the channel closed under us */ }
  }

  _setStatus(status) {
    const changed = status !== this.status;
    super._setStatus(status);
    if (changed && this._leader) this._post({ type: 'status', status, error: errorToWire(this.error) });
  }

  _report(error) {
    super._report(error);
    if (this._leader) this._post({ type: 'error', error: errorToWire(error) });
  }

  _apply(data, source) {
    const applied = super._apply(data, source);
    if (applied && this._leader && source !== 'peer') this._post({ type: 'balance', data });
    return applied;
  }

  _adoptToken(token, fresh) {
    super._adoptToken(token, fresh);
    if (this._joined && token) this._post({ type: 'token', token });
  }

  // One writer for the shared cache: the tab that holds the socket.
  _save() {
    if (this._leader || !this._joined) super._save();
  }

  // One tab at a time asks the app for a token. A tab that waited for the lock while another refreshed takes
  // that tab's token instead of spending the refresh token a second time.
  _callGetToken(reason) {
    if (!this._joined) return super._callGetToken(reason);
    const before = this.token;
    return navigator.locks.request(`balance-client:token:${this._key}`, async () => {
      if (this.token !== before && isNewerToken(this.token, before) && !this._tokenExpired()) return this.token;
      const token = await super._callGetToken(reason);
      // Shared before the lock is let go, so the next tab in line sees it.
      if (token && isNewerToken(token, this.token)) this._adoptToken(token, true);
      return token;
    });
  }

  _snapshot() {
    // Only what the server confirmed this session: a cached balance must not become another tab's version floor.
    const balances = [...this.balances.values()].filter(b => this._serverVersion.get(b.currency) === b.version);
    return { type: 'state', status: this.status, error: errorToWire(this.error), balances, token: this.token };
  }

  _fromPeer(message) {
    if (!this._joined || !message || typeof message !== 'object') return;
    switch (message.type) {
      case 'hello':
        if (this._leader) this._post(this._snapshot());
        this._peerToken(message.token);
        return;
      case 'state':
        this._peerToken(message.token);
        if (this._leader) return;
        for (const data of message.balances ?? []) this._apply(data, 'peer');
        this._fromLeader(message.status, message.error);
        return;
      case 'status':
      case 'beat':
        if (!this._leader) this._fromLeader(message.status, message.error);
        return;
      case 'leaving':
        // The leader's page went into the back/forward cache or froze: it let go of the lock; until the tab that
        // gets it has its socket, nothing is live.
        if (!this._leader && this.status !== STATUS.UNAUTHORIZED) super._setStatus(STATUS.RECONNECTING);
        return;
      case 'error':
        if (!this._leader) super._report(errorFromWire(message.error));
        return;
      case 'balance':
        if (!this._leader) this._heardLeader();
        this._apply(message.data, 'peer');
        return;
      case 'token':
        this._peerToken(message.token);
        return;
      case 'logout':
        this._endedByLogout();
        return;
      default:
        return; // a newer client in another tab; nothing this one understands
    }
  }

  _peerToken(token) {
    if (typeof token === 'string' && isNewerToken(token, this.token)) this.updateToken(token);
  }

  _fromLeader(status, error) {
    this._leaderStatus = { status, error };
    this._heardLeader();
    this._mirror(status, error);
  }

  _mirror(status, error) {
    if (!Object.values(STATUS).includes(status)) return;
    this.error = errorFromWire(error);
    // The leader cleared the shared cache when the server ended the login; this tab forgets its copy too.
    if (status === STATUS.UNAUTHORIZED) this._forget();
    super._setStatus(status);
  }
}

// One service per user and server for the whole page, and with shareAcrossTabs (the default) one socket for
// the whole browser: hooks and components lease it; the last release() closes it.
const shared = new Map();

export function acquireBalanceService(baseUrl, token, options = {}) {
  const base = String(baseUrl || defaultBaseUrl()).replace(/\/+$/, '');
  // On a server (SSR): a service that never connects, and nothing kept in this module between requests.
  if (!isBrowser()) return { service: new BalanceWebSocketService(base, token, options), release() {} };
  const key = `${base}|${decodeJwt(token)?.sub ?? token}`;
  let entry = shared.get(key);
  if (!entry) {
    const service = options.shareAcrossTabs !== false && canShareAcrossTabs()
      ? new TabSharedBalanceService(base, token, options, key)
      : new BalanceWebSocketService(base, token, options);
    entry = { service, count: 0 };
    shared.set(key, entry);
    service.connect();
  } else if (token) {
    entry.service.updateToken(token); // ignored unless newer than the one the service already has
  }
  entry.count++;
  let released = false;
  return {
    service: entry.service,
    release() {
      if (released) return;
      released = true;
      if (--entry.count === 0) {
        shared.delete(key);
        entry.service.disconnect();
      }
    },
  };
}

export default BalanceWebSocketService;
