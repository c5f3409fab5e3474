// Vue 3 composable for balance-client.js. Imports 'vue' by its bare name: a bundler resolves it;
// a page without one maps it with an import map to vue.esm-browser.js (see balance-vue.d.ts).
import { computed, getCurrentInstance, onMounted, onUnmounted, ref, shallowRef, unref, watch } from 'vue';
import { acquireBalanceService, decodeJwt } from './balance-client.js';

// The guide's useBalanceWebSocket(baseUrl, token) with status, isConnected, error and loginRequired that follow
// the connection; token may be a ref (a new token of the same user re-authenticates the shared socket).
export function useBalance(baseUrl, token, options = {}) {
  const currency = options.currency ?? 'USD';
  const { onLoginRequired: ownLoginRequired, ...sharedOptions } = options;
  const balance = shallowRef(null);
  const status = ref('closed');
  const error = shallowRef(null);
  const isConnected = computed(() => status.value === 'connected');
  const loginRequired = computed(() => status.value === 'unauthorized');
  let lease = null;
  let detach = null;

  const stop = () => {
    detach?.();
    detach = null;
    lease?.release();
    lease = null;
  };

  const start = () => {
    stop();
    const current = unref(token);
    if (!current) {
      balance.value = null;
      status.value = 'closed';
      return;
    }
    lease = acquireBalanceService(unref(baseUrl), current, sharedOptions);
    const service = lease.service;
    const onBalance = data => { if (data.currency === currency) balance.value = data; };
    const onStatus = next => { status.value = next; error.value = service.error; balance.value = service.getBalance(currency); };
    const onLogin = reason => { try { ownLoginRequired?.(reason); } catch { /* an app callback must not break the composable */ } };
    service.addListener(onBalance);
    service.addStatusListener(onStatus);
    service.addLoginRequiredListener(onLogin);
    detach = () => {
      service.removeListener(onBalance);
      service.removeStatusListener(onStatus);
      service.removeLoginRequiredListener(onLogin);
    };
    balance.value = service.getBalance(currency);
    status.value = service.status;
    error.value = service.error;
  };

  const userOf = value => (value ? (decodeJwt(value)?.sub ?? value) : null);
  watch(() => [unref(baseUrl), unref(token)], ([newBase, newToken], [oldBase, oldToken]) => {
    if (!lease) return;
    if (newBase === oldBase && userOf(newToken) === userOf(oldToken) && newToken) lease.service.updateToken(newToken);
    else start();
  });

  if (getCurrentInstance()) {
    onMounted(start);
    onUnmounted(stop);
  } else {
    start(); // outside a component the caller owns the lifetime: call disconnect()
  }

  const updateToken = newToken => lease?.service.updateToken(newToken);
  const logout = () => lease?.service.logout();

  return { balance, status, isConnected, error, loginRequired, updateToken, logout, disconnect: stop };
}

export const useBalanceWebSocket = useBalance;
