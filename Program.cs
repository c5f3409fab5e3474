using Balance;
using Balance.Api;
using Balance.Auth;
using Balance.Operability;
using Balance.Sockets;
using Balance.Storage;

var builder = WebApplication.CreateBuilder(args);
builder.AddStorage();
builder.AddLedger();
builder.AddBalanceAuth();
builder.AddSockets();
builder.AddBalanceHttp();
builder.AddOperability();

var app = builder.Build();
await app.InitializeStorageAsync();
await app.LoadSessionsAsync();

app.UseForwardedClient();
app.MapBalanceSocket();
app.UseBalanceHttp();
app.UseAddressAllowances(); // logins and refreshes spend their address's allowance before their body is read
app.MapAuthApi();
app.MapLedgerApi();
app.MapOperability();
app.MapBalanceOpenApi(); // and, in Development, the reference page at /reference/

app.Run();
