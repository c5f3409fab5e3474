// The demo page: a player watches their balance live; an operator moves a player's money.
import { acquireBalanceService } from '/balance-client.js';

const $ = id => document.getElementById(id);
const SESSION_KEY = 'balance-demo-session';

// Per tab, so one window can be alice and another the operator.
let session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
let lease = null;   // the player's balance service, shared with every other tab of this user
let service = null;
let refreshing = null;

function saveSession(next) {
  session = next;
  if (next) sessionStorage.setItem(SESSION_KEY, JSON.stringify(next));
  else sessionStorage.removeItem(SESSION_KEY);
}

// Refresh tokens rotate: one refresh at a time, shared by the socket client and REST calls.
function refreshAccessToken() {
  refreshing ??= (async () => {
    try {
      const response = await fetch('/api/auth/refresh', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ refresh_token: session?.refresh_token }),
      });
      // The status tells the client a refusal (log in again) from a blip (try again).
      if (!response.ok) throw Object.assign(new Error(`refresh answered ${response.status}`), { status: response.status });
      const pair = await response.json();
      saveSession({ ...session, access_token: pair.access_token, refresh_token: pair.refresh_token });
      return pair.access_token;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

async function api(path, init = {}, retried = false) {
  const headers = { Accept: 'application/json', ...(init.headers || {}), Authorization: `Bearer ${session.access_token}` };
  if (init.body) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401 && !retried) {
    try {
      const token = await refreshAccessToken();
      service?.updateToken(token);
    } catch (e) {
      if (e?.status !== 401 && e?.status !== 403) throw new Error('Could not renew the session; try again.');
      sessionEnded(e);
      throw new Error('Your session ended; log in again.');
    }
    return api(path, init, true);
  }
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.detail || body?.title || `HTTP ${response.status}`);
  return body;
}

function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : '';
}

function row(cells, cls) {
  const tr = document.createElement('tr');
  if (cls) tr.className = cls;
  for (const [text, className] of cells) {
    const td = document.createElement('td');
    td.textContent = text ?? '';
    if (className) td.className = className;
    tr.append(td);
  }
  return tr;
}

const CREDIT = new Set(['deposit', 'win', 'rollback']);
function transactionCells(t) {
  const sign = CREDIT.has(t.type) ? '+' : '−';
  return [[time(t.created_at)], [t.type], [`${sign}${t.amount} ${t.currency}`, `num ${CREDIT.has(t.type) ? 'credit' : 'debit'}`],
    [t.balance, 'num'], [t.reference || (t.reverses ? `undoes ${t.reverses.slice(0, 8)}` : '')]];
}

// ---- login ----

async function login(username, password) {
  $('login-error').textContent = '';
  const response = await fetch('/api/auth/login', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password }),
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    $('login-error').textContent = body?.detail || `Login failed (${response.status}).`;
    return;
  }
  saveSession({ ...body, username });
  show();
}

// The logout button: every tab of this user leaves with this one (the client tells them), then the login ends.
async function logout() {
  const ending = session;
  saveSession(null); // first, so this tab's own login-required signal finds nothing left to end
  service?.logout();
  stopPlayer();
  show();
  revoke(ending);
}

// The client says the session is over: refused or revoked by the server, or a logout in another tab.
function sessionEnded(error) {
  if (!session) return;
  const ending = session;
  saveSession(null);
  stopPlayer();
  show();
  $('login-error').textContent = error?.code === 'logged_out'
    ? 'You logged out in another tab.'
    : `Your session ended (${error?.message || 'not authorized'}). Please log in again.`;
  if (error?.code === 'logged_out') revoke(ending); // tabs log in separately: this tab's login ends too
}

function revoke(ending) {
  if (!ending) return;
  fetch('/api/auth/logout', {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${ending.access_token}` },
    body: JSON.stringify({ refresh_token: ending.refresh_token }),
  }).catch(() => { /* the tokens expire anyway */ });
}

// ---- player ----

let historyTimer = null;
async function loadHistory() {
  try {
    const page = await api('/api/transactions?limit=10');
    const body = $('transactions').tBodies[0];
    body.replaceChildren(...page.items.map(t => row(transactionCells(t))));
  } catch (e) {
    $('player-error').textContent = e.message;
  }
}

function startPlayer() {
  lease = acquireBalanceService(location.origin.replace(/^http/, 'ws'), session.access_token, {
    getToken: () => refreshAccessToken(),
    onStatus: status => {
      $('status').textContent = status;
      $('status').dataset.status = status;
      if (status === 'connected') $('player-error').textContent = '';
    },
    onLoginRequired: sessionEnded,
    debounce: 50,
  });
  service = lease.service;
  $('status').textContent = service.status;
  $('status').dataset.status = service.status;
  service.addListener(data => {
    if (data.currency !== 'USD') return;
    $('balance').textContent = data.balance;
    $('currency').textContent = data.currency;
    $('last-change').textContent = data.transaction_type
      ? `Last change: ${data.transaction_type} at ${time(data.updated_at)} (version ${data.version})`
      : `Version ${data.version}`;
    const amount = $('balance').parentElement;
    amount.classList.remove('flash');
    void amount.offsetWidth; // restarts the animation
    amount.classList.add('flash');
    clearTimeout(historyTimer);
    historyTimer = setTimeout(loadHistory, 100);
  });
  loadHistory();
}

function stopPlayer() {
  clearTimeout(historyTimer);
  lease?.release();
  lease = null;
  service = null;
}

// ---- operator ----

const playerIds = new Map();
async function playerId(username) {
  if (!playerIds.has(username)) {
    const users = await api(`/api/users?username=${encodeURIComponent(username)}`);
    const player = users.find(u => u.username === username && u.role === 'player');
    if (!player) throw new Error(`No player named ${username}.`);
    playerIds.set(username, player.user_id);
  }
  return playerIds.get(username);
}

// randomUUID exists only in secure contexts; a demo opened over plain http on a LAN address has none.
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), b => b.toString(16).padStart(2, '0')).join('');
}

// One key per intended transaction: the same request retried after a failure (a lost response) keeps its key,
// so the ledger applies it at most once; only a success frees the next click to be a new transaction.
let pending = null;
async function post(body) {
  const text = JSON.stringify(body);
  if (pending?.text !== text) pending = { text, key: newKey() };
  const result = await api('/api/transactions', { method: 'POST', headers: { 'Idempotency-Key': pending.key }, body: text });
  pending = null;
  return result;
}

async function loadOperatorHistory() {
  const result = $('op-result');
  try {
    const userId = await playerId($('op-player').value.trim());
    const page = await api(`/api/transactions?limit=15&user_id=${encodeURIComponent(userId)}`);
    const reversed = new Set(page.items.filter(t => t.reverses).map(t => t.reverses));
    const rows = page.items.map(t => {
      const tr = row(transactionCells(t));
      const cell = document.createElement('td');
      if (t.type === 'bet' && !reversed.has(t.transaction_id)) {
        const button = document.createElement('button');
        button.type = 'button';
        button.textContent = 'Roll back';
        button.className = 'rollback';
        button.addEventListener('click', () => rollback(t.transaction_id));
        cell.append(button);
      }
      tr.append(cell);
      return tr;
    });
    $('op-transactions').tBodies[0].replaceChildren(...rows);
  } catch (e) {
    result.textContent = e.message;
    result.className = 'error';
  }
}

async function submitTransaction(event) {
  event.preventDefault();
  const result = $('op-result');
  result.textContent = 'Posting…';
  result.className = 'muted';
  try {
    const username = $('op-player').value.trim();
    const body = {
      user_id: await playerId(username), type: $('op-type').value, amount: $('op-amount').value.trim(),
      currency: $('op-currency').value, reference: $('op-reference').value.trim() || undefined,
    };
    const posted = await post(body);
    result.textContent = `${posted.type} ${posted.amount} ${posted.currency} for ${username}: balance ${posted.balance}.`;
    result.className = '';
    await loadOperatorHistory();
  } catch (e) {
    result.textContent = e.message;
    result.className = 'error';
  }
}

async function rollback(transactionId) {
  const result = $('op-result');
  try {
    const posted = await post({ type: 'rollback', reverses: transactionId });
    result.textContent = `Rolled back: +${posted.amount} ${posted.currency}, balance ${posted.balance}.`;
    result.className = '';
  } catch (e) {
    result.textContent = e.message;
    result.className = 'error';
  }
  await loadOperatorHistory();
}

// ---- views ----

function show() {
  const role = session?.role;
  $('login-view').hidden = !!session;
  $('player-view').hidden = role !== 'player';
  $('operator-view').hidden = role !== 'operator';
  $('who').hidden = !session;
  $('who-name').textContent = session ? `${session.username} (${role})` : '';
  if (role === 'player' && !service) startPlayer();
  if (role === 'operator') loadOperatorHistory();
}

$('login-form').addEventListener('submit', event => {
  event.preventDefault();
  login($('username').value.trim(), $('password').value);
});
document.querySelectorAll('[data-user]').forEach(button => button.addEventListener('click', () => {
  $('username').value = button.dataset.user;
  $('password').value = 'demo1234';
  login(button.dataset.user, 'demo1234');
}));
$('logout').addEventListener('click', logout);
$('op-form').addEventListener('submit', submitTransaction);
$('op-refresh').addEventListener('click', loadOperatorHistory);
$('op-player').addEventListener('change', loadOperatorHistory);
show();
