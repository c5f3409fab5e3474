// Vue 3 composable for balance-client.js (Vue 3.3+). Imports 'vue' by its bare name: a bundler resolves it;
// a page without one maps it with an import map to vue.esm-browser.js (see balance-vue.d.ts).
import { computed, getCurrentInstance, onMounted, onUnmounted, ref, shallowRef, toValue, watch } from 'vue';
import { acquireBalanceService, decodeJwt, isBrowser } from './balance-client.js';

const userOf = value => (value ? (decodeJwt(value)?.sub ?? value) : null);

// The guide's useBalanceWebSocket(baseUrl, token) with every wallet (balances, keyed by currency) besides the one
// shown (balance), and status, isConnected, isLoading, error and loginRequired that follow the connection.
// baseUrl and token may be plain values, refs or getters (a new token of the same user re-authenticates the
// shared socket). Inside a component it starts on mount, so a server render never opens a socket; outside one
// (a Pinia store, a plugin) it starts at once in a browser, never on a server, and the caller calls disconnect().
export function useBalance(baseUrl, token, options = {}) {
  const { onLoginRequired: ownLoginRequired, currency: ownCurrency, ...sharedOptions } = options;
  const balances = shallowRef(Object.freeze({}));
  const status = ref('closed');
  const error = shallowRef(null);
  const shown = ref(ownCurrency ?? null);
  const balance = computed(() => (shown.value && balances.value[shown.value]) || null);
  const isConnected = computed(() => status.value === 'connected');
  const loginRequired = computed(() => status.value === 'unauthorized');
  const isLoading = computed(() => balance.value === null && ['connecting', 'reconnecting', 'offline', 'fallback'].includes(status.value));
  let lease = null;
  let detach = null;
  let started = false; // mounted, or started outside a component, and not disconnected since

  const stop = () => {
    detach?.();
    detach = null;
    lease?.release();
    lease = null;
  };

  const start = () => {
    stop();
    const current = toValue(token);
    if (!current || !isBrowser()) {
      balances.value = Object.freeze({});
      status.value = 'closed';
      return;
    }
    lease = acquireBalanceService(toValue(baseUrl), current, sharedOptions);
    const service = lease.service;
    const update = () => {
      balances.value = Object.freeze(Object.fromEntries(service.balances));
      shown.value = ownCurrency ?? service.primaryCurrency;
      status.value = service.status;
      error.value = service.error;
    };
    const onLogin = reason => { try { ownLoginRequired?.(reason); } catch { /* an app callback must not break the composable */ } };
    service.addListener(update);
    service.addStatusListener(update);
    service.addLoginRequiredListener(onLogin);
    detach = () => {
      service.removeListener(update);
      service.removeStatusListener(update);
      service.removeLoginRequiredListener(onLogin);
    };
    update();
  };

  watch(() => [toValue(baseUrl), toValue(token)], ([newBase, newToken], [oldBase, oldToken]) => {
    if (!lease) {
      if (started && newToken) start(); // a token arrived after mount (a login)
      return;
    }
    if (newBase === oldBase && userOf(newToken) === userOf(oldToken) && newToken) lease.service.updateToken(newToken);
    else start();
  });

  const begin = () => { started = true; start(); };
  if (getCurrentInstance()) {
    onMounted(begin);
    onUnmounted(() => { started = false; stop(); });
  } else if (isBrowser()) {
    begin(); // outside a component the caller owns the lifetime: call disconnect()
  }

  const updateToken = newToken => lease?.service.updateToken(newToken);
  const logout = () => lease?.service.logout();
  const disconnect = () => { started = false; stop(); };

  return { balance, balances, status, isConnected, isLoading, error, loginRequired, updateToken, logout, disconnect };
}

export const useBalanceWebSocket = useBalance;
