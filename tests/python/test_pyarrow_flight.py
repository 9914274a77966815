"""Tarn through plain `pyarrow.flight`, as the README shows it."""

import pyarrow as pa
import pyarrow.flight as flight
import pytest


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
    """A Flight SQL CommandStatementQuery wrapped in protobuf Any."""
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return _field(1, type_url) + _field(2, _field(1, sql.encode()))


def test_statement_over_plain_flight(tarn):
    client = flight.FlightClient(tarn["uri"])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(
        sql_command("SELECT Computer, COUNT(*) AS n FROM SecurityEvent GROUP BY Computer ORDER BY n DESC")))
    assert info.schema.names == ["Computer", "n"]
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.num_rows > 10
    assert sum(table.column("n").to_pylist()) == client.do_get(
        client.get_flight_info(flight.FlightDescriptor.for_command(
            sql_command("SELECT COUNT(*) FROM SecurityEvent"))).endpoints[0].ticket
    ).read_all().column(0)[0].as_py()


def test_errors_reach_plain_flight_clients(tarn):
    client = flight.FlightClient(tarn["uri"])
    # pyarrow maps gRPC NOT_FOUND to ArrowKeyError.
    with pytest.raises(pa.ArrowKeyError) as e:
        client.get_flight_info(flight.FlightDescriptor.for_command(sql_command("SELECT * FROM Missing")))
    assert "TARN-2100" in str(e.value) and "Missing" in str(e.value)
