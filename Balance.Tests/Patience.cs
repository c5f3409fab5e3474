namespace Balance.Tests;

// Waits in these tests are generous: the machine may be loaded; a missing message still fails, only later.
internal static class Patience
{
    public static readonly TimeSpan Long = TimeSpan.FromSeconds(30);
}
