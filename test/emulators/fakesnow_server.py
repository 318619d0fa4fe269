"""Test-only launcher: fakesnow (PyPI) in server mode, speaking what the Node.js snowflake-sdk decodes.

fakesnow runs a Snowflake-dialect server on DuckDB, but it answers queries with Arrow rowsets
(`rowsetBase64`), written for the Python connector; the Node.js driver only reads the JSON `rowset`.
This launcher serves fakesnow's own routes, re-encoding every Arrow answer as the JSON the Node
driver expects from Snowflake:

- NUMBER / FLOAT as decimal text (floats in shortest round-trip form, `inf`/`NaN` as Snowflake spells
  them), TEXT as is, BOOLEAN as "1"/"0", DATE as days since the epoch, TIME as seconds.fraction,
  TIMESTAMP_NTZ/LTZ as seconds.fraction, TIMESTAMP_TZ as "seconds.fraction tz" (tz = 1440 + offset
  minutes, result version 1), BINARY as hex.
- the output-format session parameters Snowflake sends with each result (the driver formats dates and
  timestamps with them).
- a login answer whose array-bind threshold is high instead of 0: with 0 the driver uploads every array
  bind to a temporary stage with PUT, which fakesnow does not support.

Only the emulator is patched; Scoreline's product code uses snowflake-sdk unchanged.

Usage: python fakesnow_server.py --port PORT [--host 127.0.0.1] [--db-path DIR]
Prints "fakesnow listening on http://HOST:PORT" once the server accepts connections.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import gzip
import itertools
import json
import logging
import math
import os
import signal
import sys
import warnings
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import snowflake.connector.errors
import uvicorn
from sqlglot import exp
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import fakesnow.server as fs_server
from fakesnow.converter import from_binding
from fakesnow.dialect import parse_one
from fakesnow.instance import FakeSnow
from fakesnow.rowtype import describe_as_rowtype

# Snowflake's account defaults for what the driver reads from a result's parameters. TIMEZONE is UTC,
# as fakesnow stores every TIMESTAMP_TZ in UTC.
RESULT_PARAMETERS = [
    {"name": "TIMEZONE", "value": "Etc/UTC"},
    {"name": "DATE_OUTPUT_FORMAT", "value": "YYYY-MM-DD"},
    {"name": "TIME_OUTPUT_FORMAT", "value": "HH24:MI:SS"},
    {"name": "TIMESTAMP_OUTPUT_FORMAT", "value": "YYYY-MM-DD HH24:MI:SS.FF3 TZHTZM"},
    {"name": "TIMESTAMP_NTZ_OUTPUT_FORMAT", "value": "YYYY-MM-DD HH24:MI:SS.FF3"},
    {"name": "TIMESTAMP_LTZ_OUTPUT_FORMAT", "value": ""},
    {"name": "TIMESTAMP_TZ_OUTPUT_FORMAT", "value": ""},
    {"name": "BINARY_OUTPUT_FORMAT", "value": "HEX"},
    {"name": "CLIENT_TIMESTAMP_TYPE_MAPPING", "value": "TIMESTAMP_LTZ"},
    {"name": "TIMESTAMP_TYPE_MAPPING", "value": "TIMESTAMP_NTZ"},
]

# Binds above this many values would go through a PUT-staged upload; keep them inline.
ARRAY_BIND_THRESHOLD = 2**31 - 1

NANOS = 1_000_000_000


def seconds_fraction(total_nanos: int, scale: int = 9) -> str:
    """Exact decimal text of a nanosecond count in seconds, with `scale` fraction digits."""
    sign = "-" if total_nanos < 0 else ""
    whole, frac = divmod(abs(total_nanos), NANOS)
    digits = f"{frac:09d}"[:scale] if scale > 0 else ""
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def encode_value(value: Any, sf_type: str, scale: int) -> str | None:
    if value is None:
        return None
    if sf_type == "boolean":
        return "1" if value else "0"
    if sf_type == "real":
        f = float(value)
        if math.isnan(f):
            return "NaN"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return repr(f)
    if sf_type == "fixed":
        if isinstance(value, Decimal):
            return format(value, "f")
        return str(int(value))
    if sf_type == "date":
        return str((value - datetime.date(1970, 1, 1)).days)
    if sf_type == "time":
        return seconds_fraction(int(value), scale)  # to_sf made it int64 nanoseconds
    if sf_type in ("timestamp_ntz", "timestamp_ltz", "timestamp_tz"):
        # to_sf made it a struct {epoch (s), fraction (ns)[, timezone (1440 + offset minutes)]}
        text = seconds_fraction(value["epoch"] * NANOS + value["fraction"], scale)
        return f"{text} {value.get('timezone', 1440)}" if sf_type == "timestamp_tz" else text
    if sf_type == "binary":
        return bytes(value).hex().upper()
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def arrow_to_rowset(b64: str, rowtype: list[dict[str, Any]]) -> list[list[str | None]]:
    if not b64:
        return []
    table = pa.ipc.open_stream(base64.b64decode(b64)).read_all()
    columns = []
    for i, col in enumerate(table.columns):
        info = rowtype[i]
        scale = info.get("scale") or 0
        columns.append([encode_value(v, info["type"], scale) for v in col.to_pylist()])
    return [list(row) for row in zip(*columns)] if columns else []


def with_json_rowset(data: dict[str, Any]) -> dict[str, Any]:
    if data.get("queryResultFormat") == "arrow":
        rowset = arrow_to_rowset(data.pop("rowsetBase64", ""), data.get("rowtype") or [])
        data["queryResultFormat"] = "json"
        data["rowset"] = rowset
        data["total"] = len(rowset)
    data.setdefault("rowset", [])
    # The driver pages through `returned` rows; without it a result never completes.
    data["returned"] = len(data["rowset"])
    data["version"] = 1
    names = {p["name"] for p in data.get("parameters", [])}
    data["parameters"] = [*data.get("parameters", []), *(p for p in RESULT_PARAMETERS if p["name"] not in names)]
    return data


def array_bind_rows(body: dict[str, Any]) -> list[tuple[Any, ...]] | None:
    """The rows of an array-bound INSERT (one list of values per placeholder), else None."""
    bindings = body.get("bindings")
    if not bindings or not all(k.isdigit() for k in bindings):
        return None
    if not any(isinstance(b["value"], list) for b in bindings.values()):
        return None
    try:
        if not isinstance(parse_one(body["sqlText"]), exp.Insert):
            return None
    except Exception:
        return None
    columns = [
        [from_binding({**b, "value": v}) if v is not None else None for v in b["value"]]
        for b in (bindings[str(pos)] for pos in range(1, len(bindings) + 1))
    ]
    return list(zip(*columns, strict=True))


def error_response(code: int, msg: str, sqlstate: str | None) -> Response:
    errno = f"{code:06d}"
    return JSONResponse({"data": {"errorCode": errno, "sqlState": sqlstate}, "code": errno, "message": msg, "success": False})


_batch_ids = itertools.count()


def insert_rest(cur: Any, rows: list[tuple[Any, ...]]) -> None:
    """The remaining rows as one INSERT … SELECT from an Arrow table (DuckDB casts to the columns)."""
    insert = cur._last_transformed.copy()  # noqa: SLF001
    duck = cur._duck_conn  # noqa: SLF001
    if not isinstance(insert.expression, exp.Values):
        duck.executemany(insert.sql(dialect="duckdb"), rows)
        return
    name = f"_scoreline_array_bind_{next(_batch_ids)}"
    table = pa.table({f"c{i}": pa.array([r[i] for r in rows]) for i in range(len(rows[0]))})
    insert.set("expression", exp.select("*").from_(name))
    duck.register(name, table)
    try:
        duck.execute(insert.sql(dialect="duckdb"))
    finally:
        duck.unregister(name)


async def array_insert(request: Request, body: dict[str, Any], rows: list[tuple[Any, ...]]) -> Response:
    """An array-bound INSERT as one prepared statement executed for all rows.

    Snowflake runs an array bind as one statement; fakesnow transforms and runs it row by row (~5 ms a
    row), which makes a few thousand rows take many seconds. The first row goes through fakesnow
    (transforms, implicit transaction), the rest through DuckDB's executemany of the same SQL.
    """
    conn = fs_server.to_conn(fs_server.to_token(request))
    cur = conn.cursor()
    try:
        await run_in_threadpool(cur.execute, body["sqlText"], binding_params=rows[0], server=True)
        if len(rows) > 1:
            await run_in_threadpool(insert_rest, cur, rows[1:])
        rowtype = describe_as_rowtype(cur._describe_last_sql())  # noqa: SLF001
    except (snowflake.connector.errors.ProgrammingError, snowflake.connector.errors.OperationalError) as e:
        return error_response(e.errno, e.msg, e.sqlstate)
    except duckdb.Error as e:
        return error_response(100038, str(e).split("\n")[0], "22018")
    data = {
        "parameters": [],
        "rowtype": rowtype,
        "rowset": [[str(len(rows))]],
        "total": 1,
        "queryId": cur.sfqid,
        "statementTypeId": fs_server.statement_type_id(parse_one(body["sqlText"])),
        "finalDatabaseName": conn.database,
        "finalSchemaName": conn.schema,
        "queryResultFormat": "json",
    }
    return JSONResponse({"data": with_json_rowset(data), "success": True})


async def query_request(request: Request) -> Response:
    raw = await request.body()  # Starlette caches it, so fakesnow reads the same bytes below
    body = json.loads(gzip.decompress(raw) if request.headers.get("Content-Encoding") == "gzip" else raw)
    rows = array_bind_rows(body)
    if rows:
        return await array_insert(request, body, rows)
    response = await fs_server.query_request(request)
    body = json.loads(bytes(response.body))
    if body.get("success") and isinstance(body.get("data"), dict):
        body["data"] = with_json_rowset(body["data"])
    return JSONResponse(body, status_code=response.status_code)


async def login_request(request: Request) -> Response:
    response = await fs_server.login_request(request)
    body = json.loads(bytes(response.body))
    params = [p for p in body["data"]["parameters"] if p["name"] != "CLIENT_STAGE_ARRAY_BINDING_THRESHOLD"]
    params.append({"name": "CLIENT_STAGE_ARRAY_BINDING_THRESHOLD", "value": ARRAY_BIND_THRESHOLD})
    body["data"]["parameters"] = params + RESULT_PARAMETERS
    return JSONResponse(body, status_code=response.status_code)


async def health(_: Request) -> Response:
    return JSONResponse({"ok": True})


def build_app() -> Starlette:
    replaced = {"/queries/v1/query-request": query_request, "/session/v1/login-request": login_request}
    routes = [Route(r.path, replaced.get(r.path, r.endpoint), methods=list(r.methods or [])) for r in fs_server.routes]
    routes.append(Route("/scoreline/health", health, methods=["GET"]))
    return Starlette(routes=routes)


def main() -> int:
    # fakesnow logs every login at INFO and DuckDB warns about an extra Arrow copy on every result.
    logging.getLogger("fakesnow.server").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db-path", help="directory for DuckDB files (default: in memory)")
    args = parser.parse_args()
    if args.db_path:
        os.makedirs(args.db_path, exist_ok=True)
        fs_server.shared_fs = FakeSnow(db_path=args.db_path)

    config = uvicorn.Config(build_app(), host=args.host, port=args.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    # uvicorn handles SIGINT/SIGTERM itself; this only makes sure the readiness line is flushed.
    original_startup = server.startup

    async def startup(*a: Any, **kw: Any) -> None:
        await original_startup(*a, **kw)
        print(f"fakesnow listening on http://{args.host}:{args.port}", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
