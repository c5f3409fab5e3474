// tsc: the documented usage compiles against the package's declarations, strictly.
import BalanceWebSocketService, { acquireBalanceService, BalanceError, STATUS, type BalanceMessage, type BalanceStatus } from '@balance/client';
import { useBalance as useReactBalance } from '@balance/client/react';
import { useBalance as useVueBalance } from '@balance/client/vue';
import { computed, ref } from 'vue';

declare function refresh(): Promise<{ access_token: string }>;
declare const token: string;

const service = new BalanceWebSocketService('wss://balance.example.com', token, {
  getToken: async reason => (reason === 'expired' || reason === 'refresh' ? (await refresh()).access_token : null),
  onStatus: (status: BalanceStatus) => status === STATUS.CONNECTED,
  onError: (error: BalanceError) => console.warn(error.code, error.closeCode, error.status),
  onLoginRequired: error => error?.code,
  debounce: 50,
});
service.addListener((b: BalanceMessage) => `${b.balance} ${b.currency} v${b.version}`);
service.connect();
service.updateToken(token);
service.disconnect();

const lease = acquireBalanceService(null, token, { shareAcrossTabs: true, currency: 'EUR' });
const leader: boolean = lease.service.isLeader;
lease.service.addLoginRequiredListener(() => lease.service.logout());
lease.release();

export function reactComponent(): string {
  const { balance, status, isConnected, error, loginRequired, logout } = useReactBalance(null, token, { getToken: refresh as never });
  if (loginRequired) logout();
  return `${balance?.balance ?? '…'} ${status} ${isConnected} ${error?.code ?? ''} ${leader}`;
}

export function vueSetup() {
  const tokenRef = ref<string | null>(token);
  const { balance, status, loginRequired, disconnect } = useVueBalance(null, tokenRef);
  return { text: `${balance.value?.balance} ${status.value} ${loginRequired.value}`, disconnect };
}

// Vue: a ref that may be undefined, and getters, as MaybeRefOrGetter (ref<string>() failed tsc --strict before).
export function vueRefsAndGetters() {
  const maybe = ref<string>();
  const base = computed(() => 'wss://balance.example.com');
  const a = useVueBalance(base, maybe, { currency: 'EUR' });
  const b = useVueBalance(() => null, () => maybe.value ?? null);
  return `${a.balances.value.EUR?.balance} ${b.isLoading.value} ${a.balance.value?.currency}`;
}

// React: every wallet and the loading flag.
export function reactWallets(): string {
  const { balances, isLoading, balance } = useReactBalance(null, token, { currency: null, debug: true });
  return `${Object.keys(balances).join()} ${isLoading} ${balance?.currency}`;
}

// The frontend guide's own code, as an app written against it extends the class: its members exist and keep their types.
class GuideStyleService extends BalanceWebSocketService {
  constructor(baseUrl: string, accessToken: string) {
    super(baseUrl, accessToken);
    this.reconnectAttempts = 0;
    this.maxReconnectAttempts = 5;
    this.reconnectDelay = 1000;
  }

  override handleReconnection(): void {
    if (this.reconnectAttempts < this.maxReconnectAttempts) super.handleReconnection();
    else this.fallbackToRestAPI();
  }

  override fallbackToRestAPI(): void {
    console.log('Falling back to REST API for balance updates');
    super.fallbackToRestAPI();
  }
}
const guideService = new GuideStyleService('ws://localhost:8080', token);
guideService.addListener(data => data.balance);
guideService.connect();
guideService.updateToken(token);
guideService.disconnect();
