"""Reads a rigtap Parquet tree with DuckDB, an independent reader, and prints JSON.

usage: parquet_read.py ROOT table    -> rows, column types, mean hashrate per miner
       parquet_read.py ROOT files    -> every visible file opened on its own: rows or error
"""
import glob
import json
import os
import sys

import duckdb

root, mode = sys.argv[1], sys.argv[2]
pattern = os.path.join(root, "**", "*.parquet")

if mode == "table":
    table = f"read_parquet('{pattern}', hive_partitioning=true)"
    rows = duckdb.sql(f"select count(*) from {table}").fetchone()[0]
    types = {name: kind for name, kind, *_ in duckdb.sql(f"describe select * from {table}").fetchall()}
    means = dict(
        duckdb.sql(
            f"select miner_id, avg(hashrate_ths) from {table} where kind = 'miner' group by miner_id"
        ).fetchall()
    )
    print(json.dumps({"rows": rows, "types": types, "mean_hashrate": means}))
elif mode == "files":
    result = {}
    for path in glob.glob(pattern, recursive=True):
        try:
            result[path] = duckdb.sql(f"select count(*) from read_parquet('{path}')").fetchone()[0]
        except duckdb.Error as error:
            result[path] = f"error: {error}"
    print(json.dumps(result))
else:
    sys.exit(f"unknown mode {mode}")
