// Server rendering with the client, as Next.js, Nuxt or a Pinia store on the server would do it, and a count of
// every socket that tried to open. Node 22+ has WebSocket built in; Node 20/21 get it with --experimental-websocket,
// so the client would find one. Usage: node --experimental-websocket ssr/render.mjs <http base> <access token>
// The test copies the package's modules into ssr/client/ first, so 'react' and 'vue' resolve from node_modules here.
import { createElement } from 'react';
import { renderToString as renderReact } from 'react-dom/server';
import { createSSRApp, defineComponent, h } from 'vue';
import { renderToString as renderVue } from 'vue/server-renderer';

const [httpBase, token] = process.argv.slice(2);
const socketBase = httpBase.replace(/^http/, 'ws');
if (typeof globalThis.WebSocket !== 'function') throw new Error('no WebSocket in this Node: run with --experimental-websocket');
const opened = [];
const NativeWebSocket = globalThis.WebSocket;
globalThis.WebSocket = class extends NativeWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    opened.push(String(url));
  }
};

const { acquireBalanceService, BalanceWebSocketService } = await import('./client/balance-client.js');
const { useBalance: useReactBalance } = await import('./client/balance-react.js');
const { useBalance: useVueBalance } = await import('./client/balance-vue.js');

const html = {};
// React: a component with the hook, rendered to a string (Next.js's server render of a client component).
function ReactWallet() {
  const { balance, status, isLoading } = useReactBalance(socketBase, token);
  return createElement('p', null, `${status} ${isLoading} ${balance?.balance ?? '-'}`);
}
html.react = renderReact(createElement(ReactWallet));

// Vue: the composable inside a component (createSSRApp + renderToString)...
const VueWallet = defineComponent({
  setup() {
    const { balance, status } = useVueBalance(socketBase, token);
    return () => h('p', `${status.value} ${balance.value?.balance ?? '-'}`);
  },
});
html.vue = await renderVue(createSSRApp(VueWallet));
// ...and outside any component, as a Pinia setup store or a Nuxt plugin runs it during the server's request.
const store = useVueBalance(socketBase, token);
html.vueStore = `${store.status.value} ${store.balance.value?.balance ?? '-'}`;

// The client itself, as server code that imports it would use it.
const lease = acquireBalanceService(socketBase, token);
lease.service.connect();
new BalanceWebSocketService(socketBase, token).connect();

// Whatever would have connected has had time to open and authenticate.
await new Promise(resolve => setTimeout(resolve, 1500));
const metrics = await (await fetch(`${httpBase}/metrics`)).text();
const gauge = name => Number(metrics.split('\n').find(line => line.startsWith(name) && /^[ {]/.test(line.slice(name.length)))?.split(' ').at(-1));
console.log(JSON.stringify({
  opened,
  serverOpen: gauge('balance_sockets_open'),
  serverAuthenticated: gauge('balance_sockets_authenticated'),
  html,
}));
process.exit(0); // an opened socket would otherwise keep Node running
