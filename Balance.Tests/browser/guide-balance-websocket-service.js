// The frontend guide's BalanceWebSocketService, copied verbatim from
// shared/spec/balance-websocket-frontend-guide.md (section 1) so the tests prove old client code still works.
class BalanceWebSocketService {
  constructor(baseUrl, token) {
    this.baseUrl = baseUrl;
    this.token = token;
    this.ws = null;
    this.reconnectAttempts = 0;
    this.maxReconnectAttempts = 5;
    this.reconnectDelay = 1000;
    this.listeners = new Set();
  }

  connect() {
    try {
      this.ws = new WebSocket(`${this.baseUrl}/ws/balance/player`);
      
      this.ws.onopen = () => {
        console.log('Balance WebSocket connected');
        this.reconnectAttempts = 0;
        this.authenticate();
      };
      
      this.ws.onmessage = (event) => {
        const data = JSON.parse(event.data);
        this.notifyListeners(data);
      };
      
      this.ws.onerror = (error) => {
        console.error('Balance WebSocket error:', error);
      };
      
      this.ws.onclose = () => {
        console.log('Balance WebSocket disconnected');
        this.handleReconnection();
      };
      
    } catch (error) {
      console.error('Failed to create WebSocket connection:', error);
    }
  }

  authenticate() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({
        type: "auth",
        access_token: this.token,
        data: {}
      }));
    }
  }

  addListener(callback) {
    this.listeners.add(callback);
  }

  removeListener(callback) {
    this.listeners.delete(callback);
  }

  notifyListeners(data) {
    this.listeners.forEach(callback => callback(data));
  }

  handleReconnection() {
    if (this.reconnectAttempts < this.maxReconnectAttempts) {
      this.reconnectAttempts++;
      console.log(`Attempting to reconnect... (${this.reconnectAttempts}/${this.maxReconnectAttempts})`);
      
      setTimeout(() => {
        this.connect();
      }, this.reconnectDelay * this.reconnectAttempts);
    } else {
      console.error('Max reconnection attempts reached');
      // Fallback to REST API polling
      this.fallbackToRestAPI();
    }
  }

  fallbackToRestAPI() {
    // Implement REST API polling as fallback
    console.log('Falling back to REST API for balance updates');
    // Your REST API polling implementation here
  }

  disconnect() {
    if (this.ws) {
      this.ws.close();
      this.ws = null;
    }
  }

  updateToken(newToken) {
    this.token = newToken;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.authenticate();
    }
  }
}
