"""Reads a rigtap Parquet tree with independent readers (DuckDB, and pyarrow for
partition values) and prints JSON.

usage: parquet_read.py ROOT table         -> rows, column types, mean hashrate per miner
       parquet_read.py ROOT files         -> every visible file opened on its own: rows or error
       parquet_read.py ROOT values LABEL  -> the distinct values of a partition column,
                                             as DuckDB and as pyarrow read them
       parquet_read.py ROOT shares        -> rows, distinct (miner, counter) pairs, whether
                                             each miner's counters are 1..n, the codecs, and
                                             each miner's highest counter
       parquet_read.py ROOT fleet         -> per miner (labels model and api declared): its
                                             miner rows' figures, its boards, its status codes
       parquet_read.py ROOT polls         -> every poll of a `cgminer` source's miner: its
                                             miner row's figures and its board rows
       parquet_read.py ROOT gaps          -> per miner: its miner rows, and per code its gap
                                             rows: how many, the polls missed (null for
                                             a stream's), the time they span
       parquet_read.py ROOT records       -> every visible file (pyarrow): its rows and the
                                             disk buffer records its metadata names
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
elif mode == "values":
    import pyarrow.dataset

    label = sys.argv[3]
    table = f"read_parquet('{pattern}', hive_partitioning=true)"
    by_duckdb = sorted(v for (v,) in duckdb.sql(f"select distinct {label} from {table}").fetchall())
    dataset = pyarrow.dataset.dataset(root, format="parquet", partitioning="hive", exclude_invalid_files=True)
    by_pyarrow = sorted(set(dataset.to_table(columns=[label]).column(label).to_pylist()))
    print(json.dumps({"duckdb": by_duckdb, "pyarrow": by_pyarrow, "rows": dataset.count_rows()}))
elif mode == "shares":
    import pyarrow.parquet

    table = f"read_parquet('{pattern}', hive_partitioning=true)"
    rows = duckdb.sql(f"select count(*) from {table}").fetchone()[0]
    distinct = duckdb.sql(f"select count(*) from (select distinct miner_id, shares_accepted from {table})").fetchone()[0]
    gaps = duckdb.sql(
        f"select count(*) from (select miner_id, max(shares_accepted) as top, count(*) as n from {table} group by miner_id) where top <> n"
    ).fetchone()[0]
    codecs = sorted({
        pyarrow.parquet.ParquetFile(path).metadata.row_group(0).column(0).compression
        for path in glob.glob(pattern, recursive=True)
    })
    top = dict(duckdb.sql(f"select miner_id, max(shares_accepted) from {table} group by miner_id").fetchall())
    print(json.dumps({"rows": rows, "distinct": distinct, "contiguous": gaps == 0, "codecs": codecs,
                      "top": top}))
elif mode == "fleet":
    table = f"read_parquet('{pattern}', hive_partitioning=true)"
    query = f"""
        select miner_id, any_value(model), any_value(api),
               count(*) filter (where kind = 'miner'),
               min(hashrate_ths) filter (where kind = 'miner'),
               max(hashrate_nominal_ths) filter (where kind = 'miner'),
               avg(power_w) filter (where kind = 'miner'),
               max(temp_chip_c) filter (where kind = 'miner'),
               max(fan_rpm) filter (where kind = 'miner'),
               count(distinct board) filter (where kind = 'board'),
               min(hashrate_ths) filter (where kind = 'board'),
               list(distinct code) filter (where kind = 'status')
        from {table} group by miner_id order by miner_id
    """
    names = ["model", "api", "polls", "min_ths", "nominal_ths", "power_w", "chip_c", "fan_rpm",
             "boards", "min_board_ths", "codes"]
    rows = {r[0]: dict(zip(names, r[1:])) for r in duckdb.sql(query).fetchall()}
    for row in rows.values():
        row["codes"] = sorted(row["codes"] or [])
    print(json.dumps(rows))
elif mode == "polls":
    table = f"read_parquet('{pattern}', hive_partitioning=true)"
    query = f"""
        select m.miner_id, any_value(m.model), any_value(m.uptime_s), any_value(m.hashrate_ths),
               any_value(m.power_w), any_value(m.temp_chip_c),
               list(struct_pack(board := b.board, ths := b.hashrate_ths, chip := b.temp_chip_c,
                                pcb := b.temp_board_c) order by b.board)
                   filter (where b.board is not null)
        from {table} m
        left join {table} b
               on b.kind = 'board' and b.miner_id = m.miner_id and b.timestamp = m.timestamp
        where m.kind = 'miner' and m.api = 'cgminer'
        group by m.miner_id, m.timestamp order by m.miner_id, m.timestamp
    """
    names = ["miner", "model", "uptime_s", "ths", "power_w", "chip_c", "boards"]
    print(json.dumps([dict(zip(names, r)) for r in duckdb.sql(query).fetchall()]))
elif mode == "gaps":
    table = f"read_parquet('{pattern}', hive_partitioning=true, union_by_name=true)"
    polls = dict(duckdb.sql(f"select miner_id, count(*) from {table} where kind = 'miner' group by miner_id").fetchall())
    gaps = {}
    for miner, code, missed, count, first, last in duckdb.sql(
        f"select miner_id, code, sum(missed), count(*), min(timestamp), max(gap_end) from {table} "
        "where kind = 'gap' group by miner_id, code order by miner_id, code"
    ).fetchall():
        gaps.setdefault(miner, []).append({"code": code, "missed": missed, "count": count,
                                           "seconds": (last - first).total_seconds()})
    miners = sorted(set(polls) | set(gaps))
    print(json.dumps({m: {"polls": polls.get(m, 0), "gaps": gaps.get(m, [])} for m in miners}))
elif mode == "records":
    import pyarrow.parquet

    result = {}
    for path in glob.glob(pattern, recursive=True):
        metadata = pyarrow.parquet.ParquetFile(path).metadata
        records = (metadata.metadata or {}).get(b"rigtap.buffer_records", b"").decode()
        result[path] = [metadata.num_rows, records]
    print(json.dumps(result))
else:
    sys.exit(f"unknown mode {mode}")
