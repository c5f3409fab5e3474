// Types for balance-react.js. It imports 'react' by name: bundlers resolve it; without a bundler use an
// import map, e.g. <script type="importmap">{"imports":{"react":"/vendor/react.mjs"}}</script>.
import type { BalanceClientOptions, BalanceError, BalanceMessage, BalanceStatus } from './balance-client.js';

export interface UseBalanceResult {
  balance: BalanceMessage | null;
  status: BalanceStatus;
  isConnected: boolean;
  /** Set when the client gave up ('unauthorized', or 'closed' after 1009): time to log in again. */
  error: BalanceError | null;
  /** True once the session is over: show the login page (options.onLoginRequired is called at the same moment). */
  loginRequired: boolean;
  updateToken(newToken: string): void;
  /** Logs out every tab: ends the shared service and clears the cached balance. */
  logout(): void;
}

/** Options are read when the user's socket is first opened; getToken may change between renders. */
export function useBalance(baseUrl: string | null | undefined, token: string | null | undefined, options?: BalanceClientOptions): UseBalanceResult;
export const useBalanceWebSocket: typeof useBalance;
