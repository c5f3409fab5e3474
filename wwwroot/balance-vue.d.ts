// Types for balance-vue.js (Vue 3.3+). It imports 'vue' by name: bundlers resolve it; without a bundler use an
// import map, e.g. <script type="importmap">{"imports":{"vue":"/vendor/vue.esm-browser.prod.js"}}</script>.
import type { ComputedRef, MaybeRefOrGetter, Ref, ShallowRef } from 'vue';
import type { BalanceClientOptions, BalanceError, BalanceMessage, BalanceStatus } from './balance-client.js';

export interface UseBalanceOptions extends BalanceClientOptions {
  /** The wallet `balance` shows; default: the one that changed last among those holding money (primaryCurrency). */
  currency?: string | null;
}

export interface UseBalanceResult {
  /** The wallet asked for (options.currency), else the default wallet; null until it is known. */
  balance: ComputedRef<BalanceMessage | null>;
  /** Every wallet known, keyed by currency (e.g. balances.value.EUR). */
  balances: ShallowRef<Readonly<Record<string, BalanceMessage>>>;
  status: Ref<BalanceStatus>;
  isConnected: ComputedRef<boolean>;
  /** No balance to show yet while the client is still getting one. */
  isLoading: ComputedRef<boolean>;
  error: ShallowRef<BalanceError | null>;
  /** True once the session is over: show the login page (options.onLoginRequired is called at the same moment). */
  loginRequired: ComputedRef<boolean>;
  updateToken(newToken: string): void;
  /** Logs out every tab: ends the shared service and clears the cached balance. */
  logout(): void;
  /** Releases the shared socket; called on unmount when used inside a component. */
  disconnect(): void;
}

/** baseUrl and token: plain values, refs or getters. Inside a component it starts on mount (never during SSR);
 *  outside one it starts at once in a browser and never on a server; call disconnect() when done. */
export function useBalance(baseUrl: MaybeRefOrGetter<string | null | undefined>, token: MaybeRefOrGetter<string | null | undefined>,
  options?: UseBalanceOptions): UseBalanceResult;
export const useBalanceWebSocket: typeof useBalance;
