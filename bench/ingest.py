"""Dataset ingest on PostgreSQL vs `psql \\copy` (untyped) and pandas.read_csv + DataFrame.to_sql, same file, same
run: rows/s and peak RSS of each, and the ratios; Conveyor with the schema declared, inferred, and inferred from the
same rows gzip-compressed. Then Conveyor's peak RSS at 1M and 5M rows (it must stay flat).

    .venv/bin/python bench/ingest.py [--rows 1000000] [--large-rows 5000000] [--pandas-python .venv-bench/bin/python]

Each contender runs in a process of its own; its peak RSS is that process's (VmHWM, sampled). Conveyor runs in its
own venv, as deployed (no pandas, so pyarrow loads no NumPy); pandas in the venv `make bench` makes for it.
Conveyor's run is the `dataset_ingest` job's body: streaming parse, per-value validation with reject capture, binary
COPY into a staging table, swap. The file carries a few bad rows on purpose, so rejects are captured, not assumed away.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Nothing heavy at the top: the contenders run this file too, and their peak RSS is what is measured.

SCHEMA = {"id": "integer", "carrier": "string", "origin": "string", "dep_delay": "float", "flight_date": "date",
          "dep_time": "timestamp", "distance": "integer", "cancelled": "boolean"}  # fmt: skip
BAD_EVERY = 100_000  # one row in this many has a value that does not parse


def generate(path: Path, rows: int) -> None:
    """An 8-column CSV written by Arrow in chunks (a few seconds for millions of rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    carriers = pa.array(["AA", "UA", "DL", "B6", "WN", "AS", "NK", "F9"])
    origins = pa.array(["JFK", "LGA", "EWR", "BOS", "SFO", "LAX", "ORD", "ATL", "DEN", "SEA"])
    with open(path, "wb") as out:
        out.write(b"id,carrier,origin,dep_delay,flight_date,dep_time,distance,cancelled\n")
        for start in range(0, rows, 500_000):
            n = min(500_000, rows - start)
            ids = pa.array(range(start, start + n), pa.int64())
            day = pc.cast(pc.add(pc.cast(pc.cast(pa.scalar(20454), pa.int32()), pa.int32()),
                                 pc.cast(pc.divide(ids, 4000), pa.int32())), pa.date32())  # fmt: skip
            table = pa.table({
                "id": pc.cast(ids, pa.string()),
                "carrier": pc.take(carriers, pc.remainder(ids, 8)),
                "origin": pc.take(origins, pc.remainder(ids, 10)),
                "dep_delay": pc.subtract(pc.divide(pc.cast(pc.remainder(ids, 1200), pa.float64()), 10.0), 20.0),
                "flight_date": day,
                "dep_time": pc.add(pc.cast(day, pa.timestamp("s")), pc.cast(pc.multiply(pc.remainder(ids, 86400), 1),
                                                                            pa.duration("s"))),
                "distance": pc.remainder(pc.multiply(ids, 7), 4000),
                "cancelled": pc.equal(pc.remainder(ids, 37), 0),
            })  # fmt: skip
            bad = pc.equal(pc.remainder(ids, BAD_EVERY), 99)
            table = table.set_column(0, "id", pc.if_else(bad, pa.scalar("oops"), table.column("id")))
            pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False))


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM: the peak RSS of the process's current image (wait4's ru_maxrss would carry the pre-exec parent's)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM")


def run_measured(command: list[str], directory: Path) -> tuple[float, float]:
    """Run one process to its end: (wall seconds, its peak RSS in MB, sampled until it exits)."""
    started = time.perf_counter()
    peak = 0.0
    with open(directory / "contender.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None:
            try:
                peak = max(peak, peak_rss_mb(process.pid))
            except (OSError, RuntimeError):  # exiting
                pass
            time.sleep(0.01)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{command[:4]} failed:\n{(directory / 'contender.log').read_text()[-3000:]}")
    return seconds, peak


def contender(kind: str, path: Path, url: str, report: Path) -> None:
    """Runs in the measured child process (pandas or Conveyor); writes rows, rejects and its own timing."""
    if kind == "pandas":
        import pandas as pd

        from core.db import make_engine

        engine = make_engine(url)
        started = time.perf_counter()
        frame = pd.read_csv(path)
        frame.to_sql("pandas_copy", engine, index=False, chunksize=50_000)
        rows, rejected = len(frame), 0
    else:  # conveyor (the schema declared), inferred (sampled from the file, as an upload without one is), or gzip
        # (inferred, from the same rows gzip-compressed, decompressed as they stream)
        from core.datasets.formats import FileOptions
        from core.datasets.ingest import ingest_file
        from core.datasets.schema import parse_schema
        from core.datasets.store import new_dataset
        from core.db import make_engine, make_sessionmaker

        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        with sessions() as session:
            columns = parse_schema(SCHEMA) if kind == "conveyor" else None
            dataset = new_dataset(session, name="bench", columns=columns)
            session.commit()
        started = time.perf_counter()
        with sessions() as session:
            outcome = ingest_file(engine=engine, session=session, dataset_id=dataset.id, job_id=uuid.uuid4(),
                                  path=path, format="csv", options=FileOptions(max_rejects=1_000_000), mode="replace",
                                  source={}, progress=lambda *_: None)  # fmt: skip
            session.commit()
        rows, rejected = outcome.rows_loaded, outcome.rows_rejected
    seconds = time.perf_counter() - started
    engine.dispose()
    report.write_text(json.dumps({"rows": rows, "rejected": rejected, "seconds": round(seconds, 3),
                                  "peak_rss_mb": peak_rss_mb(), "numpy_loaded": "numpy" in sys.modules}))  # fmt: skip


def measure(kind: str, path: Path, directory: Path, python: str = sys.executable) -> dict[str, Any]:
    """One contender against a fresh database of its own."""
    from core.migrate import upgrade_database
    from tests.support.backends import postgres_database

    with postgres_database() as url:
        upgrade_database(url)
        if kind == "psql":
            dsn = url.replace("postgresql+psycopg://", "postgresql://")
            columns = ", ".join(f"{name} text" for name in SCHEMA)
            subprocess.run(["psql", dsn, "-q", "-c", f"CREATE TABLE raw_copy ({columns})"], check=True)
            copy = f"\\copy raw_copy FROM '{path}' WITH (FORMAT csv, HEADER)"
            seconds, peak = run_measured(["psql", dsn, "-q", "-c", copy], directory)
            count = subprocess.run(["psql", dsn, "-At", "-c", "SELECT count(*) FROM raw_copy"], check=True,
                                   capture_output=True, text=True)  # fmt: skip
            report = {"rows": int(count.stdout), "rejected": 0, "seconds": round(seconds, 3)}
        else:
            out = directory / "report.json"
            run_measured([python, __file__, "--contender", kind, "--file", str(path), "--url", url,
                          "--report", str(out)], directory)  # fmt: skip
            report = json.loads(out.read_text())
            peak = report.pop("peak_rss_mb")
    rows = report["rows"] + report["rejected"]
    return {**report, "rows_per_s": round(rows / report["seconds"]), "peak_rss_mb": peak}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rows/s, with every run's rows/s and the highest peak RSS of them all."""
    ordered = sorted(runs, key=lambda run: run["rows_per_s"])
    peak = max(run["peak_rss_mb"] for run in runs)
    return {**ordered[len(ordered) // 2], "peak_rss_mb": peak, "runs_rows_per_s": [r["rows_per_s"] for r in runs]}


def baseline_rss_mb() -> float:
    """What a process holding Conveyor's ingest code takes before reading any data (imports only)."""
    code = "import core.datasets.ingest, bench.ingest as b; print(b.peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of psql and of Conveyor (the median counts)")
    parser.add_argument("--large-rows", type=int, default=5_000_000, help="0 to skip the flat-memory run")
    parser.add_argument("--pandas-python", help="a Python with pandas (make bench makes .venv-bench); else no pandas")
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        contender(args.contender, Path(args.file), args.url, Path(args.report))
        return
    from bench.queue_throughput import RESULTS, machine

    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        path = directory / "flights.csv"
        generate(path, args.rows)
        size_mb = round(path.stat().st_size / 1e6, 1)
        print(f"{args.rows:,} rows, 8 columns, {size_mb} MB; PostgreSQL; every contender in its own process")
        # psql and Conveyor alternate, `--repeat` times each, and the median run counts: this machine's disk and
        # CPU vary by tens of percent from one second to the next. pandas (40 s a run) runs once.
        compressed = directory / "flights.csv.gz"
        with open(path, "rb") as raw, gzip.open(compressed, "wb", compresslevel=6) as packed:
            shutil.copyfileobj(raw, packed, 1 << 20)
        print(f"the same rows gzip-compressed: {round(compressed.stat().st_size / 1e6, 1)} MB")
        runs: dict[str, list[dict[str, Any]]] = {"psql": [], "conveyor": [], "inferred": [], "gzip": []}
        for _ in range(args.repeat):
            for kind, done in runs.items():
                done.append(measure(kind, compressed if kind == "gzip" else path, directory))
        results = {kind: median_run(done) for kind, done in runs.items()}
        if args.pandas_python:
            results["pandas"] = measure("pandas", path, directory, args.pandas_python)
        base = results["psql"]["rows_per_s"]
        print(f"{'':<34}{'rows/s':>10}{'seconds':>9}{'peak RSS MB':>13}{'vs copy':>10}")
        labels = {"psql": "psql \\copy (untyped, no checks)", "conveyor": "Conveyor ingest (typed, rejects)",
                  "inferred": "Conveyor, schema inferred", "gzip": "Conveyor, inferred, .csv.gz",
                  "pandas": "pandas.read_csv + to_sql"}  # fmt: skip
        for kind, result in results.items():
            result["ratio_vs_copy"] = round(result["rows_per_s"] / base, 3)
            each = " / ".join(f"{r:,}" for r in result.get("runs_rows_per_s", []))
            print(f"{labels[kind]:<34}{result['rows_per_s']:>10,}{result['seconds']:>9}{result['peak_rss_mb']:>13}"
                  f"{result['ratio_vs_copy']:>9}x" + (f"   runs: {each}" if each else ""))  # fmt: skip
        memory = {args.rows: results["conveyor"]["peak_rss_mb"]}
        inferred_memory = {args.rows: results["inferred"]["peak_rss_mb"]}
        if args.large_rows:
            large = directory / "large.csv"
            generate(large, args.large_rows)
            path.unlink()
            compressed.unlink()
            memory[args.large_rows] = measure("conveyor", large, directory)["peak_rss_mb"]
            inferred_memory[args.large_rows] = measure("inferred", large, directory)["peak_rss_mb"]
        baseline = baseline_rss_mb()
        print(
            "Conveyor peak RSS, schema inferred: "
            + ", ".join(f"{rows:,} rows {mb} MB" for rows, mb in inferred_memory.items())
        )
        print("Conveyor peak RSS: " + ", ".join(f"{rows:,} rows {mb} MB" for rows, mb in memory.items())
              + f" (the same process after its imports, before any data: {baseline} MB; NumPy loaded: "
              f"{results['conveyor']['numpy_loaded']})")  # fmt: skip
    record = {
        "machine": machine(),
        "rows": args.rows,
        "file_mb": size_mb,
        "results": results,
        "conveyor_peak_rss_mb_by_rows": memory,
        "inferred_peak_rss_mb_by_rows": inferred_memory,
        "conveyor_baseline_rss_mb": baseline,
        "command": " ".join(["python", "bench/ingest.py", *sys.argv[1:]]),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
