using System.Text.Json.Nodes;
using Balance.Auth;
using Balance.Postings;
using Balance.Sockets;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc.ApiExplorer;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace Balance.Api;

// What a route can answer besides its success, declared beside the route (`.ProducesProblems("…", ProblemCodes.InsufficientFunds)`,
// each code's status, title and example from ProblemCodes) and turned into the OpenAPI document by BalanceOpenApi.
// What the pipeline answers the same way for every route (401 without a token, 403 for the wrong role, 400/413/415
// for a body that cannot be read, Retry-After on 429/503) is added by the transformer from the route's own
// authorization and body metadata, so it cannot drift from it.
public sealed record ProblemResponse(string Description, ProblemCode[] Codes)
{
    public int Status => Codes[0].Status;
}
public sealed record ResponseHeader(int Status, string Name, string Description, string? Example = null);
public sealed record RequestHeader(string Name, string Description, string Example);
public sealed record EmptyResponse(int Status, string Description);
public sealed record RequestExample(string Name, string Summary, object Value);

public static class BalanceOpenApi
{
    public const string BearerScheme = "bearer";

    // The problems a route can answer besides its success, all of one status (ProblemCodes).
    public static TBuilder ProducesProblems<TBuilder>(this TBuilder builder, string description, params ProblemCode[] codes)
        where TBuilder : IEndpointConventionBuilder
    {
        if (codes.Length == 0 || codes.Any(c => c.Status != codes[0].Status))
            throw new ArgumentException($"One status per declaration: {string.Join(", ", codes.Select(c => $"{c.Code} {c.Status}"))}.", nameof(codes));
        return builder.WithMetadata(new ProblemResponse(description, codes));
    }

    public static TBuilder ProducesEmpty<TBuilder>(this TBuilder builder, int status, string description) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new EmptyResponse(status, description));

    public static TBuilder WithResponseHeader<TBuilder>(this TBuilder builder, int status, string name, string description, string? example = null)
        where TBuilder : IEndpointConventionBuilder => builder.WithMetadata(new ResponseHeader(status, name, description, example));

    public static TBuilder WithRequestHeader<TBuilder>(this TBuilder builder, string name, string description, string example)
        where TBuilder : IEndpointConventionBuilder => builder.WithMetadata(new RequestHeader(name, description, example));

    public static TBuilder WithRequestExample<TBuilder>(this TBuilder builder, string name, string summary, object value)
        where TBuilder : IEndpointConventionBuilder => builder.WithMetadata(new RequestExample(name, summary, value));

    public static IServiceCollection AddBalanceOpenApi(this IServiceCollection services) => services.AddOpenApi(o =>
    {
        o.AddSchemaTransformer(Schemas.TransformAsync);
        o.AddDocumentTransformer<DocumentTransformer>();
    });

    // The document at /openapi/v1.json and, in Development, a reference page for people at /reference/: Redoc,
    // vendored in reference/ (no CDN), reading that document.
    public static WebApplication MapBalanceOpenApi(this WebApplication app)
    {
        app.MapOpenApi();
        string directory = Path.Combine(app.Environment.ContentRootPath, "reference");
        // Like wwwroot, the page lives beside the sources: a build run from its output folder has none, and serves no page.
        if (!app.Environment.IsDevelopment() || !Directory.Exists(directory)) return app;
        var files = new Microsoft.Extensions.FileProviders.PhysicalFileProvider(directory);
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = files, RequestPath = "/reference" });
        app.UseStaticFiles(new StaticFileOptions { FileProvider = files, RequestPath = "/reference" });
        return app;
    }

    private sealed class DocumentTransformer : IOpenApiDocumentTransformer
    {
        public Task TransformAsync(OpenApiDocument document, OpenApiDocumentTransformerContext context, CancellationToken cancellationToken)
        {
            document.Info = new OpenApiInfo
            {
                Title = "Balance",
                Version = "v1",
                Description = """
                    Real-time wallet balances. Log in with `POST /api/auth/login` and send the access token as
                    `Authorization: Bearer <token>`; each operation says which role it needs. Money is a decimal string
                    with exactly the currency's decimals. Every error is an RFC 9457 problem (`application/problem+json`)
                    with a stable machine `code`; each response below lists the codes it can carry.
                    Live balances come over the WebSocket `/ws/balance/player` (not described here; see the README).
                    """,
            };
            document.Components ??= new OpenApiComponents();
            document.Components.SecuritySchemes = new Dictionary<string, IOpenApiSecurityScheme>
            {
                [BearerScheme] = new OpenApiSecurityScheme
                {
                    Type = SecuritySchemeType.Http,
                    Scheme = "bearer",
                    BearerFormat = "JWT",
                    Description = "The access_token from POST /api/auth/login or /api/auth/refresh (HS256, 15 minutes by default).",
                },
            };
            document.Components.Schemas ??= new Dictionary<string, IOpenApiSchema>();
            document.Components.Schemas["Problem"] = Schemas.Problem();
            // ValidationProblem's own schema; every problem here is described by Problem instead.
            document.Components.Schemas.Remove("HttpValidationProblemDetails");
            foreach (var server in document.Servers ?? []) server.Url = server.Url?.TrimEnd('/');
            foreach (var tag in document.Tags ?? new HashSet<OpenApiTag>())
                tag.Description ??= tag.Name switch
                {
                    "Auth" => "Logins, token refresh, logout.",
                    "Users" => "Players and operators (operators only).",
                    "Ledger" => "Balances and history for players; postings for operators.",
                    "Operations" => "What the service is doing now, per node (operators only).",
                    _ => null,
                };

            foreach (var api in context.DescriptionGroups.SelectMany(g => g.Items))
            {
                string path = "/" + (api.RelativePath ?? "").TrimEnd('/');
                if (document.Paths?.TryGetValue(path, out var item) != true || item!.Operations is null) continue;
                var method = HttpMethod.Parse(api.HttpMethod!);
                if (!item.Operations.TryGetValue(method, out var operation)) continue;
                Describe(document, operation, api);
            }
            return Task.CompletedTask;
        }

        private static void Describe(OpenApiDocument document, OpenApiOperation operation, ApiDescription api)
        {
            var metadata = api.ActionDescriptor.EndpointMetadata;
            // Generated clients name their methods after operationId: the handler's name, as the code calls it.
            if (operation.OperationId is null && metadata.OfType<System.Reflection.MethodInfo>().FirstOrDefault() is { } handler)
                operation.OperationId = System.Text.Json.JsonNamingPolicy.CamelCase.ConvertName(handler.Name.EndsWith("Async", StringComparison.Ordinal) ? handler.Name[..^5] : handler.Name);
            var problems = metadata.OfType<ProblemResponse>().ToList();
            operation.Responses ??= new OpenApiResponses();

            // Who may call it, from the same authorization metadata the pipeline enforces.
            bool anonymous = metadata.OfType<IAllowAnonymous>().Any();
            var authorize = metadata.OfType<IAuthorizeData>().ToList();
            if (anonymous || authorize.Count == 0)
            {
                operation.Security = [];
                AppendDescription(operation, "Anyone may call this; no token.");
            }
            else
            {
                operation.Security = [new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(BearerScheme, document)] = [] }];
                var roles = authorize.Select(a => a.Policy ?? a.Roles).Where(r => !string.IsNullOrEmpty(r)).Distinct().ToList();
                operation.Extensions ??= new Dictionary<string, IOpenApiExtension>();
                var roleList = roles.Count > 0 ? roles! : [Roles.Player, Roles.Operator];
                operation.Extensions["x-roles"] = new JsonNodeExtension(new JsonArray(roleList.Select(r => (JsonNode)JsonValue.Create(r)!).ToArray()));
                AppendDescription(operation, roles.Count > 0
                    ? $"Requires a bearer token with role `{string.Join("` or `", roles)}`."
                    : "Requires a bearer token (any role).");
                problems.Add(new ProblemResponse("No valid bearer token (missing, expired, forged, or its login has ended).", [ProblemCodes.Unauthorized]));
                if (roles.Count > 0) problems.Add(new ProblemResponse("The token's role may not call this route.", [ProblemCodes.Forbidden]));
            }

            // A JSON body the route reads: the pipeline refuses what it cannot read before the handler runs.
            if (operation.RequestBody is { } body)
            {
                problems.Add(new ProblemResponse("The body is not JSON, a field has the wrong JSON type, or a property is sent twice or is not one of the body's (names are case-sensitive).", [ProblemCodes.MalformedRequest]));
                problems.Add(new ProblemResponse("The body is over 64 KiB.", [ProblemCodes.PayloadTooLarge]));
                problems.Add(new ProblemResponse("The body is not sent as application/json.", [ProblemCodes.UnsupportedMediaType]));
                if (body is OpenApiRequestBody concrete && concrete.Content is { } content)
                {
                    foreach (string type in content.Keys.Where(k => k != "application/json").ToList()) content.Remove(type);
                    var examples = metadata.OfType<RequestExample>().ToList();
                    if (examples.Count > 0 && content.TryGetValue("application/json", out var json) && json is OpenApiMediaType media)
                        media.Examples = examples.ToDictionary(e => e.Name, e => (IOpenApiExample)new OpenApiExample { Summary = e.Summary, Value = ToNode(e.Value) });
                }
            }

            foreach (var header in metadata.OfType<RequestHeader>())
            {
                operation.Parameters ??= [];
                if (operation.Parameters.Any(p => p.Name == header.Name)) continue;
                operation.Parameters.Add(new OpenApiParameter
                {
                    Name = header.Name, In = ParameterLocation.Header, Description = header.Description,
                    Schema = new OpenApiSchema { Type = JsonSchemaType.String }, Example = JsonValue.Create(header.Example),
                });
            }
            if (operation.Parameters?.FirstOrDefault(p => p.Name == "Idempotency-Key") is OpenApiParameter key)
            {
                key.Required = true;
                key.Description = "Names the intended transaction (1-255 characters). A key belongs to the operator who sends it: the same operator "
                    + "sending the same key with the same body gets the first response again (with Idempotent-Replayed: true) and changes nothing; "
                    + "with another body it is 409 idempotency_conflict. Another operator's same key is another transaction. Only a committed "
                    + "transaction binds its key: after a 4xx or 503 the same key may be sent again. No control characters (U+0000-U+001F, U+007F).";
                key.Schema = new OpenApiSchema { Type = JsonSchemaType.String, MinLength = 1, MaxLength = 255 };
                key.Example = JsonValue.Create("bet-round-8812-player-42");
            }

            // The framework guesses 400 from ValidationProblem with a schema of its own; every problem here uses one schema.
            foreach (var status in operation.Responses.Keys.Where(k => k.StartsWith('4') || k.StartsWith('5')).ToList())
                operation.Responses.Remove(status);
            foreach (var group in problems.GroupBy(p => p.Status).OrderBy(g => g.Key))
            {
                var codes = group.SelectMany(p => p.Codes).Distinct().ToArray();
                var response = new OpenApiResponse
                {
                    Description = string.Join(" Or: ", group.Select(p => p.Description).Distinct()),
                    Content = new Dictionary<string, OpenApiMediaType>
                    {
                        ["application/problem+json"] = new()
                        {
                            Schema = Schemas.ProblemWith(document, [.. codes.Select(c => c.Code)]),
                            Examples = codes.ToDictionary(c => c.Code, c => (IOpenApiExample)new OpenApiExample { Summary = c.Code, Value = Schemas.ProblemExample(c) }),
                        },
                    },
                };
                if (group.Key is 429 or 503)
                    AddHeader(response, "Retry-After", "Seconds to wait before trying again.", "1", JsonSchemaType.Integer);
                if (group.Key == 401 && codes.Contains(ProblemCodes.Unauthorized))
                    AddHeader(response, "WWW-Authenticate", "The bearer challenge.", "Bearer", JsonSchemaType.String);
                operation.Responses[group.Key.ToString(System.Globalization.CultureInfo.InvariantCulture)] = response;
            }
            foreach (var empty in metadata.OfType<EmptyResponse>())
                operation.Responses[empty.Status.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new OpenApiResponse { Description = empty.Description };

            foreach (var header in metadata.OfType<ResponseHeader>())
                if (operation.Responses.TryGetValue(header.Status.ToString(System.Globalization.CultureInfo.InvariantCulture), out var r) && r is OpenApiResponse response)
                    AddHeader(response, header.Name, header.Description, header.Example, JsonSchemaType.String);

            // Sorted by status, so a reader sees success first.
            var sorted = operation.Responses.OrderBy(r => r.Key, StringComparer.Ordinal).ToList();
            operation.Responses.Clear();
            foreach (var (status, response) in sorted) operation.Responses[status] = response;
        }

        private static void AddHeader(OpenApiResponse response, string name, string description, string? example, JsonSchemaType type)
        {
            response.Headers ??= new Dictionary<string, IOpenApiHeader>();
            response.Headers[name] = new OpenApiHeader
            {
                Description = description,
                Schema = new OpenApiSchema { Type = type },
                Example = example is null ? null : type == JsonSchemaType.Integer ? JsonValue.Create(int.Parse(example, System.Globalization.CultureInfo.InvariantCulture)) : JsonValue.Create(example),
            };
        }

        private static void AppendDescription(OpenApiOperation operation, string text) =>
            operation.Description = string.IsNullOrEmpty(operation.Description) ? text : $"{operation.Description}\n\n{text}";
    }

    internal static JsonNode ToNode(object value) =>
        System.Text.Json.JsonSerializer.SerializeToNode(value, new System.Text.Json.JsonSerializerOptions { PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower })!;

    private static class Schemas
    {
        private static readonly string[] Currencies = [.. Money.Decimals.Keys];
        private static readonly string[] TransactionTypes = [TxTypes.Deposit, TxTypes.Withdrawal, TxTypes.Bet, TxTypes.Win, TxTypes.Rollback];
        private const string MoneyDescription = "A decimal string with exactly the currency's number of decimals (\"255.50\" USD, \"1200\" JPY).";
        private const string MoneyPattern = "^[0-9]+(\\.[0-9]+)?$";

        public static OpenApiSchema Problem() => new()
        {
            Type = JsonSchemaType.Object,
            Description = "An RFC 9457 problem; `code` is the stable machine field to branch on.",
            Required = new HashSet<string> { "status", "code" }, // a 429 carries no type URI: RFC 9110 does not define it
            Properties = new Dictionary<string, IOpenApiSchema>
            {
                ["type"] = Text("A URI naming the HTTP status."),
                ["title"] = Text("The status's name."),
                ["status"] = new OpenApiSchema { Type = JsonSchemaType.Integer, Format = "int32" },
                ["detail"] = Text("What went wrong, for a person."),
                ["instance"] = Text(null),
                ["trace_id"] = Text("The request's id in the service's logs."),
                ["code"] = new OpenApiSchema { Type = JsonSchemaType.String, Enum = Enum(ProblemCodes.All.Select(c => c.Code)) },
                ["errors"] = new OpenApiSchema
                {
                    Type = JsonSchemaType.Object, Description = "validation_failed only: messages per field (or header).",
                    AdditionalProperties = new OpenApiSchema { Type = JsonSchemaType.Array, Items = new OpenApiSchema { Type = JsonSchemaType.String } },
                },
                ["balance"] = new OpenApiSchema { Type = JsonSchemaType.String, Pattern = MoneyPattern, Description = "insufficient_funds only: the wallet's balance now." },
                ["currency"] = new OpenApiSchema { Type = JsonSchemaType.String, Enum = Enum(Currencies), Description = "insufficient_funds only." },
            },
        };

        // The shared schema narrowed to this response's codes: a typed client sees exactly what it must handle.
        public static IOpenApiSchema ProblemWith(OpenApiDocument document, string[] codes) => new OpenApiSchema
        {
            AllOf =
            [
                new OpenApiSchemaReference("Problem", document),
                new OpenApiSchema
                {
                    Type = JsonSchemaType.Object,
                    Required = new HashSet<string> { "code" },
                    Properties = new Dictionary<string, IOpenApiSchema> { ["code"] = new OpenApiSchema { Type = JsonSchemaType.String, Enum = Enum(codes) } },
                },
            ],
        };

        public static JsonNode ProblemExample(ProblemCode row)
        {
            var example = new JsonObject();
            if (row.Type is { } type) example["type"] = type;
            example["title"] = row.Title;
            example["status"] = row.Status;
            if (row.Example is { } detail) example["detail"] = detail;
            example["code"] = row.Code;
            example["trace_id"] = "0HNQFT2QC0O4N:00000001";
            if (row == ProblemCodes.ValidationFailed) example["errors"] = new JsonObject { ["amount"] = new JsonArray("USD has 2 decimals; \"10.005\" has more.") };
            if (row == ProblemCodes.InsufficientFunds) { example["balance"] = "4.50"; example["currency"] = "USD"; }
            return example;
        }

        public static Task TransformAsync(OpenApiSchema schema, OpenApiSchemaTransformerContext context, CancellationToken ct)
        {
            var type = context.JsonTypeInfo.Type;
            // The JSON options refuse unknown properties in every body read (additionalProperties: false, which the
            // generator copies onto every schema). Answers keep room to grow: a client must ignore a field it does not
            // know, so only request bodies (…Request, …Body records) say false.
            if (!type.Name.EndsWith("Request", StringComparison.Ordinal) && !type.Name.EndsWith("Body", StringComparison.Ordinal))
                schema.AdditionalPropertiesAllowed = true;
            if (context.JsonPropertyInfo is not null) return Task.CompletedTask;
            if (type == typeof(TransactionBody)) TransactionBodySchema(schema);
            else if (type == typeof(TransactionResult))
            {
                Set(schema, "type", s => s.Enum = Enum(TransactionTypes));
                Set(schema, "currency", s => s.Enum = Enum(Currencies));
                Set(schema, "amount", s => { s.Description = MoneyDescription; s.Pattern = MoneyPattern; });
                Set(schema, "balance", s => { s.Description = "The wallet's balance after this transaction. " + MoneyDescription; s.Pattern = MoneyPattern; });
                Set(schema, "version", s => s.Description = "The wallet's version after this transaction: +1 per committed change, never reused.");
                Set(schema, "transaction_id", s => s.Description = "A time-ordered UUID (v7); the `before` cursor of GET /api/transactions.");
                Set(schema, "reverses", s => s.Description = "A rollback's bet.");
                schema.Examples = [ToNode(new
                {
                    transaction_id = "0193f1a2-7c4e-7b10-9a3d-5e2f8c1d4b6a", user_id = "0b7e4d1c-6f1a-4d43-9a40-2f5a2b1f4c11", type = "bet", amount = "10.00",
                    currency = "USD", balance = "90.00", version = 2, created_at = "2026-12-01T20:21:49.123Z", reference = "round-8812", reverses = (string?)null,
                })];
            }
            else if (type == typeof(BalanceMessage))
            {
                Set(schema, "type", s => s.Enum = Enum(["balance"]));
                Set(schema, "currency", s => s.Enum = Enum(Currencies));
                Set(schema, "balance", s => { s.Description = MoneyDescription; s.Pattern = MoneyPattern; });
                Set(schema, "version", s => s.Description = "The wallet's committed changes so far; also the ETag.");
                Set(schema, "transaction_type", s => s.Enum = [.. Enum(TransactionTypes), null!]);
                schema.Examples = [ToNode(new
                {
                    type = "balance", user_id = "0b7e4d1c-6f1a-4d43-9a40-2f5a2b1f4c11", balance = "90.00", currency = "USD", version = 2,
                    transaction_id = "0193f1a2-7c4e-7b10-9a3d-5e2f8c1d4b6a", transaction_type = "bet", updated_at = "2026-12-01T20:21:49.123Z",
                })];
            }
            else if (type == typeof(TokenPair))
            {
                Set(schema, "token_type", s => s.Enum = Enum(["Bearer"]));
                Set(schema, "role", s => s.Enum = Enum([Roles.Player, Roles.Operator]));
                Set(schema, "expires_in", s => s.Description = "Seconds until the access token expires.");
                Set(schema, "refresh_token", s => s.Description = "Single use: POST /api/auth/refresh spends it and returns a new pair.");
            }
            else if (type == typeof(UserView)) Set(schema, "role", s => s.Enum = Enum([Roles.Player, Roles.Operator]));
            else if (type == typeof(LoginRequest)) Strings(schema, ["username", "password"], required: ["username", "password"],
                example: new { username = "operator", password = "demo1234" });
            else if (type == typeof(RefreshRequest)) Strings(schema, ["refresh_token"], required: ["refresh_token"], example: null);
            else if (type == typeof(CreateUserRequest))
            {
                Strings(schema, ["username", "password", "role"], required: ["username", "password", "role"],
                    example: new { username = "carol", password = "correct-horse-9", role = "player" });
                Set(schema, "role", s => s.Enum = Enum([Roles.Player, Roles.Operator]));
                Set(schema, "username", s => { s.Pattern = "^[A-Za-z0-9_.-]{3,32}$"; });
                Set(schema, "password", s => { s.MinLength = 8; s.MaxLength = 256; });
            }
            return Task.CompletedTask;
        }

        // Text the ledger stores (LedgerApi.IsPlainText): refused 400 validation_failed otherwise.
        private const string PlainTextPattern = "^[^\\u0000-\\u001F\\u007F]*$";
        private const string PlainTextDescription = "No control characters (U+0000-U+001F, U+007F).";

        // A posting is one of two shapes; the C# record is their union, a client wants them apart.
        private static void TransactionBodySchema(OpenApiSchema schema)
        {
            schema.Properties = null;
            schema.Required = null;
            schema.Type = null;
            schema.AdditionalPropertiesAllowed = true; // each shape below says false for itself
            schema.OneOf =
            [
                new OpenApiSchema
                {
                    Title = "Posting", Type = JsonSchemaType.Object, Description = "A credit (deposit, win) or a debit (withdrawal, bet). A debit never takes the wallet below zero.",
                    AdditionalPropertiesAllowed = false,
                    Required = new HashSet<string> { "user_id", "type", "amount", "currency" },
                    Properties = new Dictionary<string, IOpenApiSchema>
                    {
                        ["user_id"] = new OpenApiSchema { Type = JsonSchemaType.String, Format = "uuid" },
                        ["type"] = new OpenApiSchema { Type = JsonSchemaType.String, Enum = Enum([TxTypes.Deposit, TxTypes.Withdrawal, TxTypes.Bet, TxTypes.Win]) },
                        ["amount"] = new OpenApiSchema { Type = JsonSchemaType.String, Pattern = MoneyPattern, Description = "Greater than zero. " + MoneyDescription },
                        ["currency"] = new OpenApiSchema { Type = JsonSchemaType.String, Enum = Enum(Currencies) },
                        ["reference"] = new OpenApiSchema { Type = JsonSchemaType.String | JsonSchemaType.Null, MaxLength = 255, Pattern = PlainTextPattern, Description = "The caller's own reference (round id, cashier slip). " + PlainTextDescription },
                    },
                },
                new OpenApiSchema
                {
                    Title = "Rollback", Type = JsonSchemaType.Object, Description = "Undoes one earlier bet exactly once; amount and currency come from the bet.",
                    AdditionalPropertiesAllowed = false,
                    Required = new HashSet<string> { "type", "reverses" },
                    Properties = new Dictionary<string, IOpenApiSchema>
                    {
                        ["type"] = new OpenApiSchema { Type = JsonSchemaType.String, Enum = Enum([TxTypes.Rollback]) },
                        ["reverses"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "The bet's transaction_id." },
                        ["user_id"] = new OpenApiSchema { Type = JsonSchemaType.String, Format = "uuid", Description = "If given, must be the bet's owner." },
                        ["reference"] = new OpenApiSchema { Type = JsonSchemaType.String | JsonSchemaType.Null, MaxLength = 255, Pattern = PlainTextPattern, Description = PlainTextDescription },
                    },
                },
            ];
        }

        // Request bodies: a property the body does not have is refused (400 malformed_request), so the schema says so.
        private static void Strings(OpenApiSchema schema, string[] names, string[] required, object? example)
        {
            schema.AdditionalPropertiesAllowed = false;
            foreach (string name in names) Set(schema, name, s => s.Type = JsonSchemaType.String);
            schema.Required = new HashSet<string>(required);
            if (example is not null) schema.Examples = [ToNode(example)];
        }

        private static void Set(OpenApiSchema schema, string property, Action<OpenApiSchema> change)
        {
            if (schema.Properties?.TryGetValue(property, out var p) == true && p is OpenApiSchema s) change(s);
        }

        private static OpenApiSchema Text(string? description) => new() { Type = JsonSchemaType.String, Description = description };
        private static List<JsonNode> Enum(IEnumerable<string> values) => [.. values.Select(v => (JsonNode)JsonValue.Create(v)!)];
    }
}
