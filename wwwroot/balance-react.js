// React hook for balance-client.js. Imports 'react' by its bare name: a bundler (Vite, webpack, Next)
// resolves it as usual; a page without a bundler maps it with an import map (see balance-react.d.ts).
import { useCallback, useEffect, useRef, useState } from 'react';
import { acquireBalanceService, decodeJwt } from './balance-client.js';

// The guide's useBalanceWebSocket(baseUrl, token), but every component shares one socket per user,
// and isConnected, status and error follow the connection.
export function useBalance(baseUrl, token, options = {}) {
  const currency = options.currency ?? 'USD';
  const user = token ? (decodeJwt(token)?.sub ?? token) : null;
  const optionsRef = useRef(options);
  optionsRef.current = options;
  const serviceRef = useRef(null);
  const [state, setState] = useState({ balance: null, status: token ? 'connecting' : 'closed', error: null });

  useEffect(() => {
    if (!token) {
      setState({ balance: null, status: 'closed', error: null });
      return undefined;
    }
    // getToken through the ref: the app may pass a new closure each render without reconnecting.
    const { getToken } = optionsRef.current;
    const lease = acquireBalanceService(baseUrl, token, {
      ...optionsRef.current,
      getToken: getToken ? reason => optionsRef.current.getToken(reason) : null,
    });
    const service = lease.service;
    serviceRef.current = service;
    const onBalance = data => {
      if (data.currency === currency) setState(s => ({ ...s, balance: data }));
    };
    const onStatus = status => setState(s => ({ ...s, status, error: service.error }));
    service.addListener(onBalance);
    service.addStatusListener(onStatus);
    setState({ balance: service.getBalance(currency), status: service.status, error: service.error });
    return () => {
      service.removeListener(onBalance);
      service.removeStatusListener(onStatus);
      serviceRef.current = null;
      lease.release();
    };
    // The socket belongs to the user, not to one token: a refreshed token is handed over below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [baseUrl, user, currency]);

  useEffect(() => {
    const service = serviceRef.current;
    if (token && service && service.token !== token) service.updateToken(token);
  }, [token]);

  const updateToken = useCallback(newToken => serviceRef.current?.updateToken(newToken), []);

  return {
    balance: state.balance,
    status: state.status,
    isConnected: state.status === 'connected',
    error: state.error,
    updateToken,
  };
}

// The guide's name for the same hook, so existing components keep working.
export const useBalanceWebSocket = useBalance;
