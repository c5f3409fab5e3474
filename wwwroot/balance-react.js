// React hook for balance-client.js (React 18+). Imports 'react' by its bare name: a bundler (Vite, webpack, Next)
// resolves it as usual; a page without a bundler maps it with an import map (see balance-react.d.ts).
import { useCallback, useEffect, useRef, useSyncExternalStore } from 'react';
import { acquireBalanceService, decodeJwt } from './balance-client.js';

const userOf = token => (token ? (decodeJwt(token)?.sub ?? token) : null);

function snapshotOf(status, error, balances, currency) {
  const balance = (currency && balances[currency]) || null;
  return {
    balances,
    balance,
    status,
    error,
    loginRequired: status === 'unauthorized',
    isLoading: balance === null && (status === 'connecting' || status === 'reconnecting' || status === 'offline' || status === 'fallback'),
  };
}

// What a render sees before the service speaks, and what the server renders: no balance, nothing live yet.
const IDLE = Object.freeze(snapshotOf('closed', null, Object.freeze({}), null));
const CONNECTING = Object.freeze({ ...snapshotOf('connecting', null, Object.freeze({}), null), isLoading: true });

// The guide's useBalanceWebSocket(baseUrl, token), but every component (and every tab) shares one socket per
// user; every wallet is there (balances, keyed by currency) besides the one shown (balance). Built on
// useSyncExternalStore: under concurrent rendering no two components show different balances in one commit.
// Nothing connects during a server render: the socket is opened when the component subscribes, in the browser.
export function useBalance(baseUrl, token, options = {}) {
  const currency = options.currency ?? null;
  const user = userOf(token);
  const optionsRef = useRef(options);
  optionsRef.current = options;
  const tokenRef = useRef(token);
  tokenRef.current = token;
  const serviceRef = useRef(null);
  const key = token ? `${baseUrl ?? ''}|${user}|${currency ?? ''}` : null;
  // The store's last snapshot, tagged with the subscription it belongs to: after a switch of user, a render
  // before the new subscription runs sees CONNECTING, never the previous user's balance.
  const storeRef = useRef({ key: null, snapshot: IDLE });

  const subscribe = useCallback(notify => {
    if (!key) return () => {};
    // Callbacks through the ref: the app may pass new closures each render without reconnecting.
    // onLoginRequired is each component's own, so it is called below rather than given to the shared service.
    // currency too: the service is shared by components that may each show another wallet.
    const { getToken, onLoginRequired: _own, currency: _currency, ...shared } = optionsRef.current;
    const lease = acquireBalanceService(baseUrl, tokenRef.current, {
      ...shared,
      getToken: getToken ? reason => optionsRef.current.getToken(reason) : null,
    });
    const service = lease.service;
    serviceRef.current = service;
    const update = () => {
      const shown = currency ?? service.primaryCurrency;
      const balances = Object.freeze(Object.fromEntries(service.balances));
      const previous = storeRef.current.key === key ? storeRef.current.snapshot : null;
      const next = snapshotOf(service.status, service.error, balances, shown);
      if (previous && previous.status === next.status && previous.error === next.error && previous.balance === next.balance
        && Object.keys(balances).length === Object.keys(previous.balances).length
        && Object.entries(balances).every(([c, b]) => previous.balances[c] === b)) return;
      storeRef.current = { key, snapshot: next };
      notify();
    };
    const onLoginRequired = error => {
      try { optionsRef.current.onLoginRequired?.(error); } catch { /* an app callback must not break the hook */ }
    };
    service.addListener(update);
    service.addStatusListener(update);
    service.addLoginRequiredListener(onLoginRequired);
    update();
    return () => {
      service.removeListener(update);
      service.removeStatusListener(update);
      service.removeLoginRequiredListener(onLoginRequired);
      if (serviceRef.current === service) serviceRef.current = null;
      lease.release();
    };
    // The socket belongs to the user, not to one token: a refreshed token is handed over below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [baseUrl, key]);

  const getSnapshot = () => {
    if (!key) return IDLE;
    return storeRef.current.key === key ? storeRef.current.snapshot : CONNECTING;
  };
  const state = useSyncExternalStore(subscribe, getSnapshot, () => IDLE);

  useEffect(() => {
    // updateToken ignores a token older than the service's: this component may hold the one it was first given.
    if (token) serviceRef.current?.updateToken(token);
  }, [token]);

  const updateToken = useCallback(newToken => serviceRef.current?.updateToken(newToken), []);
  const logout = useCallback(() => serviceRef.current?.logout(), []);

  return {
    balance: state.balance,
    balances: state.balances,
    status: state.status,
    isConnected: state.status === 'connected',
    isLoading: state.isLoading,
    error: state.error,
    loginRequired: state.loginRequired,
    updateToken,
    logout,
  };
}

// The guide's name for the same hook, so existing components keep working.
export const useBalanceWebSocket = useBalance;
