// Test harness for balance-client.js: records what the client does so the C# tests can wait on it.
import { BalanceWebSocketService } from '/balance-client.js';

const h = window.h = { sockets: 0, auths: 0, pongs: 0, pings: 0, authOks: [], statuses: [], errors: [], tokenCalls: [], received: [] };

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
  }
  send(data) {
    const text = String(data);
    if (text.includes('"pong"')) h.pongs++;
    if (text.includes('"auth"')) h.auths++;
    super.send(data);
  }
};

// A frame as if it had come off the wire on the client's current socket: the tests hand the client what the
// real server never sends (stale, duplicate, malformed) through the same message path a server frame takes.
window.deliver = message => h.socket.dispatchEvent(new MessageEvent('message', { data: JSON.stringify(message) }));

async function refresh(reason) {
  h.tokenCalls.push(reason);
  const response = await fetch('/api/auth/refresh', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: h.refreshToken }),
  });
  if (!response.ok) throw new Error(`refresh answered ${response.status}`);
  const pair = await response.json();
  h.refreshToken = pair.refresh_token;
  return pair.access_token;
}

window.startClient = ({ token, refreshToken = null, options = {}, listeners = 1 }) => {
  h.refreshToken = refreshToken;
  const service = new BalanceWebSocketService(location.origin.replace(/^http/, 'ws'), token, {
    ...options,
    getToken: refreshToken ? refresh : null,
    onStatus: status => h.statuses.push(status),
    onError: error => h.errors.push(`${error.code}: ${error.message}`),
  });
  for (let i = 0; i < listeners; i++) {
    const got = [];
    h.received.push(got);
    service.addListener(data => got.push(data.balance));
  }
  service.connect();
  h.service = service;
};

h.ready = true;
