// Types for balance-react.js (React 18+). It imports 'react' by name: bundlers resolve it; without a bundler use an
// import map, e.g. <script type="importmap">{"imports":{"react":"/vendor/react.mjs"}}</script>.
import type { BalanceClientOptions, BalanceError, BalanceMessage, BalanceStatus } from './balance-client.js';

export interface UseBalanceOptions extends BalanceClientOptions {
  /** The wallet `balance` shows; default: the one that changed last among those holding money (primaryCurrency). */
  currency?: string | null;
}

export interface UseBalanceResult {
  /** The wallet asked for (options.currency), else the default wallet; null until it is known. */
  balance: BalanceMessage | null;
  /** Every wallet known, keyed by currency (e.g. balances.EUR). */
  balances: Readonly<Record<string, BalanceMessage>>;
  status: BalanceStatus;
  /** status === 'connected': balances are flowing live. */
  isConnected: boolean;
  /** No balance to show yet while the client is still getting one. */
  isLoading: boolean;
  /** Set when the client gave up ('unauthorized', or 'closed' after 1009): time to log in again. */
  error: BalanceError | null;
  /** True once the session is over: show the login page (options.onLoginRequired is called at the same moment). */
  loginRequired: boolean;
  updateToken(newToken: string): void;
  /** Logs out every tab: ends the shared service and clears the cached balance. */
  logout(): void;
}

/** Options are read when the user's socket is first opened; getToken and onLoginRequired may change between renders.
 *  Nothing connects during a server render (SSR): the socket opens when the component mounts in a browser. */
export function useBalance(baseUrl: string | null | undefined, token: string | null | undefined, options?: UseBalanceOptions): UseBalanceResult;
export const useBalanceWebSocket: typeof useBalance;
