// Types for balance-vue.js. It imports 'vue' by name: bundlers resolve it; without a bundler use an
// import map, e.g. <script type="importmap">{"imports":{"vue":"/vendor/vue.esm-browser.prod.js"}}</script>.
import type { ComputedRef, Ref, ShallowRef } from 'vue';
import type { BalanceClientOptions, BalanceError, BalanceMessage, BalanceStatus } from './balance-client.js';

export interface UseBalanceResult {
  balance: ShallowRef<BalanceMessage | null>;
  status: Ref<BalanceStatus>;
  isConnected: ComputedRef<boolean>;
  error: ShallowRef<BalanceError | null>;
  /** True once the session is over: show the login page (options.onLoginRequired is called at the same moment). */
  loginRequired: ComputedRef<boolean>;
  updateToken(newToken: string): void;
  /** Logs out every tab: ends the shared service and clears the cached balance. */
  logout(): void;
  /** Releases the shared socket; called on unmount when used inside a component. */
  disconnect(): void;
}

export function useBalance(baseUrl: string | Ref<string> | null | undefined, token: string | Ref<string | null> | null | undefined,
  options?: BalanceClientOptions): UseBalanceResult;
export const useBalanceWebSocket: typeof useBalance;
