// Types for balance-client.js.

/** connected: balances are flowing (the snapshot's first balance arrived, not just auth_ok); fallback: REST polling
 *  works while the socket does not; reconnecting: neither, yet (or the leader tab went quiet). */
export type BalanceStatus = 'connecting' | 'connected' | 'reconnecting' | 'fallback' | 'offline' | 'unauthorized' | 'closed';

export const SUBPROTOCOL: 'balance.v2';
export const STATUS: Readonly<{
  CONNECTING: 'connecting'; CONNECTED: 'connected'; RECONNECTING: 'reconnecting'; FALLBACK: 'fallback';
  OFFLINE: 'offline'; UNAUTHORIZED: 'unauthorized'; CLOSED: 'closed';
}>;

/** One wallet's balance, as sent by the socket and by GET /api/balance. */
export interface BalanceMessage {
  type: 'balance';
  user_id: string;
  /** A decimal string with the currency's decimals, e.g. "255.50". Never parse money into a float to compute with it. */
  balance: string;
  currency: string;
  /** +1 per committed change of this wallet; the client shows only increasing versions. */
  version: number;
  transaction_id?: string | null;
  transaction_type?: 'deposit' | 'withdrawal' | 'bet' | 'win' | 'rollback' | null;
  updated_at?: string | null;
}

export type BalanceErrorCode =
  | 'invalid_token' | 'forbidden' | 'bad_request' | 'token_expired' | 'token_unavailable' | 'token_refresh_failed'
  | 'unauthorized' | 'frame_too_large' | 'connection_lost' | 'auth_timeout' | 'heartbeat_timeout' | 'poll_failed'
  | 'socket_failed' | 'bad_message' | 'bad_balance' | 'listener_failed' | 'token_refused' | 'logged_out' | 'tab_lock_failed'
  | (string & {});

export class BalanceError extends Error {
  /** extra: properties copied onto the error (closeCode, status, cause, data). */
  constructor(code: BalanceErrorCode, message?: string, extra?: Record<string, unknown>);
  code: BalanceErrorCode;
  /** The socket's close code, when the error came from a close frame. */
  closeCode?: number;
  /** The HTTP status, when the error came from polling. */
  status?: number;
}

/** Why getToken is called: the token is about to expire, or it already has (4001, 401). */
export type TokenReason = 'refresh' | 'expired';

export interface BalanceClientOptions {
  /**
   * Returns a fresh access token (e.g. POST /api/auth/refresh). Without it, an expired token ends in 'unauthorized'.
   * A refusal ends the session: return null, or throw an error whose `status` is 401 or 403 (the refresh endpoint's
   * answer). Anything else thrown (a network error, a 5xx) is retried with backoff. With tabs shared, one tab at a time
   * calls it, under a Web Lock: keep the refresh token where every tab reads the latest (localStorage), read it inside.
   */
  getToken?: ((reason: TokenReason) => Promise<string | null | undefined> | string | null | undefined) | null;
  /** Where the REST API lives; default: baseUrl with ws→http, wss→https. */
  restBaseUrl?: string | null;
  onStatus?: ((status: BalanceStatus) => void) | null;
  /** Every problem, transient ones included (the client recovers from those by itself). */
  onError?: ((error: BalanceError) => void) | null;
  /** The session is over (refused token, revoked login, logout in any tab): send the user to the login page. */
  onLoginRequired?: ((error: BalanceError | null) => void) | null;
  /** The wallet getBalance() returns when none is named; default null: primaryCurrency, the wallet that changed last
   *  among those holding money. Always polled during the REST fallback (USD when null), with every wallet known. */
  currency?: string | null;
  /** Milliseconds to coalesce rapid updates before listeners hear of them (the newest per currency, once); default 0 (off). */
  debounce?: number;
  /** Logs state changes (status, socket, leadership, page lifecycle): true for console.debug, or a function; default false. */
  debug?: boolean | ((...args: unknown[]) => void);
  /** Where the last balance is kept for offline display; default localStorage, null for none. */
  storage?: Pick<Storage, 'getItem' | 'setItem'> | null;
  /** Reconnect backoff: full jitter between 0 and min(maxDelay, initialDelay * 2^failures); defaults 500 and 20000 ms. */
  initialDelay?: number;
  maxDelay?: number;
  /** A connection that lived this long resets the backoff; default 5000 ms. */
  stableAfter?: number;
  /** Failed socket attempts in a row before polling REST; default 3. */
  fallbackAfter?: number;
  /** REST polling period during the fallback; default 5000 ms. */
  pollInterval?: number;
  /** How long to wait for auth_ok after the socket opens; default 10000 ms. */
  authTimeout?: number;
  /** Silence (no ping, no frame) after which a balance.v2 socket counts as dead; default 40000 ms (server pings every 15 s). */
  heartbeatTimeout?: number;
  /** Milliseconds before the token's exp to call getToken; default a quarter of its lifetime, 1 s to 60 s. false: never ahead. */
  refreshAhead?: number | false | null;
  /** acquireBalanceService only: one socket for all tabs of the browser (Web Locks + BroadcastChannel); default true. */
  shareAcrossTabs?: boolean;
  /** Shared across tabs: the leader tab tells the others it lives this often; three beats missed and a follower stops
   *  showing 'connected' and, if visible, takes the socket over. Default 2000 ms. */
  tabHeartbeat?: number;
  /** The guide's limit: after this many failed socket attempts in a row, no more socket attempts, REST polling only.
   *  Default Infinity (never give up on the socket; REST polling runs meanwhile after fallbackAfter failures). */
  maxReconnectAttempts?: number;
}

export type BalanceListener = (data: BalanceMessage) => void;

export class BalanceWebSocketService {
  /** baseUrl as in the guide, e.g. 'wss://api.example.com' (default: this page's origin); the socket is baseUrl + '/ws/balance/player'. */
  constructor(baseUrl: string | null | undefined, token: string | null, options?: BalanceClientOptions);
  readonly baseUrl: string;
  readonly restBaseUrl: string;
  /** The options given, over the defaults. */
  readonly options: Readonly<BalanceClientOptions>;
  token: string | null;
  ws: WebSocket | null;
  readonly listeners: Set<BalanceListener>;
  readonly status: BalanceStatus;
  /** Set when the client stopped by itself ('unauthorized', or 'closed' after 1009); null otherwise. */
  readonly error: BalanceError | null;
  readonly isConnected: boolean;
  /** The token's `sub`. */
  readonly userId: string | null;
  /** When the current access token expires (ms since epoch). */
  readonly expiresAt: number | null;
  /** Last known balance per currency (from the server, or from the cache until the server speaks). */
  readonly balances: Map<string, BalanceMessage>;
  /** Whether this tab holds the socket; false in a tab that gets its balances from the tab that does. */
  readonly isLeader: boolean;
  /** The wallet shown when none is named: options.currency; else the one that changed last among those holding
   *  money; else the one that changed last; 'USD' while nothing is known. */
  readonly primaryCurrency: string;
  /** The guide's: socket attempts failed in a row. */
  reconnectAttempts: number;
  /** The guide's: options.maxReconnectAttempts (default Infinity). */
  maxReconnectAttempts: number;
  /** The guide's: the first backoff step, options.initialDelay. */
  reconnectDelay: number;

  connect(): void;
  disconnect(): void;
  /** Also called at once with the balances already known. */
  addListener(callback: BalanceListener): void;
  removeListener(callback: BalanceListener): void;
  notifyListeners(data: BalanceMessage): void;
  /** Re-authenticates the open socket; after 'unauthorized' it starts connecting again. A token of the same user
   *  that expires earlier than the current one is ignored (it cannot undo a refresh). */
  updateToken(newToken: string): void;
  /** Ends the service (in every tab, when shared), clears the cached balance, and signals onLoginRequired. */
  logout(): void;
  authenticate(): void;
  /** One wallet's balance; default primaryCurrency. */
  getBalance(currency?: string): BalanceMessage | null;
  /** The guide's: called after a socket closed; schedules the next attempt (REST polling after fallbackAfter failures,
   *  no more socket attempts after maxReconnectAttempts). An override replaces this policy. */
  handleReconnection(): void;
  /** The guide's: called when REST polling starts; polls GET /api/balance every pollInterval. An override that does not
   *  call super.fallbackToRestAPI() polls its own way (status then stays 'reconnecting'). */
  fallbackToRestAPI(): void;
  addStatusListener(callback: (status: BalanceStatus) => void): void;
  removeStatusListener(callback: (status: BalanceStatus) => void): void;
  addErrorListener(callback: (error: BalanceError) => void): void;
  removeErrorListener(callback: (error: BalanceError) => void): void;
  addLoginRequiredListener(callback: (error: BalanceError | null) => void): void;
  removeLoginRequiredListener(callback: (error: BalanceError | null) => void): void;
}

/** A service shared by everything on the page, and by every tab of the browser, that watches the same user on the
 *  same server; release() when done. */
export function acquireBalanceService(baseUrl: string | null | undefined, token: string, options?: BalanceClientOptions):
  { service: BalanceWebSocketService; release(): void };

export function decodeJwt(token: string): Record<string, unknown> | null;
/** Whether this runs in a browser page (window and document): elsewhere (SSR) nothing ever connects. */
export function isBrowser(): boolean;
/** A balance message as the server sends it: a non-negative amount with at most the currency's decimals. */
export function isValidBalance(data: unknown): data is BalanceMessage;
/** Decimals of a currency: the server's table (USD 2, JPY 0, BTC 8, ...), else ISO 4217 via Intl; null if unknown. */
export function currencyDecimals(currency: string): number | null;

export default BalanceWebSocketService;
