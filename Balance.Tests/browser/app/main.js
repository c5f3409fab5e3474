// A React app that installed @balance/client from npm: bare imports through the package's exports, bundled by Vite.
import { createElement as h } from 'react';
import { createRoot } from 'react-dom/client';
import { STATUS, isValidBalance } from '@balance/client';
import { useBalance } from '@balance/client/react';

function Wallet({ token }) {
  const { balance, status, loginRequired } = useBalance(null, token);
  if (loginRequired) return h('p', { id: 'login' }, 'Please log in again.');
  return h('p', null,
    h('span', { id: 'balance' }, balance && isValidBalance(balance) ? balance.balance : '…'), ' ',
    h('span', { id: 'status' }, status), ' ',
    h('span', { id: 'connected' }, status === STATUS.CONNECTED ? 'live' : 'not live'));
}

window.startApp = token => createRoot(document.getElementById('root')).render(h(Wallet, { token }));
window.appReady = true;
