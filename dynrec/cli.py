"""The ``dynrec`` command line. Thin: parse options, call the pipeline, print results."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from dynrec.errors import DynrecError

app = typer.Typer(
    name="dynrec", add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="One casual monocular video to a dynamic 3D Gaussian scene, with honest metrics.",
)
console = Console()
err = Console(stderr=True, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        from dynrec import __version__

        console.print(f"dynrec {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """One casual monocular video to a dynamic 3D Gaussian scene, with honest metrics."""

WorkArg = Annotated[Path, typer.Argument(help="Work directory (default: the current one).")]
PresetOpt = Annotated[str | None, typer.Option("--preset", help="Config preset: default | tiny.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML file of settings.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override: stage.field=value (repeatable).")]


@app.command()
def preprocess(
    video: Annotated[Path | None, typer.Argument(help="Input video or image folder (default: the one recorded in WORK).")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Work directory to create or resume.")] = ...,
    gt: Annotated[Path | None, typer.Option("--gt", help="Fill masks, depth, tracks, cameras, keypoints from this synth scene's ground truth.")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Use the offline backends (no learned models); with --gt the scene is kept for evaluation.")] = False,
    from_: Annotated[str | None, typer.Option("--from", help="Redo this stage and everything after it.")] = None,
    only: Annotated[str | None, typer.Option("--only", help="Run just this stage (its inputs must be done).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo every stage.")] = False,
    stride: Annotated[int | None, typer.Option("--stride", help="Keep every n-th frame.")] = None,
    max_frames: Annotated[int | None, typer.Option("--max-frames", help="Keep at most this many frames.")] = None,
    long_side: Annotated[int | None, typer.Option("--long-side", help="Resize so the longer side has this many pixels.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda.")] = None,
    weights_dir: Annotated[Path | None, typer.Option("--weights-dir", help="Folder of learned-backend weights (<org>/<name>; also searched: $DYNREC_WEIGHTS, the hub caches).")] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="Name the subject: 'x,y' pixels of the input video's first kept frame, several as 'x1,y1;x2,y2' (masks stage).")] = None,
    prompt_box: Annotated[str | None, typer.Option("--prompt-box", help="Name the subject by a box 'x0,y0,x1,y1' around it (pixels of the first kept frame; masks stage).")] = None,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Frames, masks, depth, tracks, cameras, keypoints: every stage that is not done yet."""
    from dynrec.pipeline.registry import PREPROCESS
    from dynrec.pipeline.session import commit_config, open_runner

    sets = [f"frames.{k}={v}" for k, v in
            (("stride", stride), ("max_frames", max_frames), ("long_side", long_side)) if v is not None]
    sets += [f"run.device={device}"] if device else []
    sets += [f"run.weights_dir={weights_dir.expanduser().resolve()}"] if weights_dir else []
    sets += [f"masks.prompt={prompt}"] if prompt is not None else []
    sets += [f"masks.prompt_box={prompt_box}"] if prompt_box is not None else []
    if video is None and not (out / "dynrec.toml").is_file():  # before anything is created
        raise DynrecError(f"no input video: give one, e.g. `dynrec preprocess video.mp4 -o {out}`")
    runner = open_runner(out, create=True, source=video, gt=gt, preset=preset, config_file=config,
                         sets=sets + list(set_ or []), console=err, offline=offline, scope=PREPROCESS)
    if runner.source is None:
        raise DynrecError(f"no input video: give one, e.g. `dynrec preprocess video.mp4 -o {out}`")
    runner.run(PREPROCESS, from_=from_, only=only, force=force)
    commit_config(runner)
    _print_status(runner)


@app.command()
def reconstruct(
    work: WorkArg = Path("."),
    steps: Annotated[int | None, typer.Option("--steps", help="Optimisation steps.")] = None,
    motion: Annotated[str | None, typer.Option("--motion", help="himor | global-bases.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Start the optimisation again from scratch.")] = False,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Optimise Gaussians + HiMoR on a preprocessed work dir (resumes an interrupted run)."""
    from dynrec.pipeline.registry import RECONSTRUCT
    from dynrec.pipeline.session import commit_config, open_runner

    sets = [f"recon.{k}={v}" for k, v in (("steps", steps), ("motion", motion)) if v is not None]
    sets += [f"run.device={device}"] if device else []
    runner = open_runner(work, create=False, preset=preset, config_file=config,
                         sets=sets + list(set_ or []), console=err, scope=RECONSTRUCT)
    runner.run(RECONSTRUCT, only=RECONSTRUCT[0], force=force)
    commit_config(runner)
    _print_status(runner)


@app.command()
def evaluate(
    work: WorkArg = Path("."),
    metrics: Annotated[str | None, typer.Option("--metrics", help="Comma-separated metric names, or 'all' (default: every metric this work dir supports).")] = None,
    weights_dir: Annotated[Path | None, typer.Option("--weights-dir", help="Folder of metric network weights (also searched: $DYNREC_WEIGHTS).")] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="Text describing the video, for clip_t.")] = None,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Write eval/side_by_side.mp4.")] = True,
    offline: Annotated[bool, typer.Option("--offline", help="Never download missing metric weights.")] = False,
) -> None:
    """Metrics table, eval/metrics.json, per-frame plots and a side-by-side video.

    Exit code 0 when every requested metric was computed, 2 when some were not (the table
    says why), 1 on errors."""
    from dynrec.evaluate import evaluate as run_evaluation
    from dynrec.evaluate import print_report

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("evaluate", total=None)
        report = run_evaluation(
            work, metrics=metrics, weights_dir=weights_dir, prompt=prompt, video=video, console=err, offline=offline,
            progress=lambda name, done, total: bar.update(task, description=f"evaluate: {name}",
                                                          completed=done, total=total))
    print_report(console, report)
    if not report.all_computed:
        raise typer.Exit(code=2)


@app.command()
def status(work: WorkArg = Path(".")) -> None:
    """Every stage: done / stale / failed / missing, with key, duration and size."""
    from dynrec.pipeline.session import open_runner

    _print_status(open_runner(work, create=False, save=False, console=err, check=False))


@app.command()
def inspect(work: WorkArg = Path(".")) -> None:
    """Contact sheets of the inputs (masks, tracks, cameras, depth) in WORK/inspect/."""
    from dynrec.evaluate.inspect import inspect as make_sheets

    for path in make_sheets(work):
        console.print(f"sheet: {escape(str(path))}", highlight=False, soft_wrap=True)


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the scene into (new or empty).")],
    preset: Annotated[str, typer.Option("--preset", help="tiny | small | fast.")] = "tiny",
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same scene.")] = 0,
    family: Annotated[str, typer.Option("--family", help="What moves: sway | walk | run | stopgo | spin | arm | quadruped | multi.")] = "sway",
    camera: Annotated[str, typer.Option("--camera", help="Camera rig: orbit | follow | pan | static | shake.")] = "orbit",
) -> None:
    """A synthetic dynamic scene with ground truth (cameras, depth, masks, tracks, keypoints)."""
    from dynrec.synth import generate

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(f"synth {preset}", total=None)
        info = generate(out, preset=preset, seed=seed, family=family, camera=camera,
                        progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(
        f"[green]✓[/] scene written to {escape(str(out))}: {info['frames']} frames at "
        f"{info['width']}x{info['height']}; try `dynrec preprocess {escape(str(out))}/video.mp4 -o WORK --gt {escape(str(out))}`"
    )


def _add_groups() -> None:
    from dynrec.cli_config import app as config_app
    from dynrec.cli_weights import app as weights_app

    app.add_typer(weights_app, name="weights")
    app.add_typer(config_app, name="config")


_add_groups()
#: OSErrors a user's environment causes (read-only, permissions, full disk): one line, no traceback.
USER_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT)
STATE_STYLE = {"done": "green", "stale": "yellow", "failed": "red", "missing": "dim"}


def _print_status(runner) -> None:
    """One line per stage; a detail longer than a cell is printed in full below the table."""
    table = Table(title=f"dynrec status: {escape(str(runner.work.root))}")
    for col, width in (("stage", 9), ("state", 7), ("key", 8), ("time", 6), ("size", 9)):
        table.add_column(col, no_wrap=True, min_width=width)
    table.add_column("detail", no_wrap=True, overflow="ellipsis")
    room = max(16, console.width - 60)  # what is left of the line for the detail
    notes = []
    for st in runner.states():
        detail = st.detail
        if len(detail) > room or "\n" in detail:
            notes.append(f"[bold]{st.name}[/]: {escape(detail)}")
            detail = f"{detail.splitlines()[0][:room - 10]}… (below)"
        table.add_row(
            st.name, f"[{STATE_STYLE[st.state]}]{st.state}[/]", st.key[:8],
            "" if st.duration_s is None else f"{st.duration_s:.1f}s",
            "" if st.size_bytes is None else _human(st.size_bytes), escape(detail),
        )
    console.print(table)
    for note in notes:
        console.print(note, highlight=False, soft_wrap=True)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one red line and a non-zero exit code."""
    try:
        app(args=argv, prog_name="dynrec")
    except DynrecError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(exc.exit_code)
    except OSError as exc:
        if exc.errno not in USER_ERRNOS:
            raise
        err.print(f"[bold red]error:[/] {escape(exc.strerror or str(exc))}: {escape(str(exc.filename or ''))}; "
                  "finished stages and the saved config are kept")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished stages are kept; run the same command to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
