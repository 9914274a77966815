"""Tarn through plain `pyarrow.flight`, as the README shows it."""

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flight_sql_command import sql_command


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
