"""Folders and frame sequences (``artem batch``): every image of a folder painted with the same
settings, the network built and each style's targets computed once, resumable through a manifest.

The manifest, ``artem-batch.json`` in the output folder, holds the settings (and a fingerprint of
them and of the style files) and each image's state: done (with its output and losses) or failed
(with the error). It is rewritten atomically after each image, and every output is written
atomically, so a batch killed at any instant loses at most the image in progress; a rerun skips
what is done, retries what failed, and refuses (unless ``force``) when the settings changed.
"""
import dataclasses
import fnmatch
import hashlib
import json
import re
import time
from pathlib import Path

from . import io, preprocess
from .api import Stylizer
from .errors import ArtemError

MANIFEST = "artem-batch.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif")


def natural_key(path):
    """Sort key in which numbers count as numbers: frame2 before frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def list_images(folder, recursive=False, include=(), exclude=(), skip=None):
    """Image files of ``folder`` (and its subfolders when ``recursive``) in natural order, relative to
    it; ``include``/``exclude`` are glob patterns on the relative path or the name; ``skip``, a
    folder (the output folder, which may lie inside) whose files are never inputs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtemError(f"input folder '{folder}' does not exist or is not a folder")
    skip = Path(skip).resolve() if skip is not None else None
    found = []
    for path in folder.rglob("*") if recursive else folder.iterdir():
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if skip is not None and skip in path.resolve().parents:
            continue
        rel = path.relative_to(folder)
        matches = lambda patterns: any(fnmatch.fnmatch(str(rel), p) or fnmatch.fnmatch(path.name, p) for p in patterns)  # noqa: E731
        if (include and not matches(include)) or matches(exclude):
            continue
        found.append(rel)
    return sorted(found, key=natural_key)


@dataclasses.dataclass
class Job:
    """One output: a content image painted after a set of style images."""

    content: Path  # relative to the input folder
    styles: tuple  # style image paths
    output: Path  # relative to the output folder

    @property
    def key(self):
        return str(self.output)


def plan(inputs, style_sets, template):
    """The jobs: every input with every style set, named by ``template`` ({stem}, {style}), in the
    input's own subfolder."""
    jobs = []
    for rel in inputs:
        for styles in style_sets:
            style = "+".join(Path(p).stem for p in styles)
            try:
                name = template.format(stem=rel.stem, style=style)
            except (KeyError, IndexError, ValueError) as e:
                raise ArtemError(f"output template {template!r}: {e}; use {{stem}} and {{style}}") from None
            io.output_format(name)
            jobs.append(Job(rel, tuple(styles), rel.parent / name))
    outputs = [j.output for j in jobs]
    if len(set(outputs)) != len(outputs):
        raise ArtemError(f"output template {template!r} gives several images the same output name; add {{style}} or {{stem}}")
    return jobs


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fingerprint(settings, style_sets, options):
    """What decides the outputs: the settings, the style files' contents, and the batch options
    that change images (init from the previous frame, the first frame's iterations, the template)."""
    styles = sorted({str(p): _sha256(p) for styles in style_sets for p in styles}.items())
    record = {"settings": dataclasses.asdict(settings), "styles": styles, "options": options}
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), json.loads(text)


class Manifest:
    """The output folder's record of a batch (see the module's notes)."""

    def __init__(self, out_dir, fingerprint_, record, force=False):
        self.path = Path(out_dir) / MANIFEST
        data = None
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError) as e:
                raise ArtemError(f"the manifest '{self.path}' is damaged ({e}); pass --force to start the batch anew") from None
        if data is not None and data.get("fingerprint") != fingerprint_ and not force:
            old = data.get("record", {})
            changed = [k for k, v in record["settings"].items() if old.get("settings", {}).get(k) != v]
            changed += [k for k in ("styles", "options") if old.get(k) != record[k]]
            raise ArtemError(f"'{out_dir}' holds a batch made with other settings (changed: {', '.join(changed)}); "
                             "pass --force to redo every image with these")
        if data is None or data.get("fingerprint") != fingerprint_:
            data = {"fingerprint": fingerprint_, "record": record, "images": {}}
        self.data = data

    def state(self, job):
        return self.data["images"].get(job.key, {}).get("state")

    def mark(self, job, **entry):
        self.data["images"][job.key] = {"content": str(job.content), **entry}
        text = json.dumps(self.data, indent=1)
        io.atomic_write(self.path, lambda f: f.write(text.encode()))


@dataclasses.dataclass
class Summary:
    done: list = dataclasses.field(default_factory=list)  # keys painted in this run
    skipped: list = dataclasses.field(default_factory=list)  # done before
    failed: dict = dataclasses.field(default_factory=dict)  # key: error
    interrupted: bool = False
    seconds: float = 0.0
    images: dict = dataclasses.field(default_factory=dict)  # key: {iterations, seconds, loss}


def run(in_dir, out_dir, style_sets, settings, *, template="{stem}.png", recursive=False, include=(), exclude=(),
        init_previous=False, first_iterations=None, force=False, weights_path=None, on_start=None, on_done=None,
        on_iteration=None, interruptible=None):
    """Paint every image of ``in_dir`` after each set of ``style_sets`` into ``out_dir``.

    ``init_previous``: each image starts from the previous one's result (frames of a video), the
    first from its content with ``first_iterations`` (default: the settings' iterations).
    ``on_start(job, index, total)``, ``on_done(job, entry)`` and ``on_iteration`` (as for
    ``stylize``) report progress. Returns a ``Summary``."""
    start = time.perf_counter()
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if out_dir.resolve() == in_dir.resolve():
        raise ArtemError("the output folder must be another folder than the input folder, so that no input is replaced")
    if init_previous and len(style_sets) > 1:
        raise ArtemError("--init previous follows one sequence of frames: give one style (or blend), not --style-dir")
    inputs = list_images(in_dir, recursive, include, exclude, skip=out_dir)
    if not inputs:
        raise ArtemError(f"no image files in '{in_dir}'" + (" that match --include/--exclude" if include or exclude else ""))
    jobs = plan(inputs, style_sets, template)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArtemError(f"cannot create the output folder '{out_dir}' ({e.strerror or e})") from None
    options = {"template": template, "init_previous": init_previous, "first_iterations": first_iterations}
    manifest = Manifest(out_dir, *fingerprint(settings, style_sets, options), force=force)
    stylizer = Stylizer(settings, weights_path=weights_path)
    targets = {}
    summary = Summary()
    previous = None  # the previous frame's result (RGB), for init_previous
    for index, job in enumerate(jobs):
        output = out_dir / job.output
        if manifest.state(job) == "done" and output.is_file():
            summary.skipped.append(job.key)
            previous = None
            continue
        if on_start is not None:
            on_start(job, index, len(jobs))
        try:
            content, alpha = io.read_image(in_dir / job.content, "content image")
            if job.styles not in targets:
                targets[job.styles] = stylizer.targets([io.read_image(p, "style image")[0] for p in job.styles])
            init, iterations = None, None
            if init_previous:
                if previous is None and index > 0:
                    earlier = out_dir / jobs[index - 1].output
                    previous = io.read_image(earlier, "previous result")[0] if earlier.is_file() else None
                init = previous
                iterations = first_iterations if previous is None else None
            result = stylizer.stylize(content, targets[job.styles], init_image=init, iterations=iterations,
                                      on_iteration=on_iteration, interruptible=interruptible)
            if result.interrupted:
                summary.interrupted = True
                break
            shape = result.image.shape[1:]
            out_alpha = None if alpha is None else preprocess.resize(alpha, shape)
            output.parent.mkdir(parents=True, exist_ok=True)
            io.write_image(output, result.image, out_alpha, overwrite=True)
        except ArtemError as e:
            summary.failed[job.key] = str(e)
            manifest.mark(job, state="failed", error=str(e))
            previous = None
            if on_done is not None:
                on_done(job, {"state": "failed", "error": str(e)})
            continue
        entry = {"state": "done", "output": str(job.output), "iterations": result.iterations,
                 "seconds": round(result.seconds, 3), "initial_losses": result.initial_losses, "losses": result.losses}
        manifest.mark(job, **entry)
        summary.done.append(job.key)
        summary.images[job.key] = entry
        previous = result.image if init_previous else None
        if on_done is not None:
            on_done(job, entry)
    summary.seconds = time.perf_counter() - start
    return summary
