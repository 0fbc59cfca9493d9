"""The ``rag`` command line: ingest, ask, list, delete, serve, eval."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from index.store import IndexStoreError
from rag.pipeline import Pipeline, ProgressCallback
from rag.settings import Settings
from rag.text import text_problem
from rag.types import IngestReport

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
                "the previous version is intact"
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
    """Add articles (.txt .md .html .json .jsonl, or folders of them) to the index."""
    pipeline = _open(Settings(seed_sample_articles=False))
    report = _with_progress(lambda on_progress: pipeline.ingest(paths, on_progress))
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON response.")] = False,
) -> None:
    """Answer a question with verbatim sentences from the indexed articles."""
    if not question.strip():
        errors.print("[red]error:[/red] the question is empty")
        raise typer.Exit(2)
    if (problem := text_problem(question)) is not None:
        errors.print(f"[red]error:[/red] the question {problem}")
        raise typer.Exit(2)
    result = _open().ask(question, top_k=top_k)
    if as_json:
        console.print_json(result.model_dump_json())
        return
    if not result.answers:
        console.print("[bold]No answer in the indexed articles.[/bold] Closest passages:")
    for number, answer in enumerate(result.answers, start=1):
        console.print(f"\n[bold green]{number}. {escape(answer.text)}[/bold green]")
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
    if not _open(Settings(seed_sample_articles=False)).delete(article_id):
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
    except IndexStoreError as error:
        errors.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None
    console.print(
        f"rebuilt {settings.index_dir}: {len(report.added)} articles, {report.chunks_added} chunks"
    )


@app.command()
def check() -> None:
    """Verify that the index's parts agree (vectors, BM25, records, manifest)."""
    snapshot = _open(Settings(seed_sample_articles=False)).refresh()
    if snapshot is None:
        console.print("no index yet")
        return
    problems = snapshot.check()
    for problem in problems:
        errors.print(f"[red]problem:[/red] {escape(problem)}")
    if problems:
        errors.print("run `rag rebuild` to re-create the index from its article records")
        raise typer.Exit(1)
    manifest = snapshot.manifest
    console.print(
        f"ok: {snapshot.version}, {manifest['articles']} articles, {manifest['chunks']} chunks"
    )


@app.command("eval")
def evaluate(
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Question sets: sample, squad (default: both)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="SQuAD questions to sample (default 2000).")
    ] = 2000,
    all_questions: Annotated[
        bool, typer.Option("--all", help="Ask every SQuAD question of the split.")
    ] = False,
    squad_path: Annotated[
        Path | None, typer.Option(help="A file in the SQuAD JSON layout (default: ../shared).")
    ] = None,
    squad_split: Annotated[str, typer.Option(help="SQuAD half to report: dev or test.")] = "test",
    variants: Annotated[
        list[str] | None,
        typer.Option("--variant", help="Ablation variants to run (default: all)."),
    ] = None,
    calibrate: Annotated[
        bool, typer.Option(help="Refit the answer calibration on the dev splits first.")
    ] = False,
    url: Annotated[
        str | None, typer.Option(help="Evaluate a running service (POST {url}/ask).")
    ] = None,
    report_dir: Annotated[Path | None, typer.Option(help="Where reports go.")] = None,
) -> None:
    """Evaluate answer quality: metrics table, JSON report and plots in eval/reports/."""
    import httpx

    from eval.datasets import DatasetError
    from eval.reports import TABLE_WIDTH
    from eval.run import EvalConfigError, EvalOptions, Evaluation

    defaults = EvalOptions()
    try:
        options = EvalOptions(
            sets=tuple(sets or defaults.sets),
            squad_path=squad_path or defaults.squad_path,
            squad_split=squad_split,
            limit=None if all_questions else limit,
            variants=tuple(variants or defaults.variants),
            url=url,
            calibrate=calibrate,
            report_dir=report_dir or defaults.report_dir,
        )
        wide = Console(width=max(console.width, TABLE_WIDTH))
        Evaluation(options, Settings(), wide).run()
    except (DatasetError, EvalConfigError, httpx.HTTPError) as error:
        errors.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes sharing the index directory.")
    ] = 1,
) -> None:
    """Run the HTTP service and web form (indexes the sample articles if there is no index)."""
    import uvicorn

    settings = Settings()
    uvicorn.run(
        "api.app:create_app_from_env",  # each worker builds the app from RAG_* variables
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
    )
