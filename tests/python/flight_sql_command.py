"""Flight SQL commands encoded by hand, for plain `pyarrow.flight` clients
(which have no Flight SQL layer): a CommandStatementQuery packed in a
protobuf Any is all a client needs to run a statement."""


def _varint(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | 0x80 if n else b])
        if not n:
            return out


def _field(num, data):
    return bytes([num << 3 | 2]) + _varint(len(data)) + data


def sql_command(sql):
    """A Flight SQL CommandStatementQuery for `sql`, wrapped in protobuf Any."""
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return _field(1, type_url) + _field(2, _field(1, sql.encode()))
