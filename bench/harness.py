"""What every benchmark shares: result tables, ratios, and the timing method.

Method: the machine is shared, so every measurement is repeated and the median kept.
A comparison runs its variants in interleaved rounds (A B, B A, A B, …), so drift in the
machine's load hits both alike; each round is a fresh batch of sequential requests.
"""

from __future__ import annotations

import math
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    title: str = ""
    left: int = 2  # left-aligned (text) columns; the rest are numbers

    def add(self, *cells: object) -> None:
        self.rows.append([cell if isinstance(cell, str) else fmt(cell) for cell in cells])

    def markdown(self) -> str:
        aligns = ["---"] * self.left + ["---:"] * (len(self.columns) - self.left)
        lines = [f"**{self.title}**\n"] if self.title else []
        lines += ["| " + " | ".join(self.columns) + " |", "|" + "|".join(aligns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass(frozen=True)
class Ratio:
    """One headline: how much more time the subject takes than its baseline."""

    area: str  # "consent (issue 4)"
    what: str  # "Task search by patient, SQLite"
    subject: str
    baseline: str
    value: float  # subject time / baseline time (> 1: the subject costs more)


@dataclass
class Section:
    """One benchmark's report: how it was measured, its tables and its ratios."""

    title: str
    method: str
    tables: list[Table] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    seconds: float = 0.0

    def extend(self, other: Section) -> None:
        self.tables += other.tables
        self.ratios += other.ratios
        self.seconds += other.seconds

    def markdown(self) -> str:
        parts = [f"## {self.title}", self.method.strip()]
        parts += [t.markdown() for t in self.tables]
        parts.append(f"_This section took {self.seconds:.0f} s._")
        return "\n\n".join(parts)


def fmt(value: object) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio_cell(value: float) -> str:
    return f"**{value:.2f} ×**"


# ---------------------------------------------------------------------- timing
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median_rate(calls: int, run: Callable[[], object], repeat: int) -> float:
    """Calls per second: the median over `repeat` timed runs of `run` (which makes `calls`)."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return calls / statistics.median(times)


def median_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Microseconds per call: the median over `repeat` runs of `number` calls."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - began) / number)
    return statistics.median(times) * 1e6


@dataclass
class Sample:
    """One variant's rounds: per-request latencies and the round's wall time (seconds)."""

    latencies: list[list[float]] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    after: list[float] = field(default_factory=list)  # background work after each round

    @property
    def rate(self) -> float:
        """Requests per second: median over rounds."""
        return statistics.median(len(lat) / wall for lat, wall in
                                 zip(self.latencies, self.walls, strict=True))

    @property
    def rate_with_after(self) -> float:
        """Requests per second counting the background work each round caused."""
        return statistics.median(len(lat) / (wall + extra) for lat, wall, extra in
                                 zip(self.latencies, self.walls, self.after, strict=True))

    def p(self, q: float) -> float:
        """Latency percentile in milliseconds: median over rounds of each round's value."""
        return statistics.median(percentile(lat, q) for lat in self.latencies) * 1e3

    @property
    def mean_ms(self) -> float:
        """Time per request in ms (median over rounds of the round's mean)."""
        return 1e3 / self.rate


def paired_ratio(base: Sample, subject: Sample, *, with_after: bool = False) -> float:
    """Subject time per request / baseline time per request: the median over rounds of the
    ratio within each round, whose two batches ran back to back (robust to load drift)."""
    ratios = []
    for b_lat, b_wall, s_lat, s_wall, s_after in zip(
            base.latencies, base.walls, subject.latencies, subject.walls, subject.after,
            strict=True):
        spent = s_wall + (s_after if with_after else 0.0)
        ratios.append((spent / len(s_lat)) / (b_wall / len(b_lat)))
    return statistics.median(ratios)


def interleave(variants: Mapping[str, Callable[[int], None]], *, rounds: int, per_round: int,
               warmup: int = 1,
               after: Mapping[str, Callable[[], None]] | None = None) -> dict[str, Sample]:
    """Run each variant's request `per_round` times per round, rounds interleaved and the
    order flipped every round. `after[name]` (timed apart) runs after each of its rounds."""
    names = list(variants)
    samples = {name: Sample() for name in names}
    for number in range(warmup + rounds):
        order = names if number % 2 == 0 else names[::-1]
        for name in order:
            request = variants[name]
            latencies = []
            began = time.perf_counter()
            for i in range(per_round):
                start = time.perf_counter()
                request(i)
                latencies.append(time.perf_counter() - start)
            wall = time.perf_counter() - began
            extra = 0.0
            if after and name in after:
                start = time.perf_counter()
                after[name]()
                extra = time.perf_counter() - start
            if number >= warmup:
                sample = samples[name]
                sample.latencies.append(latencies)
                sample.walls.append(wall)
                sample.after.append(extra)
    return samples


# ---------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _postgres_version(url: str | None) -> str:
    if url is None:
        return "not measured"
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.connect() as conn:
            version = str(conn.execute(text("SHOW server_version")).scalar_one())
        engine.dispose()
        return version
    except Exception:  # noqa: BLE001 - an unreachable server is reported, not fatal
        return "not reachable"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine(postgres_url: str | None) -> Table:
    import os
    import sqlite3

    import cryptography
    import fastapi
    import sqlalchemy

    try:
        kernel = subprocess.run(["uname", "-r"], capture_output=True, text=True,
                                check=False).stdout.strip()
    except OSError:
        kernel = platform.release()
    table = Table(["machine", ""], left=2, title="Machine")
    table.add("date (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M"))
    table.add("CPU", _cpu_model())
    table.add("cores", str(os.cpu_count()))
    table.add("OS", f"{platform.system()} {kernel}")
    table.add("Python", f"{platform.python_implementation()} {platform.python_version()}")
    table.add("SQLite", sqlite3.sqlite_version)
    table.add("PostgreSQL", _postgres_version(postgres_url))
    table.add("SQLAlchemy / FastAPI / cryptography",
              f"{sqlalchemy.__version__} / {fastapi.__version__} / {cryptography.__version__}")
    table.add("load average at start (1, 5, 15 min)", load_average())
    return table


# ---------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class Size:
    """How much work a run does: `quick` is a smoke run, `full` the reported one."""

    name: str
    dossiers: int  # dossiers granting the GP (each with `tasks` Tasks)
    tasks: int
    readers: int  # Patients per sealer for the encryption reads
    rounds: int  # interleaved timed rounds per comparison (after one warm-up round)
    per_round: int  # sequential requests per round
    repeat: int  # repeats of each micro-benchmark
    consent_patients: int  # bench_consent: patients x 50 provisions
    verify_records: int  # bench_verify_db: audit records in SQLite
    core_records: int  # bench_audit_verify: in-memory records


QUICK = Size("quick", dossiers=20, tasks=3, readers=10, rounds=3, per_round=10, repeat=3,
             consent_patients=40, verify_records=50_000, core_records=20_000)
FULL = Size("full", dossiers=200, tasks=3, readers=100, rounds=7, per_round=30, repeat=7,
            consent_patients=200, verify_records=1_000_000, core_records=200_000)
SIZES = {"quick": QUICK, "full": FULL}
