// The client's rules that need no server and no browser, run by Node (ClientRulesTests): which wallet is shown by
// default, that nothing connects outside a browser, and the guide's reconnect members.
import assert from 'node:assert/strict';

const constructed = [];
globalThis.WebSocket = class { constructor(url) { constructed.push(url); } };
const { BalanceWebSocketService, acquireBalanceService, isBrowser } = await import(process.argv[2]);

const wallet = (currency, balance, updated_at = null) => ({ type: 'balance', user_id: 'u', currency, balance, version: 1, updated_at });
const shown = (balances, options = {}) => {
  const service = new BalanceWebSocketService('ws://example.invalid', null, { storage: null, ...options });
  for (const b of balances) service.balances.set(b.currency, b);
  return service.primaryCurrency;
};

// Nothing known yet: the server's default wallet.
assert.equal(shown([]), 'USD');
// The snapshot of a EUR-only player still has USD at zero: EUR holds the money.
assert.equal(shown([wallet('USD', '0.00'), wallet('EUR', '50.00', '2026-12-01T10:00:00Z')]), 'EUR');
assert.equal(shown([wallet('EUR', '50.00', '2026-12-01T10:00:00Z'), wallet('USD', '0.00', '2026-12-02T10:00:00Z')]), 'EUR');
// Among wallets holding money, the one that changed last.
assert.equal(shown([wallet('USD', '10.00', '2026-12-02T10:00:00Z'), wallet('EUR', '50.00', '2026-12-01T10:00:00Z')]), 'USD');
assert.equal(shown([wallet('USD', '10.00', '2026-12-01T10:00:00Z'), wallet('BTC', '0.00000001', '2026-12-03T10:00:00Z')]), 'BTC');
// None holds money: the one that changed last.
assert.equal(shown([wallet('USD', '0.00', '2026-12-01T10:00:00Z'), wallet('JPY', '0', '2026-12-03T10:00:00Z')]), 'JPY');
// Named in the options: that one, even at zero.
assert.equal(shown([wallet('USD', '0.00'), wallet('EUR', '50.00')], { currency: 'USD' }), 'USD');

// Outside a browser nothing connects, and the shared map keeps nothing between server requests.
assert.equal(isBrowser(), false);
const service = new BalanceWebSocketService('ws://example.invalid', 'a.b.c', { storage: null });
service.connect();
const first = acquireBalanceService('ws://example.invalid', 'a.b.c', { storage: null });
const second = acquireBalanceService('ws://example.invalid', 'a.b.c', { storage: null });
assert.notEqual(first.service, second.service);
assert.equal(first.service.status, 'closed');
assert.deepEqual(constructed, []);

// The guide's members: maxReconnectAttempts never gives up by default; reconnectDelay is the first backoff step.
const guide = new BalanceWebSocketService('ws://example.invalid', null, { storage: null });
assert.equal(guide.maxReconnectAttempts, Infinity);
assert.equal(guide.reconnectAttempts, 0);
guide.reconnectDelay = 1000;
assert.equal(guide.options.initialDelay, 1000);
guide.maxReconnectAttempts = 5;
assert.equal(guide.options.maxReconnectAttempts, 5);
assert.equal(typeof guide.handleReconnection, 'function');
assert.equal(typeof guide.fallbackToRestAPI, 'function');

console.log('client rules: ok');
