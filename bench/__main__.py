"""``python -m bench [BENCH ...] [--tiny]``: run benchmarks, print a table, write JSON + PNG.

Benchmarks: ingest, backends, scale, writes, http-writes, startup, http, topology,
pgvector
(default: all).
``--tiny`` runs each on tiny inputs (the smoke test's mode: it checks that figures come
out, not how fast).
Absolute times drift on shared machines, so each bar compares two things measured in
the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from bench import backends, http_writes, ingest, pgvector, scale, service, topology, writes
from bench.common import NEWS_CSV, RESULTS_DIR, Report
from rag.embedding import Embedder
from rag.pipeline import Pipeline
from rag.settings import EmbedBackend, Settings

BENCHES = (
    "ingest",
    "backends",
    "scale",
    "writes",
    "http-writes",
    "startup",
    "http",
    "topology",
    "pgvector",
)


@dataclass(frozen=True)
class Options:
    """What the command line chose."""

    benches: tuple[str, ...]
    tiny: bool
    articles: int | None
    scale_chunks: int
    write_sizes: tuple[int, ...]
    rounds: int
    output: Path
    work: Path


def settings_for(work: Path, backend: EmbedBackend = "torch") -> Settings:
    """Settings over a scratch index."""
    return Settings(
        index_dir=work / "index",
        seed_sample_articles=False,
        embed_backend=backend,
    )


def news_index(options: Options, console: Console) -> Path:
    """The index of the news articles that ``ingest`` left, built now if it did not run."""
    settings = settings_for(options.work)
    if not settings.index_dir.exists():
        console.print("news index: ingesting the news articles")
        data = ingest.news_subset(options.articles, options.work, NEWS_CSV)
        Pipeline(settings, Embedder.from_settings(settings)).ingest([data])
    return settings.index_dir


def run_ingest(report: Report, options: Options, console: Console) -> None:
    settings = settings_for(options.work)
    embedder = ingest.TimedEmbedder.from_settings(settings)
    embedder.warm_up()
    data = ingest.news_subset(options.articles, options.work, NEWS_CSV)
    console.print(f"ingest: {data.name}, torch backend")
    ingest.run_resume(report, settings, embedder, data, options.work)
    best = ingest.run(report, settings, embedder, data, rounds=options.rounds)
    ingest.run_postgres(report, settings, embedder, data, best)


def run_backends(report: Report, options: Options, console: Console) -> None:
    backends.run(report, options.work, tiny=options.tiny, log=console)


def run_scale(report: Report, options: Options, console: Console) -> None:
    scale.run(report, options.work, chunks=options.scale_chunks, log=console)


def run_writes(report: Report, options: Options, console: Console) -> None:
    plan = dataclasses.replace(
        writes.TINY if options.tiny else writes.FULL, sizes=options.write_sizes
    )
    writes.run(report, options.work, plan=plan, output=options.output, log=console)


def run_http_writes(report: Report, options: Options, console: Console) -> None:
    sizes = (3, 6) if options.tiny else (300, 2_400)
    embedder = Embedder.from_settings(settings_for(options.work))
    http_writes.run(
        report, options.work, embedder, sizes=sizes, repeats=2 if options.tiny else 5, log=console
    )


def run_startup(report: Report, options: Options, console: Console) -> None:
    service.run_startup(report, options.work, tiny=options.tiny, log=console)


def run_http(report: Report, options: Options, console: Console) -> None:
    indexes = {
        "sample": service.sample_index(options.work),
        "news": news_index(options, console),
    }
    service.run_http(report, indexes, tiny=options.tiny, log=console)
    for name, index_dir in indexes.items():
        service.run_profile(report, index_dir, name)


def run_pgvector(report: Report, options: Options, console: Console) -> None:
    pgvector.run(report, options.work, chunks=options.scale_chunks, log=console)


def run_topology(report: Report, options: Options, console: Console) -> None:
    topology.run(report, options.work, tiny=options.tiny, log=console)


RUNNERS: dict[str, Callable[[Report, Options, Console], None]] = {
    "ingest": run_ingest,
    "backends": run_backends,
    "scale": run_scale,
    "writes": run_writes,
    "http-writes": run_http_writes,
    "startup": run_startup,
    "http": run_http,
    "topology": run_topology,
    "pgvector": run_pgvector,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("benches", nargs="*", help=f"some of {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--tiny", action="store_true", help="tiny inputs (smoke test)")
    parser.add_argument(
        "--articles", type=int, default=None, help="news articles to ingest (default 400; 0: all)"
    )
    parser.add_argument(
        "--scale-chunks", type=int, default=None, help="synthetic chunks (default 1,000,000)"
    )
    parser.add_argument(
        "--write-sizes",
        type=writes.parse_sizes,
        default=None,
        help="index sizes of the writes bench, e.g. 10k,100k,1M (the default; --tiny: 1k,3k)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="ingest rounds, best kept (default 2)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR, help="JSON and PNG go here")
    args = parser.parse_args(argv)
    unknown = set(args.benches) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {BENCHES}")
    return args


def main(argv: list[str] | None = None) -> Report:
    args = parse(argv)
    console = Console(stderr=True)
    report = Report()
    articles = args.articles if args.articles is not None else (4 if args.tiny else 400)
    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        options = Options(
            benches=tuple(args.benches) or BENCHES,
            tiny=args.tiny,
            articles=articles or None,
            scale_chunks=args.scale_chunks or (2_000 if args.tiny else 1_000_000),
            write_sizes=args.write_sizes or (writes.TINY.sizes if args.tiny else writes.SIZES),
            rounds=args.rounds or (1 if args.tiny else 2),
            output=args.output,
            work=Path(work),
        )
        for name in options.benches:
            console.rule(name)
            RUNNERS[name](report, options, console)
    report.write(options.output, Console(width=160))
    return report


if __name__ == "__main__":
    main()
