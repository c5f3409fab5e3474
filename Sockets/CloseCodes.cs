namespace Balance.Sockets;

public static class CloseCodes
{
    public const int GoingAway = 1001, PolicyViolation = 1008, TooBig = 1009, InternalError = 1011;
    public const int TokenExpired = 4001, AuthTimeout = 4002, SlowConsumer = 4003, TooManyConnections = 4004;
    public const int BadRequest = 4500, InvalidToken = 4501, Forbidden = 4503;

    public static string Reason(int code) => code switch
    {
        GoingAway => "server_going_away",
        PolicyViolation => "rate_limited",
        TooBig => "frame_too_large",
        InternalError => "unavailable",
        TokenExpired => "token_expired",
        AuthTimeout => "auth_timeout",
        SlowConsumer => "slow_consumer",
        TooManyConnections => "too_many_connections",
        BadRequest => "bad_request",
        InvalidToken => "invalid_token",
        Forbidden => "forbidden",
        _ => "closed",
    };
}
