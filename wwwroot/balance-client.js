// Balance client: the frontend guide's BalanceWebSocketService, made to survive real networks.
// ES module, no dependencies. Speaks the balance.v2 subprotocol (auth_ok, error, ping/pong) and
// falls back to REST polling when the socket keeps failing. Types: balance-client.d.ts.

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
  currency: 'USD',
  debounce: 0,
  storage: undefined,
  initialDelay: 500,
  maxDelay: 20000,
  stableAfter: 5000,
  fallbackAfter: 3,
  pollInterval: 5000,
  authTimeout: 10000,
  heartbeatTimeout: 40000,
  refreshAhead: null,
};

const MONEY = /^-?\d+(\.\d+)?$/;
const CURRENCY = /^[A-Z]{3,5}$/;

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
  return data !== null && typeof data === 'object' && data.type === 'balance'
    && typeof data.user_id === 'string' && typeof data.balance === 'string' && MONEY.test(data.balance)
    && typeof data.currency === 'string' && CURRENCY.test(data.currency)
    && Number.isSafeInteger(data.version) && data.version >= 0;
}

export class BalanceError extends Error {
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = 'BalanceError';
    this.code = code;
    Object.assign(this, extra);
  }
}

export class BalanceWebSocketService {
  constructor(baseUrl, token, options = {}) {
    this.baseUrl = String(baseUrl || defaultBaseUrl()).replace(/\/+$/, '');
    this.token = token || null;
    this.options = { ...DEFAULTS, ...options };
    this.restBaseUrl = String(this.options.restBaseUrl || restFromSocketUrl(this.baseUrl)).replace(/\/+$/, '');
    this.storage = this.options.storage === undefined ? defaultStorage() : this.options.storage;
    this.ws = null;
    this.listeners = new Set();
    this.statusListeners = new Set();
    this.errorListeners = new Set();
    this.status = STATUS.CLOSED;
    this.error = null;
    this.userId = null;
    this.expiresAt = null;
    this.balances = new Map();     // currency -> last balance message shown
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
    this._onOnline = () => this._handleOnline();
    this._onOffline = () => this._handleOffline();
    this._adoptToken(this.token);
  }

  // ---- the guide's API ----

  connect() {
    if (!this._started) {
      this._started = true;
      this._failures = 0;
      globalThis.addEventListener?.('online', this._onOnline);
      globalThis.addEventListener?.('offline', this._onOffline);
      this._scheduleRefresh(this.token ? decodeJwt(this.token) : null); // disconnect() cleared it
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
    const wasUnauthorized = this.status === STATUS.UNAUTHORIZED;
    const previousUser = this.userId;
    this._adoptToken(newToken);
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

  getBalance(currency = this.options.currency) {
    return this.balances.get(currency) ?? null;
  }

  addStatusListener(callback) { this.statusListeners.add(callback); }
  removeStatusListener(callback) { this.statusListeners.delete(callback); }
  addErrorListener(callback) { this.errorListeners.add(callback); }
  removeErrorListener(callback) { this.errorListeners.delete(callback); }

  get isConnected() { return this.status === STATUS.CONNECTED; }

  // ---- socket lifecycle ----

  async _openSocket() {
    if (!this._started) return;
    this._clear('retry');
    if (globalThis.navigator && globalThis.navigator.onLine === false) { this._handleOffline(); return; }
    if (!this.token || this._tokenExpired()) {
      if (!(await this._freshToken('expired'))) return;
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
        if (data.expires_at) this.expiresAt = Date.parse(data.expires_at) || this.expiresAt;
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
    this._stopPolling();
    this._setError(null);
    this._setStatus(STATUS.CONNECTED);
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
      this._freshToken('expired').then(ok => {
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
    if (!this._started) return;
    if (this._failures >= this.options.fallbackAfter) this._startPolling();
    else if (this.status !== STATUS.FALLBACK) this._setStatus(STATUS.RECONNECTING);
    // Full jitter: spread reconnecting clients over the whole window so a restarted server is not stampeded.
    const cap = Math.min(this.options.maxDelay, this.options.initialDelay * 2 ** Math.max(0, this._failures - 1));
    this._setTimer('retry', Math.random() * cap, () => this._openSocket());
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

  _startPolling() {
    if (this.status !== STATUS.FALLBACK) this._setStatus(STATUS.FALLBACK);
    if (!this._polling) this._poll();
  }

  _stopPolling() {
    this._clear('poll');
    this._polling = null;
  }

  async _poll() {
    this._clear('poll');
    const run = {};
    this._polling = run;
    const currencies = new Set([this.options.currency, ...this.balances.keys()]);
    try {
      for (const currency of currencies) await this._fetchBalance(currency);
    } catch (e) {
      if (this._polling === run) this._report(e instanceof BalanceError ? e : new BalanceError('poll_failed', e?.message, { cause: e }));
    }
    if (this._polling === run && this.status === STATUS.FALLBACK) this._setTimer('poll', this.options.pollInterval, () => this._poll());
  }

  async _fetchBalance(currency, retried = false) {
    const headers = { Accept: 'application/json', Authorization: `Bearer ${this.token}` };
    const etag = this._etags.get(currency);
    if (etag) headers['If-None-Match'] = etag;
    const response = await fetch(`${this.restBaseUrl}/api/balance?currency=${encodeURIComponent(currency)}`, { headers, cache: 'no-store' });
    if (response.status === 304) return;
    if (response.status === 401 && !retried) {
      if (await this._freshToken('expired')) return this._fetchBalance(currency, true);
      return;
    }
    if (response.status === 401 || response.status === 403) {
      this._stop(STATUS.UNAUTHORIZED, new BalanceError(response.status === 401 ? 'unauthorized' : 'forbidden', `GET /api/balance answered ${response.status}.`));
      return;
    }
    if (!response.ok) throw new BalanceError('poll_failed', `GET /api/balance answered ${response.status}.`, { status: response.status });
    const data = await response.json();
    if (this.status !== STATUS.FALLBACK) return; // the socket came back while this was in flight
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
    if (!this.storage || !key) return;
    try { this.storage.setItem(key, JSON.stringify(Object.fromEntries(this.balances))); } catch { /* quota or disabled */ }
  }

  _load() {
    const key = this._cacheKey();
    if (!this.storage || !key) return;
    try {
      const cached = JSON.parse(this.storage.getItem(key) || '{}');
      // Cached balances are for display only; they do not set the version floor, the server's snapshot does.
      for (const data of Object.values(cached)) if (isValidBalance(data) && data.user_id === this.userId) this.balances.set(data.currency, data);
    } catch { /* a corrupt cache is no cache */ }
  }

  // ---- tokens ----

  _adoptToken(token) {
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
    this.expiresAt = typeof claims?.exp === 'number' ? claims.exp * 1000 : null;
    this._scheduleRefresh(claims);
  }

  _tokenExpired() {
    return this.options.refreshAhead !== false && this.expiresAt !== null && this.expiresAt <= Date.now() && !!this.options.getToken;
  }

  _scheduleRefresh(claims) {
    this._clear('refresh');
    if (!this.options.getToken || this.options.refreshAhead === false || !this.expiresAt) return;
    const lifetime = typeof claims?.iat === 'number' ? this.expiresAt - claims.iat * 1000 : 60000;
    const ahead = this.options.refreshAhead ?? Math.min(60000, Math.max(1000, lifetime / 4));
    this._setTimer('refresh', Math.max(0, this.expiresAt - ahead - Date.now()), () => {
      if (this._started) this._freshToken('refresh');
    });
  }

  // Asks the app for a token (once at a time); re-authenticates the open socket with it.
  _freshToken(reason) {
    if (!this.options.getToken) {
      if (reason === 'expired') this._stop(STATUS.UNAUTHORIZED, new BalanceError('token_expired', 'The access token expired and no getToken option was given.'));
      return Promise.resolve(false);
    }
    this._tokenPromise ??= (async () => {
      try {
        const token = await this.options.getToken(reason);
        if (!token) throw new BalanceError('token_unavailable', 'getToken returned no token.');
        this._adoptToken(token);
        if (this._authenticated) this.authenticate();
        return true;
      } catch (e) {
        if (reason === 'expired') {
          this._stop(STATUS.UNAUTHORIZED, e instanceof BalanceError ? e : new BalanceError('token_refresh_failed', e?.message, { cause: e }));
        } else {
          // The current token still works for a while; the server's 4001 will bring us back here.
          this._report(new BalanceError('token_refresh_failed', e?.message, { cause: e }));
        }
        return false;
      } finally {
        this._tokenPromise = null;
      }
    })();
    return this._tokenPromise;
  }

  // ---- plumbing ----

  _setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    try { this.options.onStatus?.(status); } catch { /* an app callback must not break the client */ }
    this.statusListeners.forEach(cb => { try { cb(status); } catch { /* ditto */ } });
  }

  _setError(error) {
    this.error = error;
    if (error) this._report(error);
  }

  _report(error) {
    try { this.options.onError?.(error); } catch { /* an app callback must not break the client */ }
    this.errorListeners.forEach(cb => { try { cb(error); } catch { /* ditto */ } });
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

// One socket per user and server for the whole page: hooks and components lease the shared service.
const shared = new Map();

export function acquireBalanceService(baseUrl, token, options = {}) {
  const key = `${baseUrl || defaultBaseUrl()}|${decodeJwt(token)?.sub ?? token}`;
  let entry = shared.get(key);
  if (!entry) {
    entry = { service: new BalanceWebSocketService(baseUrl, token, options), count: 0 };
    shared.set(key, entry);
    entry.service.connect();
  } else if (token && token !== entry.service.token) {
    entry.service.updateToken(token);
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
