// React hook for balance-client.js. Imports 'react' by its bare name: a bundler (Vite, webpack, Next)
// resolves it as usual; a page without a bundler maps it with an import map (see balance-react.d.ts).
import { useCallback, useEffect, useRef, useState } from 'react';
import { acquireBalanceService, decodeJwt } from './balance-client.js';

// The guide's useBalanceWebSocket(baseUrl, token), but every component (and every tab) shares one socket per
// user, and isConnected, status, error and loginRequired follow the connection.
export function useBalance(baseUrl, token, options = {}) {
  const currency = options.currency ?? 'USD';
  const user = token ? (decodeJwt(token)?.sub ?? token) : null;
  const optionsRef = useRef(options);
  optionsRef.current = options;
  const serviceRef = useRef(null);
  const [state, setState] = useState({ balance: null, status: token ? 'connecting' : 'closed', error: null, loginRequired: false });

  useEffect(() => {
    if (!token) {
      setState({ balance: null, status: 'closed', error: null, loginRequired: false });
      return undefined;
    }
    // Callbacks through the ref: the app may pass new closures each render without reconnecting.
    // onLoginRequired is each component's own, so it is called below rather than given to the shared service.
    const { getToken, onLoginRequired: _own, ...shared } = optionsRef.current;
    const lease = acquireBalanceService(baseUrl, token, {
      ...shared,
      getToken: getToken ? reason => optionsRef.current.getToken(reason) : null,
    });
    const service = lease.service;
    serviceRef.current = service;
    const onBalance = data => {
      if (data.currency === currency) setState(s => ({ ...s, balance: data }));
    };
    const onStatus = status => setState(s => ({
      ...s, status, error: service.error, balance: service.getBalance(currency), loginRequired: status === 'unauthorized',
    }));
    const onLoginRequired = error => {
      try { optionsRef.current.onLoginRequired?.(error); } catch { /* an app callback must not break the hook */ }
    };
    service.addListener(onBalance);
    service.addStatusListener(onStatus);
    service.addLoginRequiredListener(onLoginRequired);
    setState({ balance: service.getBalance(currency), status: service.status, error: service.error, loginRequired: service.status === 'unauthorized' });
    return () => {
      service.removeListener(onBalance);
      service.removeStatusListener(onStatus);
      service.removeLoginRequiredListener(onLoginRequired);
      serviceRef.current = null;
      lease.release();
    };
    // The socket belongs to the user, not to one token: a refreshed token is handed over below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [baseUrl, user, currency]);

  useEffect(() => {
    // updateToken ignores a token older than the service's: this component may hold the one it was first given.
    if (token) serviceRef.current?.updateToken(token);
  }, [token]);

  const updateToken = useCallback(newToken => serviceRef.current?.updateToken(newToken), []);
  const logout = useCallback(() => serviceRef.current?.logout(), []);

  return {
    balance: state.balance,
    status: state.status,
    isConnected: state.status === 'connected',
    error: state.error,
    loginRequired: state.loginRequired,
    updateToken,
    logout,
  };
}

// The guide's name for the same hook, so existing components keep working.
export const useBalanceWebSocket = useBalance;
