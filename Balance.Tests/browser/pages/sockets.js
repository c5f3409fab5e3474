// Counts the page's open sockets, so a test can tell that unmounting really closed the shared one.
window.sockets = { created: 0, open: 0 };
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    window.sockets.created++;
    window.sockets.open++;
    this.addEventListener('close', () => window.sockets.open--);
  }
};
