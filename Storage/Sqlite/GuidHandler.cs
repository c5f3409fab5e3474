using System.Data;
using Dapper;

namespace Balance.Storage.Sqlite;

// SQLite stores GUIDs as TEXT; Dapper needs to be told how to read them back.
public sealed class GuidHandler : SqlMapper.TypeHandler<Guid>
{
    public override Guid Parse(object value) => Guid.Parse((string)value);
    public override void SetValue(IDbDataParameter parameter, Guid value) => parameter.Value = value.ToString();
}
