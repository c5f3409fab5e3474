using System.Data;
using Dapper;
using Microsoft.Data.Sqlite;

namespace Balance.Storage;

// SQLite stores GUIDs as TEXT; PostgreSQL has uuid. Dapper's type handlers are global to the process (which may hold
// hosts of both engines, as the tests do), so one handler serves both: text for SQLite, the Guid itself otherwise.
public sealed class GuidHandler : SqlMapper.TypeHandler<Guid>
{
    public static void Register()
    {
        SqlMapper.RemoveTypeMap(typeof(Guid));
        SqlMapper.AddTypeHandler(new GuidHandler());
    }

    public override Guid Parse(object value) => value is Guid guid ? guid : Guid.Parse((string)value);

    public override void SetValue(IDbDataParameter parameter, Guid value)
    {
        if (parameter is SqliteParameter) parameter.Value = value.ToString();
        else
        {
            parameter.DbType = DbType.Guid;
            parameter.Value = value;
        }
    }
}
