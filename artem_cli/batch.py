"""Folders and frame sequences (``artem batch``): every image of a folder painted with the same
settings, the network built and each style's targets computed once, resumable through a manifest.

The manifest, ``artem-batch.json`` in the output folder, holds the settings (and a fingerprint of
them and of the networks' files), each image's state: done (with its output, its content's and its
style files' SHA-256, its shape as painted, its losses, and a frame's start) or failed (with the error), and every output a batch has written
there ("written", the files a rerun may replace). It is rewritten atomically after each image, and
every output is written atomically, so a batch killed at any instant loses at most the image in
progress; a rerun skips what is done (its output there and readable, its content unchanged), retries what
failed, paints what is new (an input, or a style added to ``--style-dir``), and refuses (unless
``force``) when the settings changed, or the style files of an image done. One batch at a time
writes into a folder (a lock on it, which goes with its process).
"""
import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import string
import threading
import time
from pathlib import Path, PurePath

from . import backend, io, preprocess
from .api import (Settings, Stylizer, binary_file, check_content, check_trained, estimate_memory, first_binary, given,
                  whole)
from .backend import array_module_for, host_memory
from .errors import ArtemError, NoSpace
from .signals import terminal_signals_ignored

MANIFEST = "artem-batch.json"


def input_images(folder, recursive=False, include=(), exclude=(), skip=None):
    """``io.list_images`` of a batch's input folder, but for the results of batches in its subfolders;
    an ArtemError where there is none."""
    found = io.list_images(folder, recursive, include, exclude, skip, marked=MANIFEST)
    if not found:
        raise ArtemError(f"no image files in '{folder}'" + (" that match --include/--exclude" if include or exclude else ""))
    return found


@dataclasses.dataclass
class Job:
    """One output: a content image painted after a set of style images."""

    content: Path  # relative to the input folder
    styles: tuple  # style image paths
    output: Path  # relative to the output folder

    @property
    def key(self):
        return str(self.output)


def check_places(in_dir, out_dir, jobs, template):
    """An ArtemError where an output would replace an input (a content or a style image), have a name
    longer than the file system takes, need a folder where a file is (--template's subfolders: found
    now, not once every image is painted), or land in the input folder where it lies inside the
    output folder (its files are inputs there, so a rerun would take the results for photos to paint)."""
    root, out = io.resolved(in_dir), io.resolved(out_dir)
    inputs = {io.resolved(Path(in_dir) / job.content): f"the input '{Path(in_dir) / job.content}'" for job in jobs}
    inputs.update({io.resolved(p): f"the style image '{p}'" for job in jobs for p in job.styles})
    longest = _name_max(out)
    for job in jobs:
        target = io.resolved(Path(out_dir) / job.output)
        if target in inputs:
            raise ArtemError(f"the output '{Path(out_dir) / job.output}' would replace {inputs[target]}")
        too_long = next((part for part in PurePath(job.output).parts if len(os.fsencode(part)) > longest), None)
        if too_long is not None:
            raise ArtemError(f"output template {template!r} gives '{too_long}', a name longer than the {longest} bytes "
                             "a file's name may have here")
        blocked = next((folder for folder in reversed(PurePath(job.output).parents[:-1])
                        if os.path.lexists(Path(out_dir) / folder) and not (Path(out_dir) / folder).is_dir()), None)
        if blocked is not None:  # a folder of the template's, or the input's own subfolder (--recursive)
            where = Path(out_dir) / blocked
            advice = ("move it away" if blocked in (job.content.parent, *job.content.parent.parents)
                      else "move it away, or name the outputs otherwise (--template)")
            raise ArtemError(f"'{where}' {'is a file' if where.is_file() else io.not_a_file(where)}, where the batch "
                             f"would make the folder of the output '{Path(out_dir) / job.output}'; {advice}")
        if out in root.parents and root in target.parents:
            raise ArtemError(f"output template {template!r} puts the result of '{job.content}' in the input folder, "
                             f"'{in_dir}', where a rerun would take it for an input; name the outputs outside it")


def _name_max(folder):
    """The longest name (in bytes) the file system of ``folder`` (or of its nearest existing folder) takes."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def plan(inputs, style_sets, template):
    """The jobs: every input with every style set, named by ``template`` ({stem}, {ext}, {style}), in the
    input's own subfolder of the output folder, never outside it."""
    _check_fields(template)
    jobs = []
    for rel in inputs:
        for styles in style_sets:
            style = "+".join(Path(p).stem for p in styles)
            try:
                name = template.format(stem=rel.stem, ext=rel.suffix[1:], style=style)
            except (IndexError, ValueError) as e:  # {stem[9]} of a shorter name, {stem:d}
                raise ArtemError(f"output template {template!r}: {e}; {FIELDS}") from None
            if PurePath(name).is_absolute() or ".." in PurePath(name).parts:  # sub/../x stays inside, and is refused too
                way, fix = (("is an absolute path", "a relative name") if PurePath(name).is_absolute() else
                            ("goes up a folder ('..')", "without '..'"))
                raise ArtemError(f"output template {template!r} gives {name!r}, which {way}; name the outputs inside the "
                                 f"output folder, {fix}")
            io.output_format(name)
            jobs.append(Job(rel, tuple(styles), rel.parent / name))
    first, clashes = {}, []
    for job in jobs:
        other = first.setdefault(job.output, job)
        if other is not job:
            clashes.append((other, job))
    if clashes:  # the first, and how many more (a rerun for each would find them one at a time)
        other, job = clashes[0]
        # names alike give one result name whatever the template; names that differ, one that leaves the field out
        # or only a part of it ({stem[0]}, {stem:.3})
        if other.content == job.content:  # after two style sets
            whose, field = f"two results of '{job.content}'", "style"
            alike = [Path(p).stem for p in other.styles] == [Path(p).stem for p in job.styles]
            advice = "rename one of the styles that share a name"
        else:  # a.png and b.png by their stems, a.png and a.jpg by their suffixes
            whose = f"the results of '{other.content}' and '{job.content}'"
            field = "stem" if other.content.stem != job.content.stem else "ext"
            alike = other.content.name == job.content.name  # in two folders, never: each result goes in its input's
            advice = "rename one, or leave one out with --exclude"
        if not alike:
            advice = (f"put the whole {{{field}}} in it" if f"{{{field}" in template else
                      f"add {{{field}}}" + " (the input's suffix)" * (field == "ext"))
        more = list(dict.fromkeys(str(j.output) for _, j in clashes if j.output != job.output))
        also = (f" (and {len(more)} more name{'s' * (len(more) != 1)} alike: "
                + ", ".join(f"'{name}'" for name in more[:3]) + ", ..." * (len(more) > 3) + ")") if more else ""
        raise ArtemError(f"output template {template!r} gives {whose} one name, '{job.output}'{also}; {advice}")
    for job in jobs:
        folder = next((parent for parent in job.output.parents if parent in first), None)
        if folder is not None:
            raise ArtemError(f"'{folder}' would be an output (of '{first[folder].content}') and the folder of the output "
                             f"'{job.output}'; rename one, or leave one out with --exclude")
    return jobs


FIELDS = "use {stem}, {ext} (the input's suffix) and {style}, a letter of one ({stem[0]}) or its first letters ({stem:.3})"


def _check_fields(template):
    """An ArtemError where ``template`` is no text, or has a field other than {stem}, {ext} and {style}, a
    letter of one ({stem[0]}), or either formatted ({stem:.3}, {stem:_>8}): an attribute
    ({stem.upper}: a method's text with its address, another name each run), a conversion other
    than !s ({stem!r}: quotes), a field inside a format, or a width past any file name's length
    (built before it could be refused: gigabytes)."""
    if not isinstance(template, str):
        raise ArtemError(f"the output template must be text, such as '{{stem}}.png', not {type(template).__name__}")
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as e:  # a { or } alone
        raise ArtemError(f"output template {template!r}: {e}; {FIELDS}") from None
    for name, spec, conversion in fields:
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if not re.fullmatch(r"(stem|ext|style)(\[\d+\])?", name) or conversion not in (None, "s") or "{" in spec:
            raise ArtemError(f"output template {template!r}: artem does not fill {shown}; {FIELDS}")
        width = re.match(r"(?:.?[<>^=])?[-+ ]?z?#?0?(\d*)", spec, re.S).group(1).lstrip("0")
        if len(width) > 4:  # more than 9999 characters
            cut = repr(template) if len(template) <= 60 else f"{template[:57]!r}..."
            raise ArtemError(f"output template {cut}: a width of {len(width)} digits asks for a name longer than any "
                             "file name")


def _sha256(path):
    """The SHA-256 of the regular file at ``path`` (read in blocks); an OSError for anything else (a
    pipe would block)."""
    path = Path(path)
    if not path.is_file():
        raise OSError(errno.EINVAL, io.not_a_file(path), str(path))
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _sha256_or_none(path):
    """The SHA-256 of the file at ``path``, or None where it cannot be read."""
    try:
        return _sha256(path)
    except OSError:
        return None


def style_files(style_sets):
    """{path as given: SHA-256} of the style files of ``style_sets``; an ArtemError where one cannot be read."""
    files = {}
    for p in (p for styles in style_sets for p in styles):
        if not Path(p).is_file():
            raise ArtemError(f"style image '{p}' {io.not_a_file(p)}")
        try:
            files[str(p)] = _sha256(p)
        except OSError as e:
            raise ArtemError(f"style image '{p}' cannot be read ({e.strerror})") from None
    return files


def fingerprint(settings, options, weights_path=None):
    """What decides every output: the settings, the networks' files by their contents, and the batch
    options that change images (init from the previous frame, the first frame's iterations, the
    template); each image's style files are its own (``Manifest`` holds each to them). An ArtemError where
    a network's file will not do."""
    networks = _networks(settings, weights_path)
    as_run = dataclasses.replace(settings, binary_from=first_binary(settings))  # given or not, alike where it paints alike
    record = {"settings": dataclasses.asdict(as_run), "networks": networks, "options": options}
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), json.loads(text)


def _networks(settings, weights_path):
    """The SHA-256 of the files of the networks that ``settings`` paints with: the VGG16's weights
    and, for bwn and xnor, the binary network's (checked as a run checks it: an ArtemError where it
    will not do, before any manifest is read or written)."""
    from . import weights

    files = {"vgg16": weights.locate(weights_path)}
    if settings.mode in ("bwn", "xnor") and settings.binary_weights != "untrained":
        check_trained(settings, files["vgg16"])
        files["binary"] = binary_file(settings)
    try:
        return {name: _sha256(path) for name, path in files.items()}
    except OSError as e:
        raise ArtemError(f"cannot read the network file '{e.filename}' ({e.strerror})") from None


def _changes(old, new, style_sets, files):
    """What differs between the records of ``fingerprint``, ``old`` (a manifest's) and ``new`` (of
    ``style_sets``, whose files ``style_files`` gives): the settings that differ, where a setting
    that ``old`` lacks counts as its default (one added to artem since changes nothing while it is
    left there), then "styles", "networks" and the batch options that differ (the first frame's
    iterations as run: the default, --iterations, or as many given). A manifest written before the networks
    were recorded is taken at its word for them. One written before each image recorded its style
    files recorded those of the whole batch: each set's contents in order (held to them, every set),
    or earlier (path, SHA-256) pairs (sorted: their order unknown; held to the set of their contents
    and to the contents of each path named alike)."""
    defaults = json.loads(json.dumps(dataclasses.asdict(Settings()), default=str))
    old_settings, new_settings = _binary_from_as_run(old.get("settings", {})), new["settings"]
    # the binary network's file as named (trained, a path relative or not): its contents in "networks" decide
    named = {"binary_weights"} if "networks" in old else set()
    changed = [k for k in [*new_settings, *(k for k in old_settings if k not in new_settings)]
               if k not in named and old_settings.get(k, defaults.get(k)) != new_settings.get(k, defaults.get(k))]
    styles, sets = old.get("styles"), [[files[str(p)] for p in styles] for styles in style_sets]
    if isinstance(styles, list) and all(isinstance(p, list) and len(p) == 2 and not re.fullmatch(r"[0-9a-f]{64}", str(p[0]))
                                        for p in styles):  # (path, SHA-256) pairs
        if ({sha for _, sha in styles} != {sha for group in sets for sha in group}
                or any(files.get(path, sha) != sha for path, sha in styles)):
            changed.append("styles")
    elif "styles" in old and styles != sets:
        changed.append("styles")
    if "networks" in old and old["networks"] != new["networks"]:
        changed.append("networks")
    old_options, new_options = dict(old.get("options") or {}), dict(new["options"])
    given_first = old_options.get("first_iterations") or new_options.get("first_iterations")
    for options, record in ((old_options, old), (new_options, new)):  # the first frame's iterations as run
        if options.get("init_previous"):
            options["first_iterations"] = options.get("first_iterations") or record.get("settings", {}).get("iterations")
    optional = [k for k in sorted({*old_options, *new_options}) if old_options.get(k) != new_options.get(k)]
    if "init_previous" in optional or ("iterations" in changed and not given_first):
        optional = [k for k in optional if k != "first_iterations"]  # as run it follows from those: not named twice
    return changed + optional


NO_OPTION = {"cuda_graph", "tf32", "styles", "networks"}  # settings no option sets, and the files of _changes


def _as_options(changed):
    """The settings and options of ``_changes`` named as the command line names them (``tv_weight``:
    --tv-weight; ``init`` and ``init_previous``: --init, once); those it has no option for as they
    are, and the styles that changed as ``_changed_styles`` says them."""
    named = [name if name in NO_OPTION or not name.isidentifier()
             else "--init" if name == "init_previous" else f"--{name.replace('_', '-')}" for name in changed]
    return list(dict.fromkeys(named))


def _binary_from_as_run(settings):
    """A manifest's ``settings`` with binary-from as ``fingerprint`` records it now, the first binary
    convolution as run: an earlier artem recorded it as given, None for the network's own first
    (kept where its file will not do now: the networks then differ)."""
    source = settings.get("binary_weights", "trained")
    if settings.get("mode") not in ("bwn", "xnor") or settings.get("binary_from") is not None or not isinstance(source, str):
        return settings
    try:
        first = first_binary(Settings(mode=settings["mode"], binary_weights=source))
    except ArtemError:
        return settings
    return {**settings, "binary_from": first}


def _manifest_shaped(data):
    """``data`` (read from a manifest's JSON) if it has the manifest's shape, else a ValueError that
    says where it does not."""
    fields = {"fingerprint": str, "record": dict, "images": dict, "written": list}
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    for name, kind in fields.items():
        if not isinstance(data.get(name, [] if name == "written" else None), kind):
            raise ValueError(f"its '{name}' is not a JSON {'string' if kind is str else 'object' if kind is dict else 'list'}")
    for name, value in (("settings", data["record"].get("settings", {})), ("options", data["record"].get("options") or {})):
        if not isinstance(value, dict):  # options absent or null read as none, as _changes reads them
            raise ValueError(f"its record's '{name}' is not a JSON object")
    if not all(isinstance(e, dict) and isinstance(e.get("output", ""), str) for e in data["images"].values()):
        raise ValueError("an entry of its 'images' is not an object with a string 'output'")
    if not all(isinstance(w, str) for w in data.get("written", [])):
        raise ValueError("an entry of its 'written' is not a string")
    return data


def _record_styles(data, jobs, files):
    """Each done image of ``data``, a manifest of an earlier artem that recorded the batch's style files
    as a whole (found the same as now), given its own: those of its job now (``files`` as
    ``style_files`` gives them), or, for an image not among ``jobs`` (left out this time), the one
    set the batch had, where it had one; else none, and it is taken at its word."""
    styles = data.get("record", {}).get("styles")
    only = None
    if isinstance(styles, list) and len(styles) == 1 and isinstance(styles[0], list):
        only = styles[0]  # one set's contents in order
        if len(only) == 2 and not re.fullmatch(r"[0-9a-f]{64}", str(only[0])):
            only = [only[1]]  # one (path, SHA-256) pair: one style file
    now = {job.key: [files[str(p)] for p in job.styles] for job in jobs}
    for key, entry in data["images"].items():
        if entry.get("state") == "done" and "styles_sha256" not in entry:
            found = now.get(key, only)
            if found is not None:
                entry["styles_sha256"] = found


def _changed_styles(images, jobs, files):
    """["styles (the files, or the sets, that changed)"] where an image done (``images``, a manifest's)
    was painted after other style files than its job's now (``files``: as ``style_files`` gives them),
    else []."""
    changed = []
    for job in jobs:
        entry = images.get(job.key, {})
        now = [files[str(p)] for p in job.styles]
        if entry.get("state") == "done" and "styles_sha256" in entry and entry["styles_sha256"] != now:
            recorded = entry["styles_sha256"]
            which = ([str(p) for p, a, b in zip(job.styles, recorded, now) if a != b]
                     if isinstance(recorded, list) and len(recorded) == len(now) else [" + ".join(map(str, job.styles))])
            changed += [name for name in which if name not in changed]
    return [f"styles ({', '.join(changed)})"] if changed else []


class Manifest:
    """The output folder's record of a batch (see the module's notes)."""

    def __init__(self, out_dir, fingerprint_, record, force=False, style_sets=(), jobs=(), files=None):
        """The manifest in ``out_dir`` of the batch of ``record`` (``fingerprint``'s), of ``jobs`` after
        ``style_sets``, whose files' SHA-256 are ``files`` (as ``style_files`` gives them). Refused (an
        ArtemError) unless ``force`` where it is damaged, of other settings or networks, or where an
        image done was painted after other style files than its job's now (other contents, or another
        order). One of an earlier artem, which recorded the batch's style files rather than each
        image's, is held to those, and then records each image's."""
        self.path = Path(out_dir) / MANIFEST
        files = files or {}
        data, changed, upgraded = None, [], False
        if os.path.lexists(self.path) and not self.path.is_file():  # found now, not when the first image is recorded
            raise ArtemError(f"'{self.path}', where a batch keeps its manifest, {io.not_a_file(self.path)}; move it away "
                             "or give another output folder")
        if self.path.is_file():
            try:
                raw = self.path.read_bytes()
            except OSError as e:  # not damaged: its record stands, and --force would lose it
                raise ArtemError(f"cannot read the manifest '{self.path}' ({e.strerror or e})") from None
            try:
                data = _manifest_shaped(json.loads(raw.decode()))
            except ValueError as e:  # UnicodeDecodeError and JSONDecodeError among them
                if not force:
                    raise ArtemError(f"the manifest '{self.path}' is damaged ({e}); pass --force to start the batch anew "
                                     "(with --overwrite to replace the outputs it recorded)") from None
        if data is not None:
            if data.get("fingerprint") != fingerprint_:
                changed = _changes(data.get("record", {}), record, style_sets, files)
                if not changed:  # the same batch, as this artem records it: each image with its style files
                    _record_styles(data, jobs, files)
                    data.update(fingerprint=fingerprint_, record=record)
                    upgraded = True
            if not changed:
                changed = _changed_styles(data["images"], jobs, files)
        if changed and not force:
            raise ArtemError(f"'{out_dir}' holds a batch made with other settings (changed: {', '.join(_as_options(changed))}); "
                             "pass --force to redo every image with these")
        # every output a batch has written here (recorded before its writing starts), kept across --force:
        # a rerun may replace these, nothing else
        written = set((data or {}).get("written", []))
        written |= {e["output"] for e in (data or {}).get("images", {}).values() if e.get("state") == "done" and "output" in e}
        if data is None or changed:
            data = {"fingerprint": fingerprint_, "record": record, "images": {}}
        data["written"] = sorted(written)
        self.data = data
        self._changed = False  # outputs taken as they are now (``finished``), to be saved
        if upgraded:
            self._save()

    @property
    def made(self):
        return set(self.data["written"])

    def claim(self, job):
        """Record ``job``'s output as a batch's own before it is written (a batch killed while writing
        it may replace it on its rerun)."""
        if str(job.output) not in self.data["written"]:
            self.data["written"] = sorted({*self.data["written"], str(job.output)})
            self._save()

    def recorded_done(self, job):
        return self.data["images"].get(job.key, {}).get("state") == "done"

    def painted_shape(self, job):
        """The shape (H, W) ``job``'s image was painted at, as recorded where it is done (None where it
        is not, or a manifest of an earlier artem did not record it)."""
        entry = self.data["images"].get(job.key, {})
        shape = entry.get("shape") if entry.get("state") == "done" else None
        return tuple(shape) if isinstance(shape, list) and len(shape) == 2 and all(type(n) is int for n in shape) else None

    def finished(self, job, content_sha256, output_sha256, start_sha256=None):
        """Whether ``job`` is done: recorded done, its output there (SHA-256 ``output_sha256`` now,
        None where it cannot be read) and an image (a file other than the one written, damaged since,
        is painted again; one edited or recompressed is the batch's result from now on, recorded by
        ``save_changes``), its content the same file, and (frames, each started from the one before)
        started from the file of SHA-256 ``start_sha256`` (None: from its content). A manifest
        written before contents or starts were recorded is taken at its word for them."""
        entry = self.data["images"].get(job.key, {})
        if not (entry.get("state") == "done" and output_sha256 is not None
                and entry.get("content_sha256", content_sha256) == content_sha256
                and entry.get("start_sha256", start_sha256) == start_sha256):
            return False
        if entry.get("output_sha256") != output_sha256:  # changed since, or an earlier artem recorded none
            try:
                io.read_image(self.path.parent / job.output)
            except ArtemError:
                return False
            entry["output_sha256"], self._changed = output_sha256, True
        return True

    def save_changes(self):
        """The manifest written where ``finished`` recorded an output's new SHA-256."""
        if self._changed:
            self._save()
            self._changed = False

    def mark(self, job, **entry):
        self.data["images"][job.key] = {"content": str(job.content), **entry}
        self._save()

    def _save(self):
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
    contents: dict = dataclasses.field(default_factory=dict)  # key: its content image, relative to the input folder


def check_options(in_dir, out_dir, style_sets, settings, *, init_previous=False, first_iterations=None, on_cluster=False):
    """What ``run`` checks of its options before any folder is made (``on_cluster``: with a client)."""
    settings = given(settings)
    io.a_path(in_dir, "input folder"), io.a_path(out_dir, "output folder")
    if not (isinstance(style_sets, (list, tuple)) and style_sets
            and all(isinstance(styles, (list, tuple)) and styles for styles in style_sets)):
        raise ArtemError(f"the style sets must be a list of lists of style image paths ([[path]] for one image), not "
                         f"{style_sets!r}")
    for styles in style_sets:
        for path in styles:
            io.a_path(path, "style image")
    if not isinstance(init_previous, bool):
        raise ArtemError(f"init_previous must be True or False, not {init_previous!r}")
    settings.validate(len(style_sets[0]))  # style sets: one size
    if not on_cluster:  # on a cluster only the workers need the device
        array_module_for(settings.device)
    if settings.init not in ("content", "random"):
        raise ArtemError(f"--init {settings.init}: a file starts one image (artem stylize); a batch starts each image from "
                         "its content, random noise or the previous result (--init content, random or previous)")
    if first_iterations is not None and not init_previous:
        raise ArtemError("--first-iterations goes with --init previous")
    if first_iterations is not None and not (whole(first_iterations) and first_iterations >= 1):
        raise ArtemError(f"--first-iterations must be a whole number >= 1, not {first_iterations!r}")
    if io.resolved(out_dir) == io.resolved(in_dir):
        raise ArtemError("the output folder must be another folder than the input folder, so that no input is replaced")
    if init_previous and len(style_sets) > 1:
        raise ArtemError("--init previous follows one sequence of frames: give one style (or blend), not --style-dir")
    if init_previous and on_cluster:
        raise ArtemError("--init previous paints the frames in order, in this process: leave out --scheduler and --workers")


def run(in_dir, out_dir, style_sets, settings, *, template="{stem}.png", recursive=False, include=(), exclude=(),
        init_previous=False, first_iterations=None, force=False, overwrite=False, weights_path=None, client=None,
        on_start=None, on_done=None, on_iteration=None, interruptible=None):
    """Paint every image of ``in_dir`` after each set of ``style_sets`` into ``out_dir``.

    An output replaces only a file that a batch wrote there before (its manifest says so), or any
    file with ``overwrite``; never an input. A done image is painted again when its output is gone
    or damaged, or its content file changed.

    ``init_previous``: each image starts from the previous one's result (frames of a video), the
    first from its content with ``first_iterations`` (default: the settings' iterations).
    ``client``: a Dask distributed ``Client``; the images then go to its workers as tasks (see
    ``paint``), and this process writes every output (once) and the manifest.
    ``on_start(job, index, total, iterations)`` (``job``, the ``index``-th of ``total``, is about to be
    painted with that many iterations: here once its files are read; on a cluster as it is sent, each
    at once), ``on_done(job, entry)`` and ``on_iteration`` (as for ``stylize``; in this process only)
    report progress; a job done before gets neither. Returns a ``Summary``."""
    start = time.perf_counter()
    for name, flag in (("force", force), ("overwrite", overwrite)):
        if not isinstance(flag, bool):
            raise ArtemError(f"{name} must be True or False, not {flag!r}")
    check_options(in_dir, out_dir, style_sets, settings, init_previous=init_previous, first_iterations=first_iterations,
                  on_cluster=client is not None)
    in_dir, out_dir, settings = Path(in_dir), Path(out_dir), given(settings)
    jobs = plan(input_images(in_dir, recursive, include, exclude, skip=out_dir), style_sets, template)
    check_places(in_dir, out_dir, jobs, template)
    options = {"template": template, "init_previous": init_previous,  # the first frame's iterations given as the default's
               "first_iterations": None if first_iterations == settings.iterations else first_iterations}
    files = style_files(style_sets)
    fingerprint_ = fingerprint(settings, options, weights_path)  # its networks checked: before any folder
    check_out_dir(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArtemError(f"cannot create the output folder '{out_dir}' ({e.strerror or e})") from None
    with _alone_in(out_dir):
        batch = _Batch(in_dir, out_dir, Manifest(out_dir, *fingerprint_, force=force, style_sets=style_sets, jobs=jobs,
                                                 files=files), files, on_done)
        batch.summary.contents = {job.key: str(job.content) for job in jobs}
        try:
            _paint(batch, jobs, settings, weights_path, init_previous, first_iterations, overwrite, client, on_start,
                   on_iteration, interruptible)
        finally:  # a batch stopped by a full disk reports its time too
            batch.summary.seconds = time.perf_counter() - start
    return batch.summary


def check_out_dir(out_dir):
    """An ArtemError where the output folder cannot take a batch's outputs: a file, a folder not
    writable, or (where it does not exist yet) one to be made under a file or a folder not writable.
    Found before any work (a dry run makes no folder), not when the first image is painted."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ArtemError(f"the output folder '{out_dir}' is a file")
    there = next(p for p in (out_dir, *out_dir.absolute().parents) if p.exists())  # the root, at least
    if there == out_dir:
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise ArtemError(f"the output folder '{out_dir}' is not writable")
    elif not there.is_dir() or not os.access(there, os.W_OK | os.X_OK):
        raise ArtemError(f"cannot create the output folder '{out_dir}' ('{there}' is "
                         f"{'not writable' if there.is_dir() else 'a file'})")


def _alone_in(out_dir):
    """``out_dir`` held by this batch while it runs: a second batch there is refused (each would rewrite
    the manifest with its own record, the last one's standing, and paint over the other's outputs)."""
    return io.alone(out_dir, f"another batch is painting into '{out_dir}' now: wait for it to end, or give another "
                             "output folder")


def _paint(batch, jobs, settings, weights_path, init_previous, first_iterations, overwrite, client, on_start,
           on_iteration, interruptible):
    """The jobs not done yet (a frame after one painted now, too) painted, here or on ``client``."""
    pending, finished, done_before, output_sha256 = [], set(), False, None
    for index, job in enumerate(jobs):
        # a frame starts from the result of the one before it where that one is done (and its clip's), else from its content
        begins = output_sha256 if init_previous and done_before and not _starts_a_clip(batch, jobs[index - 1], job) else None
        output_sha256 = _sha256_or_none(batch.out_dir / job.output) if batch.manifest.recorded_done(job) else None
        done_before = batch.manifest.finished(job, batch.content_sha256(job), output_sha256, begins)
        if done_before:
            if not (init_previous and pending):
                batch.summary.skipped.append(job.key)
                continue
            finished.add(job.key)  # a later frame: skipped in turn unless a frame before it is painted in this run
        pending.append((index, job))
    batch.manifest.save_changes()
    _check_outputs(batch.out_dir, [job for _, job in pending], batch.manifest.made, overwrite)
    if client is None:
        _run_here(batch, jobs, pending, finished, settings, weights_path, init_previous, first_iterations, on_start,
                  on_iteration, interruptible)
    else:
        _run_on_cluster(batch, client, len(jobs), pending, settings, weights_path, on_start, interruptible)


def _check_outputs(out_dir, pending, made, overwrite):
    """Refuse, before any work, outputs that would replace a folder, or a file no batch made here
    (without ``overwrite``); ``check_places`` has refused those that would replace an input."""
    for job in pending:
        target = out_dir / job.output
        if target.is_dir():  # no --overwrite replaces it: found now, not when its image is painted
            raise ArtemError(f"'{target}' is a folder, where the batch would write the result of '{job.content}'; move "
                             "it away, or name the outputs otherwise (--template)")
        if target.exists() and str(job.output) not in made and not overwrite:
            raise ArtemError(f"'{target}' exists and no batch made it; pass --overwrite to replace it")


class _Batch:
    """Where a batch's results go: the outputs, the manifest, the summary, the caller's report."""

    def __init__(self, in_dir, out_dir, manifest, files, on_done):
        """``files``: the style files' SHA-256, as ``style_files`` gives them."""
        self.in_dir, self.out_dir, self.manifest, self.files, self.on_done = in_dir, out_dir, manifest, files, on_done
        self.summary = Summary()
        self.cannot_write = None  # a write that found the disk full, or the manifest's that failed
        self._hashes = {}  # content file: SHA-256, as read

    def content_sha256(self, job):
        """The SHA-256 of ``job``'s content file (None where it cannot be read), read once a batch."""
        if job.content not in self._hashes:
            self._hashes[job.content] = _sha256_or_none(self.in_dir / job.content)
        return self._hashes[job.content]

    def read(self, job, settings):
        """The content image of ``job`` at the output's size, and its alpha channel (or None); an
        ArtemError where it is too small for ``settings`` (said of the image as read: the advice in
        its proportions, not in those of the image made small)."""
        content, alpha = io.read_image(self.in_dir / job.content, "content image")
        shape = check_content(content, settings)
        return preprocess.resize(content, shape), None if alpha is None else preprocess.resize(alpha, shape)

    def done(self, job, result, alpha, **facts):
        """``job``'s result written, and recorded with ``facts`` (a frame's start)."""
        output = self.out_dir / job.output
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise io.write_error(e)(f"cannot create the folder '{output.parent}' ({e.strerror or e})") from None
        self.manifest.claim(job)
        io.write_image(output, result.image, alpha, overwrite=True)
        entry = {"state": "done", "output": str(job.output), "output_sha256": _sha256_or_none(output),
                 "content_sha256": self.content_sha256(job), "shape": list(result.image.shape[1:]),
                 "styles_sha256": [self.files[str(p)] for p in job.styles], "iterations": result.iterations,
                 "seconds": round(result.seconds, 3), "initial_losses": result.initial_losses, "losses": result.losses,
                 **facts}
        self.manifest.mark(job, **entry)
        self.summary.done.append(job.key)
        self.summary.images[job.key] = entry
        return entry

    def failed(self, job, error):
        """``job`` recorded as failed with ``error`` (an ArtemError). Where that is a full disk (NoSpace),
        or the manifest cannot record it (full, read-only, failing), ``stop_if_cannot_write`` then ends
        the batch."""
        self.summary.failed[job.key] = str(error)
        entry = {"state": "failed", "error": str(error)}
        if isinstance(error, NoSpace):
            self.cannot_write = error
        try:
            self.manifest.mark(job, **entry)
        except ArtemError as e:  # the manifest, in the same folder
            self.cannot_write = self.cannot_write or e
        return entry

    def stop_if_cannot_write(self):
        """An ArtemError, carrying the summary, once a write found no room on the disk or the manifest
        could not be written: each later image would be painted, minutes each, to fail alike."""
        if self.cannot_write is not None:
            done = len(self.summary.done)
            then = ("free some space and run it again" if isinstance(self.cannot_write, NoSpace) else
                    "run it again once the output folder can be written")
            error = ArtemError(f"{self.cannot_write}; the batch stops here, as every later image would fail alike: "
                               f"{then} ({done} image{'s' * (done != 1)} painted and recorded in this run)")
            error.summary = self.summary
            raise error

    def report(self, job, entry):
        """The caller's ``on_done``, once ``job`` is recorded: what it raises is its own (an ArtemError of
        its own does not make a done image failed)."""
        if self.on_done is not None:
            self.on_done(job, entry)


def _starts_a_clip(batch, before, job, shape=None):
    """Whether the frame ``job`` starts a clip of its own, from its content, rather than from the result
    of the frame ``before`` it: it lies in another folder (--recursive: a folder a clip), or is painted
    at another shape (H, W) than ``before`` was (``shape``: ``job``'s, else as recorded; each as
    recorded where it was done), where that result would be stretched to start it. Shapes a manifest
    of an earlier artem did not record are taken for the same."""
    if before.content.parent != job.content.parent:
        return True
    theirs, mine = batch.manifest.painted_shape(before), shape or batch.manifest.painted_shape(job)
    return None not in (theirs, mine) and theirs != tuple(mine)


def _run_here(batch, jobs, pending, finished, settings, weights_path, init_previous, first_iterations, on_start,
              on_iteration, interruptible):
    """The ``pending`` jobs in this process; those of ``finished`` (frames done before, behind one that
    was not) are painted only after an earlier frame of their clip was painted here, since each starts
    from the one before it."""
    stylizer = Stylizer(settings, weights_path=weights_path)
    targets = {}
    # init_previous: what the next frame starts from: the previous frame's result (RGB) and its file's
    # SHA-256, or None to read the previous frame's saved result (if any), or "content" after a frame
    # that failed (as in a fresh batch, where it left no result)
    previous = None
    painted = False  # a frame painted in this run: every later one starts elsewhere than it did
    for index, job in pending:
        if interruptible is not None and interruptible.requested:  # a signal came while the last result was written
            batch.summary.interrupted = True
            return
        if job.key in finished and (not painted or _starts_a_clip(batch, jobs[index - 1], job)):
            batch.summary.skipped.append(job.key)
            previous, painted = None, False  # the next frame reads this one's saved result
            continue
        entry = None
        try:
            content, alpha = batch.read(job, settings)
            if job.styles not in targets:
                targets[job.styles] = stylizer.targets([io.read_image(p, "style image")[0] for p in job.styles])
            init, iterations, facts = None, None, {}
            if init_previous:
                if index > 0 and _starts_a_clip(batch, jobs[index - 1], job, content.shape[1:]):
                    previous = "content"
                earlier = batch.out_dir / jobs[index - 1].output if index > 0 else None
                if previous is None and earlier is not None and earlier.is_file():
                    previous = (io.read_image(earlier, "previous result")[0], _sha256_or_none(earlier))
                init, start = previous if isinstance(previous, tuple) else (None, None)
                iterations, facts = (first_iterations if init is None else None), {"start_sha256": start}
        except ArtemError as e:
            entry = batch.failed(job, e)
        if entry is None:
            if on_start is not None:  # the caller's (what it raises is its own), its iterations known: a first frame's ...
                on_start(job, index, len(jobs), iterations or settings.iterations)
            try:
                result = stylizer.stylize(content, targets[job.styles], init_image=init, iterations=iterations,
                                          on_iteration=on_iteration, interruptible=interruptible)
                if result.stop_reason == "interrupted":  # stopped midway: nothing of it is kept
                    batch.summary.interrupted = True
                    return
                entry = batch.done(job, result, alpha, **facts)
                painted = True
                batch.summary.interrupted = result.interrupted  # a Ctrl-C after it ended: recorded, then the batch stops
            except ArtemError as e:
                entry = batch.failed(job, e)
        if entry["state"] == "failed":
            previous = "content"
            painted = False  # the next frame starts from its content, whatever was painted before this one
        if init_previous and entry["state"] == "done":
            # the next frame starts from this one as saved (8 bits, or JPEG's loss): as on a rerun
            output = batch.out_dir / job.output
            try:
                previous = (io.read_image(output, "previous result")[0], entry["output_sha256"])
            except ArtemError:  # written, recorded, and gone or damaged since: the next one starts from its content
                previous = "content"
        batch.report(job, entry)
        batch.stop_if_cannot_write()
        if batch.summary.interrupted:
            return


def check_cluster(scheduler=None, workers=None):
    """``dask_client``'s check of its options, before any work."""
    if scheduler is not None and workers is not None:
        raise ArtemError("give --scheduler (an existing cluster) or --workers (a local one), not both")
    if workers is not None and workers > backend.THREADS:  # each would start, to share the same cores
        cores = f"{backend.THREADS} CPU core{'s' * (backend.THREADS != 1)}"
        raise ArtemError(f"--workers {workers}: this machine gives artem {cores}, and local workers only share them; use "
                         f"at most {backend.THREADS} (more machines: --scheduler)")


# A terminal's Ctrl-C or hangup goes to the whole process group: a local cluster's worker processes
# must leave it to the batch, which stops them (each would print its own traceback). Each ignores SIGINT
# and SIGHUP: from its start where the cluster starts it (an ignored signal stays ignored in a child, and
# Python and asyncio then install no handler of their own), and from its preload where its nanny starts
# it again.
# Nor do they log, at any level: what goes wrong with an image comes back with its task, and what Dask
# says besides reaches the user's terminal as tracebacks (a heartbeat in flight as the batch stops
# logs its lost connection as an error, after the worker has put back its handlers' levels).
WORKER_PRELOAD = ("import logging, signal\nfor number in (signal.SIGINT, signal.SIGHUP):\n    signal.signal(number, signal.SIG_IGN)\n"
                  "logging.disable(logging.CRITICAL)")


@contextlib.contextmanager
def dask_client(scheduler=None, workers=None, interruptible=None):
    """A Dask distributed Client of the scheduler at ``scheduler``, or of a local cluster of
    ``workers`` processes (one thread each, on loopback), or None for neither. A signal recorded in
    ``interruptible`` (as ``run`` takes it) stops the wait for a scheduler (``KeyboardInterrupt``); a
    local cluster starts whole first (its processes then stop with it)."""
    check_cluster(scheduler, workers)
    if scheduler is None and workers is None:
        yield None
        return
    with contextlib.ExitStack() as stack:
        with terminal_signals_ignored() if workers is not None else contextlib.nullcontext():
            try:
                from distributed import Client, LocalCluster
            except ImportError:
                raise ArtemError("--scheduler and --workers need Dask: pip install -e '.[cluster]' in artem's checkout") from None
            try:  # only the connection: errors of the batch itself are its own
                if scheduler is not None:
                    client = _waiting(interruptible, lambda: stack.enter_context(Client(scheduler, timeout="20s")))
                else:
                    # silence_logs: Dask's own messages here (tasks cancelled by Ctrl-C, workers killed after
                    # it) are not the user's business: what fails, fails a task. Its HTTP server on a free port of
                    # loopback (without an address it takes 8787 and warns where another cluster holds it)
                    cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                               host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                                               silence_logs=logging.CRITICAL, preload=[WORKER_PRELOAD]))
                    client = stack.enter_context(Client(cluster))
            except (OSError, ValueError) as e:  # no scheduler at that address, or no such address
                raise ArtemError(f"the Dask cluster{f' at {scheduler!r}' if scheduler else ''}: {e}") from None
        try:
            yield client
        except OSError as e:  # the cluster went away (artem's own I/O errors are ArtemErrors)
            raise ArtemError(f"the Dask cluster: {e}") from None


def _waiting(interruptible, call):
    """``call()``, which only waits on others (nothing of this process half done there), stopped by a
    signal that ``interruptible`` records meanwhile, or before."""
    if interruptible is None:
        return call()
    interruptible.now = True  # set first: a signal that came before is seen below, none is missed
    try:
        interruptible.check()
        return call()
    finally:
        interruptible.now = False


def paint(content, styles_sha256, styles, settings, weights_path, fingerprint_):
    """A Dask task: ``content`` (RGB at the output's size) painted after ``styles`` (RGB arrays of
    the files whose SHA-256 are ``styles_sha256``) on the worker that runs it. Each worker thread
    keeps the Stylizer of its last batch (``fingerprint_``: the settings and the networks' files by
    their contents) and the targets of each style set it met in that batch, for its next tasks: a
    network or a style file changed under the same name is never painted with from memory, and a
    worker serving many batches (``--scheduler``) keeps one batch's. Returns the ``Result``; the
    client writes the file."""
    from distributed import get_worker

    worker = get_worker()
    if not hasattr(worker, "artem_stylizers"):
        worker.artem_stylizers = {}  # thread: (fingerprint, Stylizer, {styles' SHA-256: targets})
    thread = threading.get_ident()
    if worker.artem_stylizers.get(thread, (None,))[0] != fingerprint_:
        worker.artem_stylizers[thread] = (fingerprint_, Stylizer(settings, weights_path=weights_path), {})
    _, stylizer, targets = worker.artem_stylizers[thread]
    if styles_sha256 not in targets:
        targets[styles_sha256] = stylizer.targets(styles)
    return stylizer.stylize(content, targets[styles_sha256])


def _check_shared_memory(client, settings, shapes, style_shapes=()):
    """``check_workers_memory`` for the workers of a local cluster (``--workers``); not for a cluster
    elsewhere (``--scheduler``)."""
    if getattr(client, "cluster", None) is not None:
        check_workers_memory(sum(client.nthreads().values()), settings, shapes, style_shapes)  # a task a thread


def check_workers_memory(workers, settings, shapes, style_shapes=()):
    """Local workers share this machine's memory, and each checks only its own image against what is
    free as it starts; so, before any is painted, the largest images (``shapes``, after the largest
    style pass, ``style_shapes``), one a worker, must fit here at once. Not on a GPU, which the
    workers would see and this process does not."""
    if settings.device != "cpu" or not shapes:
        return
    where, have = host_memory(shared=True) or (None, None)  # not ulimit -v: each worker has its own
    if have is None:
        return
    # an image that cannot fit alone fails on its own, as without workers
    fits = sorted((need for need in (estimate_memory(s, settings, style_shapes) for s in shapes) if need <= have),
                  reverse=True)
    need = sum(fits[:workers])
    if workers > 1 and len(fits) > 1 and need > have:
        raise ArtemError(f"{min(workers, len(fits))} workers painting at once need about {need / 2**30:.1f} GiB of memory "
                         f"but {have / 2**30:.1f} GiB are {where} here; use fewer --workers or a smaller --size")


def _run_on_cluster(batch, client, total, pending, settings, weights_path, on_start, interruptible=None):
    """One task per image; a task lost with its worker is run again elsewhere by the scheduler, and
    each result is written here, once, as it arrives. A signal (``interruptible``, as ``_run_here``
    takes it) stops the batch while it waits, or after the result it is writing; the summary says what
    was done."""
    from .api import Interruptible

    interruptible = interruptible or Interruptible()
    try:
        _submit_and_collect(batch, client, total, pending, settings, weights_path, on_start, interruptible)
    except KeyboardInterrupt:
        batch.summary.interrupted = True


def _task_result(future):
    """A task's result, or an ArtemError that says why there is none."""
    try:
        return future.result()
    except ArtemError:
        raise
    except Exception as e:  # the task died more often than the scheduler allows, or worse
        raise ArtemError(f"{type(e).__name__}: {e}") from None


def _submit_and_collect(batch, client, total, pending, settings, weights_path, on_start, interruptible):
    from distributed import as_completed

    from .api import style_shapes

    styles, readable, shapes = {}, [], []  # shapes: of every style image as the runs take it
    for index, job in pending:
        interruptible.check()  # between two images read
        try:
            content, alpha = batch.read(job, settings)
            if job.styles not in styles:
                arrays = [io.read_image(p, "style image")[0] for p in job.styles]
                sized = style_shapes(arrays, settings)
                styles[job.styles] = client.scatter([preprocess.resize(a, s) for a, s in zip(arrays, sized)],
                                                    broadcast=True)
                shapes += sized
        except ArtemError as e:
            batch.report(job, batch.failed(job, e))
            batch.stop_if_cannot_write()
            continue
        readable.append((index, job, content, alpha))
    _check_shared_memory(client, settings, [content.shape[1:] for _, _, content, _ in readable], shapes)
    futures = {}
    try:
        for index, job, content, alpha in readable:
            interruptible.check()  # between two images sent
            if on_start is not None:
                on_start(job, index, total, settings.iterations)
            future = client.submit(paint, content, tuple(batch.files[str(p)] for p in job.styles), styles[job.styles],
                                   settings, weights_path, batch.manifest.data["fingerprint"], pure=False,
                                   key=f"artem-{index}-{job.key}")
            futures[future] = (job, alpha)
        interruptible.now = True  # while this process only waits, a signal stops it there (set first: none is missed)
        interruptible.check()  # one that came while the last image was sent
        for count, future in enumerate(as_completed(futures), start=1):
            interruptible.now = False  # what came is recorded whole; a signal meanwhile stops the batch after it
            job, alpha = futures[future]
            try:
                entry = batch.done(job, _task_result(future), alpha)
            except ArtemError as e:
                entry = batch.failed(job, e)
            batch.report(job, entry)
            batch.stop_if_cannot_write()
            if count < len(futures):  # after the last, every image is done: a signal then only sets the status
                interruptible.now = True
                interruptible.check()
    finally:  # every image is done, or the batch stops: a signal as the cluster closes does not undo that
        interruptible.now = False
        client.cancel(list(futures))
