"""The bare baseline of the load benchmark: what a consented read must at least do, with
nothing else — FastAPI + a psycopg async pool; per request one primary-key SELECT and two
INSERTs in one transaction (`/read/{id}`), or N INSERTs (`/write?n=N`).

    DATABASE=postgresql://postgres@127.0.0.1:5432/db python bench/baseline_app.py --workers 2

It runs under uvicorn with the same HTTP protocol as `dossier serve` (TCP_NODELAY set on
each connection, httptools) and the same process settings (`settle_heap`: what was loaded
frozen out of the garbage collector's sight, young collections after 10,000 objects), so
the comparison is between the two applications only. Without them its full collections
took 37–48 ms each, a dozen per 10 s of reads (docs/benchmarks.md, "Session 15").
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool
from starlette.responses import Response

SCHEMA = """
CREATE TABLE IF NOT EXISTS bare_rows (id text PRIMARY KEY, content jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS bare_log (id text PRIMARY KEY, row_id text, at timestamptz
  DEFAULT now(), record jsonb);
CREATE TABLE IF NOT EXISTS bare_outbox (id text PRIMARY KEY, log_id text, at timestamptz
  DEFAULT now());
"""


def app() -> FastAPI:
    dsn = os.environ["DATABASE"]
    pool = AsyncConnectionPool(dsn, min_size=8, max_size=8, open=False)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        async with pool.connection() as conn:
            await conn.execute(SCHEMA)
            await conn.execute("INSERT INTO bare_rows VALUES ('task-1', %s) ON CONFLICT DO "
                               "NOTHING", (orjson.dumps({"resourceType": "Task",
                                                         "status": "in-progress"}).decode(),))
        yield
        await pool.close()

    api = FastAPI(lifespan=lifespan)

    @api.get("/read/{row_id}")
    async def read(row_id: str) -> Response:
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT content FROM bare_rows WHERE id = %s", (row_id,))
            row = await cur.fetchone()
            log_id = uuid.uuid4().hex
            await conn.execute("INSERT INTO bare_log (id, row_id, record) VALUES (%s, %s, "
                               "%s)", (log_id, row_id, '{"action": "read"}'))
            await conn.execute("INSERT INTO bare_outbox (id, log_id) VALUES (%s, %s)",
                               (uuid.uuid4().hex, log_id))
        return Response(orjson.dumps(row[0] if row else None),
                        media_type="application/fhir+json")

    @api.post("/write")
    async def write(n: int = 4) -> Response:
        async with pool.connection() as conn, conn.transaction():
            for _ in range(n):
                await conn.execute("INSERT INTO bare_log (id, row_id, record) VALUES "
                                   "(%s, %s, %s)", (uuid.uuid4().hex, "w", '{"a": 1}'))
        return Response(b"{}", status_code=201, media_type="application/fhir+json")

    from dossier.serving import settle_heap

    settle_heap()  # as `dossier serve` does once its app is built
    return api


def main() -> None:
    import uvicorn

    from dossier.serving import NoDelayProtocol, run_workers

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8799)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    options: dict[str, Any] = {"factory": True, "port": args.port, "http": NoDelayProtocol,
                               "log_level": "warning", "access_log": False}
    if args.workers == 1:
        uvicorn.run("baseline_app:app", **options)
    else:  # as `dossier serve`: each worker on its own socket (a fair comparison)
        run_workers(uvicorn.Config("baseline_app:app", workers=args.workers, **options))


if __name__ == "__main__":
    main()
