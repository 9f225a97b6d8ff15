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
    sheets: Annotated[bool, typer.Option("--sheets/--no-sheets", help="Write contact sheets of the inputs to WORK/inspect/ (as `dynrec inspect`).")] = True,
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
    try:
        runner.run(PREPROCESS, from_=from_, only=only, force=force)
    except DynrecError:  # the sheets of the stages that are done help most when a later one fails
        if sheets:
            _write_sheets(out, quiet=True)
        raise
    commit_config(runner)
    _print_status(runner)
    if sheets:
        _write_sheets(out)


@app.command("import")
def import_(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="dycheck | davis | sintel | tum | bonn | nvidia.")],
    src: Annotated[Path, typer.Argument(help="The dataset's scene folder (DAVIS: its root, Sintel: training/, with --scene).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Work directory to create or resume.")] = ...,
    scene: Annotated[str | None, typer.Option("--scene", help="Sequence name (DAVIS), or a name to record.")] = None,
    resolution: Annotated[str | None, typer.Option("--resolution", help="dycheck: 1x | 2x; davis: 480p | Full-Resolution; sintel: final | clean.")] = None,
    frames: Annotated[str | None, typer.Option("--frames", help="START:STOP:STEP of the dataset's frames (e.g. 30:140 as MonST3R on Bonn).")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="KEY=VALUE for the format (tum: camera; davis: objects; nvidia: train, test).")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Offline backends for the stages the dataset has no ground truth for.")] = False,
    run_all: Annotated[bool, typer.Option("--preprocess/--gt-only", help="Run every preprocessing stage, or only those filled from the dataset.")] = True,
    preset: PresetOpt = None,
    set_: SetOpt = None,
) -> None:
    """Import a benchmark scene: frames and every stage it has ground truth for (docs/datasets.md)."""
    from dynrec.datasets import import_dataset, parse_options

    runner, manifest = import_dataset(fmt, src, out, resolution=resolution, scene=scene, frames=frames,
                                      options=parse_options(list(option or [])), offline=offline,
                                      preprocess=run_all, preset=preset, sets=list(set_ or []), console=err)
    console.print(f"[green]✓[/] {escape(manifest['dataset'])} scene {escape(manifest['scene'])} "
                  f"({manifest['frames']} frames, split {escape(str(manifest['split']))}): ground truth "
                  f"{', '.join(manifest['modalities']) or 'none'}", highlight=False)
    for item in manifest["missing"]:
        console.print(f"[yellow]missing:[/] {escape(item)}", highlight=False)
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
    protocol: Annotated[str | None, typer.Option("--protocol", help="A benchmark's metric set, masks and alignment: dycheck | som | pose | nvidia.")] = None,
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
            work, metrics=metrics, weights_dir=weights_dir, prompt=prompt, video=video, console=err, protocol=protocol,
            offline=offline,
            progress=lambda name, done, total: bar.update(task, description=f"evaluate: {name}",
                                                          completed=done, total=total))
    print_report(console, report)
    if not report.all_computed:
        raise typer.Exit(code=2)


@app.command("bench-table")
def bench_table(
    runs: Annotated[Path, typer.Argument(help="Folder of work dirs evaluated with --protocol (or one work dir).")],
    protocol: Annotated[str, typer.Option("--protocol", help="dycheck | som | pose | nvidia.")] = ...,
) -> None:
    """dynrec's runs in the layout of the paper's table, beside the published numbers (cited)."""
    from dynrec.evaluate.bench import build, write

    table = build(runs, protocol)
    md, js = write(table, runs)
    metrics = [(m, label) for m, label in table.layout.columns if any(c[1] == m for t in table.cells.values() for c in t)]
    out = Table(title=f"dynrec bench-table: protocol {protocol} (the paper's layout: {escape(str(md))})")
    for col in ("scene", "method", *(label for _, label in metrics)):
        out.add_column(col, justify="left" if col in ("scene", "method") else "right")
    for scene in table.scenes:
        for method, cells in table.cells.items():
            vals = [cells.get((scene, m)) for m, _ in metrics]
            if any(v is not None for v in vals):
                out.add_row(scene, method, *("" if v is None else f"{v:.4g}" for v in vals))
    console.print(out)
    for i, note in enumerate(table.notes, 1):
        console.print(escape(f"[{i}] {note}"), highlight=False)
    console.print(f"table: {escape(str(md))}, {escape(str(js))}", highlight=False, soft_wrap=True)


@app.command()
def render(
    work: WorkArg = Path("."),
    path: Annotated[str, typer.Option("--path", help="training | orbit | spiral | dolly | static | heldout | FILE.json (transforms.json cameras).")] = "orbit",
    time: Annotated[str, typer.Option("--time", help="all | T (frozen time) | A:B (both included).")] = "all",
    size: Annotated[str | None, typer.Option("--size", help="WxH, or the longer side in pixels (default: the video's size).")] = None,
    fps: Annotated[float | None, typer.Option("--fps", help="Frame rate of the videos (default: the video's).")] = None,
    frames: Annotated[int, typer.Option("--frames", help="Cameras of an orbit / spiral / dolly at one time.")] = 60,
    camera: Annotated[int | None, typer.Option("--camera", help="Training frame whose camera is the static one / starts the path (default: the first time).")] = None,
    overlay: Annotated[str | None, typer.Option("--overlay", help="Draw on a copy: tracks, skeleton (comma-separated).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Folder under WORK/renders (default: the path's name).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda.")] = None,
) -> None:
    """Novel-view videos and images (RGB, depth, alpha) into WORK/renders/<name>/."""
    from dynrec.export.render import parse_overlays, parse_size, plan_shots
    from dynrec.export.render import render as run_render
    from dynrec.pipeline.device import resolve_device
    from dynrec.pipeline.result import load_reconstruction
    from dynrec.render.paths import parse_times

    overlays = parse_overlays(overlay)
    rec = load_reconstruction(work, device=resolve_device(device or "auto"), console=err)
    times = parse_times(time, rec.T)
    shots = plan_shots(rec, path, times, parse_size(size, rec.width, rec.height) if size else None, frames,
                       camera, name)
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("render", total=None)
        folders = run_render(rec, shots, fps, overlays, progress=lambda what, done, total: bar.update(
            task, description=what, completed=done, total=total))
    for shot, folder in zip(shots, folders):
        console.print(f"[green]✓[/] {len(shot.times)} frames at {shot.cameras.width}x{shot.cameras.height}: "
                      f"{escape(str(folder))}/rgb.mp4", highlight=False, soft_wrap=True)


@app.command()
def export(
    work: WorkArg = Path("."),
    format_: Annotated[str, typer.Option("--format", help="ply | splat | dynamic | cameras | tracks | all (comma-separated).")] = "all",
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Folder to write into (default: WORK/export).")] = None,
    time: Annotated[str, typer.Option("--time", help="Frames of the ply / splat / dynamic files: all | T | A:B (both included).")] = "all",
    sh_degree: Annotated[int, typer.Option("--sh-degree", help="Spherical-harmonic degree of the PLY (0; 3 for viewers that need 45 f_rest).")] = 0,
) -> None:
    """Files other tools open: 3DGS PLY and .splat per frame, canonical PLY + motion, cameras (transforms.json, TUM), 3D tracks."""
    from dynrec.export.core import check_output_dir, parse_formats
    from dynrec.export.core import export as run_export
    from dynrec.export.gaussians import check_sh_degree
    from dynrec.pipeline.result import load_reconstruction
    from dynrec.render.paths import parse_times

    formats = parse_formats(format_)
    check_sh_degree(sh_degree)
    rec = load_reconstruction(work, console=err)
    times = parse_times(time, rec.T)
    out = out if out is not None else rec.root / "export"
    check_output_dir(out)
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("export", total=None)
        written = run_export(rec, formats, out, times, sh_degree, progress=lambda name, done, total: bar.update(
            task, description=name, completed=done, total=total))
    for fmt, files in written.items():
        shown = ", ".join(escape(str(f)) for f in files[:3]) + (f" (+{len(files) - 3} more)" if len(files) > 3 else "")
        console.print(f"[green]✓[/] {fmt}: {shown}", highlight=False, soft_wrap=True)


@app.command()
def view(
    work: WorkArg = Path("."),
    host: Annotated[str, typer.Option("--host", help="Address to serve on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to serve on.")] = 8080,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda (deforming and rendering).")] = None,
) -> None:
    """Interactive viewer in the browser (viser): time slider, cameras, tracks, render button."""
    try:
        from dynrec.view.server import check_port, serve
    except ImportError as exc:
        raise DynrecError(f"the viewer needs viser ({exc}): pip install 'dynrec[view]'") from None
    from dynrec.pipeline.device import resolve_device
    from dynrec.pipeline.result import load_reconstruction

    check_port(host, port)
    rec = load_reconstruction(work, device=resolve_device(device or "auto"), console=err)
    try:
        serve(rec, host, port, console=err)
    except KeyboardInterrupt:
        err.print("viewer stopped")


@app.command()
def status(work: WorkArg = Path(".")) -> None:
    """Every stage: done / stale / failed / missing, with key, duration and size (of a batch's
    folder: its summary)."""
    from dynrec.pipeline.session import open_runner

    if (work / "batch.json").is_file() and not (work / ".dynrec").is_dir():
        return batch_status(work)
    _print_status(open_runner(work, create=False, save=False, console=err, check=False))


@app.command()
def inspect(work: WorkArg = Path(".")) -> None:
    """Contact sheets of the inputs (masks, tracks, cameras, depth) in WORK/inspect/."""
    _write_sheets(work)


def _write_sheets(work: Path, quiet: bool = False) -> None:
    """Contact sheets of WORK's inputs; ``quiet``: after a failure, skip them if they cannot be made
    (a corrupt artifact) so that the failure's own message is the one shown."""
    from dynrec.evaluate.inspect import inspect as make_sheets

    try:
        paths = make_sheets(work)
    except DynrecError:
        if not quiet:
            raise
        return
    for path in paths:
        console.print(f"look at: {escape(str(path))}", highlight=False, soft_wrap=True)


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


@app.command()
def batch(
    inputs: Annotated[list[Path], typer.Argument(help="Videos, folders (of videos, image sequences, synth scenes) and manifest files (one video a line: PATH [--gt SCENE] [--set ...] [--name NAME]).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for the work dirs (OUT/<name>/) and OUT/summary.json, .csv.")] = ...,
    until: Annotated[str, typer.Option("--until", help="preprocess | reconstruct | evaluate.")] = "evaluate",
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster: ray://HOST:PORT, HOST:PORT or auto (default: a local Ray instance).")] = None,
    cpus_per_task: Annotated[float, typer.Option("--cpus-per-task", help="CPUs each task asks Ray for.")] = 1.0,
    gpus_per_task: Annotated[float | None, typer.Option("--gpus-per-task", help="GPUs each reconstruct, evaluate and learned-preprocess task asks for (default: 1 if the cluster has GPUs).")] = None,
    retries: Annotated[int, typer.Option("--retries", help="Retries of a task whose worker died.")] = 3,
    scene_gt: Annotated[bool, typer.Option("--scene-gt", help="Synth scene inputs (folders with scene.json) get --gt SCENE.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Offline preprocessing backends, as for preprocess.")] = False,
    steps: Annotated[int | None, typer.Option("--steps", help="Optimisation steps.")] = None,
    max_frames: Annotated[int | None, typer.Option("--max-frames", help="Keep at most this many frames.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda.")] = None,
    weights_dir: Annotated[Path | None, typer.Option("--weights-dir", help="Folder of learned-backend and metric weights.")] = None,
    metrics: Annotated[str | None, typer.Option("--metrics", help="Metrics to evaluate (default: all a work dir supports).")] = None,
    video: Annotated[bool, typer.Option("--video/--no-video", help="Write eval/side_by_side.mp4.")] = True,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Many videos through preprocess -> reconstruct -> evaluate on Ray; resumable; one summary."""
    from dynrec.batch.command import EngineOptions
    from dynrec.batch.command import batch as run
    from dynrec.batch.tasks import BatchOptions

    sets = [f"{k}={v}" for k, v in (("recon.steps", steps), ("frames.max_frames", max_frames),
                                      ("run.device", device)) if v is not None]
    sets += [f"run.weights_dir={weights_dir.expanduser().resolve()}"] if weights_dir else []
    opts = BatchOptions(until=until, preset=preset, config_file=config, sets=sets + list(set_ or []),
                        offline=offline, metrics=metrics, video=video, weights_dir=weights_dir,
                        threads=max(1, int(cpus_per_task)))
    run(inputs, out, opts, EngineOptions(address, cpus_per_task, gpus_per_task, retries), scene_gt, console)


@app.command("batch-status")
def batch_status(runs: Annotated[Path, typer.Argument(help="The -o folder of `dynrec batch`.")]) -> None:
    """The batch summary as the work dirs are now (also: `dynrec status RUNS`)."""
    from dynrec.batch.command import batch_status as show

    show(runs, console)


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
