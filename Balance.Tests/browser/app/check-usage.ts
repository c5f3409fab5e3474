// tsc: the documented usage compiles against the package's declarations, strictly.
import BalanceWebSocketService, { acquireBalanceService, BalanceError, STATUS, type BalanceMessage, type BalanceStatus } from '@balance/client';
import { useBalance as useReactBalance } from '@balance/client/react';
import { useBalance as useVueBalance } from '@balance/client/vue';
import { ref } from 'vue';

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
