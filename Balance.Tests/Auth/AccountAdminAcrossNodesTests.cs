using System.Net;
using System.Net.Http.Json;

namespace Balance.Tests;

// Account administration across nodes: two service instances on one PostgreSQL database. Logins a disable, an
// operator's "end every login" or a password change ends on one node end on the other too — through sessions.revoked_tx
// and each node's change feed, the path a logout already takes — and their sockets there close 4503.
public sealed class AccountAdminAcrossNodesTests
{
    private static BalanceApplication Node(TempDatabase database, string id) =>
        new(new() { ["Balance:NodeId"] = id }, database.Location, store: Store.Postgres);

    private static async Task<TestSocket> SocketOnAsync(BalanceApplication node, string accessToken)
    {
        var socket = await node.OpenAuthenticatedSocketAsync(accessToken);
        await socket.ReceiveMessageAsync(Patience.Long); // the snapshot
        return socket;
    }

    [Fact]
    public async Task DisablingEndingAllAndAPasswordChangeOnOneNodeCloseTheLoginsSocketsOnTheOther()
    {
        using var database = new TempDatabase(Store.Postgres);
        await using var a = Node(database, "a");
        await using var b = Node(database, "b");
        var op = await a.LoginAsync("operator");
        using var admin = a.Http(op.AccessToken);

        // Disabled on A: the login's socket on B closes, its token fails on B, and B refuses a new login.
        var alice = await b.LoginAsync("alice");
        await using (var socket = await SocketOnAsync(b, alice.AccessToken))
        {
            Assert.Equal(HttpStatusCode.OK, (await admin.PatchAsJsonAsync($"/api/users/{alice.UserId}", new { disabled = true })).StatusCode);
            Assert.Equal(4503, await socket.ReceiveCloseAsync(Patience.Long));
        }
        using (var onB = b.Http(alice.AccessToken)) Assert.Equal(HttpStatusCode.Unauthorized, (await onB.GetAsync("/api/balance")).StatusCode);
        using (var anonymous = b.Http())
            Assert.Equal(HttpStatusCode.Forbidden, (await anonymous.PostAsJsonAsync("/api/auth/login", new { username = "alice", password = "demo1234" })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await admin.PatchAsJsonAsync($"/api/users/{alice.UserId}", new { disabled = false })).StatusCode);

        // Every login ended on A: B's socket closes.
        var again = await b.LoginAsync("alice");
        await using (var socket = await SocketOnAsync(b, again.AccessToken))
        {
            Assert.Equal(HttpStatusCode.NoContent, (await admin.DeleteAsync($"/api/users/{again.UserId}/sessions")).StatusCode);
            Assert.Equal(4503, await socket.ReceiveCloseAsync(Patience.Long));
        }

        // A password change on A ends alice's other login, whose socket is on B.
        var changing = await a.LoginAsync("alice");
        var other = await b.LoginAsync("alice");
        await using (var socket = await SocketOnAsync(b, other.AccessToken))
        {
            using var own = a.Http(changing.AccessToken);
            Assert.Equal(HttpStatusCode.NoContent, (await own.PostAsJsonAsync("/api/auth/password", new { current_password = "demo1234", new_password = "another-password" })).StatusCode);
            Assert.Equal(4503, await socket.ReceiveCloseAsync(Patience.Long));
        }
        using (var onB = b.Http(changing.AccessToken)) Assert.Equal(HttpStatusCode.OK, (await onB.GetAsync("/api/balance")).StatusCode);
        await b.LoginAsync("alice", "another-password");
    }
}
