"""The Python API: ``stylize`` on arrays, ``stylize_file`` on files (what ``artem stylize`` calls).

    from artem_cli import Settings, stylize_file
    stylize_file("photo.jpg", ["starry_night.jpg"], "out.png", Settings(size=512))

The data flow is the module layout: io (files) -> preprocess -> vgg (forward, taps) -> losses ->
vgg (backward) -> optim -> preprocess -> io.
"""
import contextlib
import copy
import dataclasses
import math
import numbers
import os
import re
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from . import io, preprocess, weights
from .backend import (DEVICES, CudaGraph, array_module, array_module_for, available_memory, device_vector,
                      host_memory, read, to_host)
from .errors import ArtemError
from .losses import content_loss, gram, style_loss, tv_loss, within_range
from .optim import LBFGS, Adam
from .vgg import CONV_LAYERS, CONV_NAMES, LAYER_NAMES, MODES, VGG16, check_layer_names, min_side, untrained_binary

DEFAULT_STYLE_LAYERS = (("relu1_1", 1.0), ("relu2_1", 1.0), ("relu3_1", 1.0), ("relu4_1", 1.0), ("relu5_1", 1.0))
MIN_SIZE, MAX_SIZE = 16, 8192  # --size, the longest side
MAX_STYLE_SCALE = 4
OPTIMIZER_ONLY = (("lr", "adam"), ("history", "lbfgs"))  # options of one optimizer: with the other, ignored


@dataclasses.dataclass
class Settings:
    """Everything that shapes a stylization; the defaults give a good result without tuning."""

    size: int = 512  # longest side of the output, in pixels
    iterations: int = 500
    optimizer: str = "lbfgs"  # or "adam"
    lr: float = 10.0  # Adam's learning rate, in 0..255 pixel levels per step
    history: int = 100  # L-BFGS correction pairs
    content_weight: float = 5.0
    style_weight: float = 100.0
    tv_weight: float = 1.0
    content_layers: tuple = (("relu4_2", 1.0),)  # (layer, weight) pairs
    style_layers: tuple = DEFAULT_STYLE_LAYERS
    style_blend: tuple = None  # one weight per style image; None: equal shares
    style_scale: float = 1.0  # style images are resized to size * style_scale (longest side)
    init: str = "content"  # "content", "random", or an image file
    original_colors: bool = False  # keep the content's colours (luminance transfer after)
    pooling: str = "max"  # or "avg"
    mode: str = "fp32"  # or "bwn" (binary weights) or "xnor" (binary weights and inputs)
    binary_weights: str = "trained"  # bwn, xnor: "trained" (weights/MODE.npz, made by `artem distill`),
    # "untrained" (XNOR-Net's binarization of the fp32 weights), or a file made by `artem distill`
    binary_from: str = None  # bwn, xnor: the first binary convolution, the ones before fp32
    # (default: the trained file's first, or conv1_2 untrained)
    binary_backward: str = "fp32"  # bwn, xnor: "fp16" computes the gradients through the ±1 weights in float16
    # (exact ±1; on a GPU on tensor cores): the image gradient about 1e-4 away from fp32's
    calibrate: bool = False  # non-fp32 modes: give each layer's term the weight it has in fp32 (by the fp32
    # score: worse for the fully binary untrained networks, better content for xnor from conv4_2; BENCHMARKS.md §4c)
    seed: int = 0
    device: str = "cpu"  # or "cuda": an NVIDIA GPU through CuPy (every mode)
    cuda_graph: bool = False  # cuda: each evaluation of the objective replays one recorded CUDA graph
    # (not yet timed on a GPU: `artem benchmark --end-to-end --device cuda` times it beside the default)
    tf32: bool = False  # cuda: every float convolution one matrix product on the im2col copy, and every float32
    # product of an evaluation (these, the Gram matrices, an XNOR layer's tap sums) on tensor cores in TF32 (operands
    # rounded to 10 bits of mantissa, sums in float32); the targets stay float32's. Not yet timed on a GPU
    # (`artem benchmark --end-to-end --device cuda` times it beside the default)

    def validate(self, n_styles=None):
        """An ArtemError that says what is wrong where a field is of the wrong type, out of its range,
        or of no use with the others (``n_styles``: the style images, where known)."""
        _check_types(self)
        if not MIN_SIZE <= self.size <= MAX_SIZE:
            raise ArtemError(f"size must be between {MIN_SIZE} and {MAX_SIZE} pixels, not {_shown(self.size)}")
        if self.iterations < 1:
            raise ArtemError(f"iterations must be at least 1, not {_shown(self.iterations)}")
        if not 0 <= self.seed < 2**63:
            raise ArtemError(f"seed must be a whole number from 0 to 2^63 - 1, not {_shown(self.seed)}")
        if self.optimizer not in ("lbfgs", "adam"):
            raise ArtemError(f"optimizer must be 'lbfgs' or 'adam', not {self.optimizer!r}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(self, name)
            if not (finite(value) and value >= 0):
                raise ArtemError(f"{name.replace('_', '-')} must be a finite number >= 0, not {_shown(value)}")
        if not (finite(self.lr) and self.lr > 0):
            raise ArtemError(f"the learning rate must be a positive number, not {_shown(self.lr)}")
        if self.history < 1:
            raise ArtemError(f"history (L-BFGS's correction pairs) must be at least 1, not {_shown(self.history)}")
        for name, optimizer in OPTIMIZER_ONLY:  # it would be ignored
            if self.optimizer != optimizer and getattr(self, name) != getattr(Settings, name):
                raise ArtemError(f"{name} goes with optimizer {optimizer}, not {self.optimizer}")
        if not (finite(self.style_scale) and 0 < self.style_scale <= MAX_STYLE_SCALE):
            raise ArtemError(f"style-scale must be in (0, {MAX_STYLE_SCALE}], not {_shown(self.style_scale)}")
        for label, layers in (("content", self.content_layers), ("style", self.style_layers)):
            if not layers:
                raise ArtemError(f"at least one {label} layer is needed")
            check_layer_names([name for name, _ in layers])
            twice = sorted({name for name, _ in layers if [n for n, _ in layers].count(name) > 1})
            if twice:
                raise ArtemError(f"{label} layer {', '.join(twice)} is named more than once; give each layer once, "
                                 "with its weight (relu1_1:2)")
            if any(not (finite(w) and w >= 0) for _, w in layers):
                raise ArtemError(f"{label} layer weights must be finite numbers >= 0")
        if not any((self.content_weight * sum(w for _, w in self.content_layers),
                    self.style_weight * sum(w for _, w in self.style_layers), self.tv_weight)):
            raise ArtemError("every loss term weighs 0 (content-weight, style-weight, tv-weight and the layers' weights): "
                             "there is nothing to optimize or score")
        if self.style_blend is not None:
            if n_styles is not None and len(self.style_blend) != n_styles:
                raise ArtemError(f"style-blend has {len(self.style_blend)} weights for {n_styles} style images")
            if any(not (finite(w) and w >= 0) for w in self.style_blend) or sum(self.style_blend) <= 0:
                raise ArtemError(f"style-blend weights must be finite numbers >= 0, not all zero, not {list(self.style_blend)}")
        if self.pooling not in ("max", "avg"):
            raise ArtemError(f"pooling must be 'max' or 'avg', not {self.pooling!r}")
        if self.mode not in MODES:
            raise ArtemError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.device not in DEVICES:
            raise ArtemError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.binary_from is not None and self.binary_from not in CONV_NAMES[1:]:
            raise ArtemError(f"binary-from must be one of {', '.join(CONV_NAMES[1:])}, not {self.binary_from!r}")
        if self.binary_backward not in ("fp32", "fp16"):
            raise ArtemError(f"binary-backward must be fp32 or fp16, not {self.binary_backward!r}")
        if self.mode not in ("bwn", "xnor"):  # they would be ignored
            given = [name.replace("_", "-") for name in ("binary_weights", "binary_from", "binary_backward")
                     if getattr(self, name) != getattr(Settings, name)]
            if given:
                raise ArtemError(f"{', '.join(given)} only go{'es' * (len(given) == 1)} with mode bwn or xnor, not {self.mode}")
        first = self.binary_from or ("conv1_2" if self.binary_weights == "untrained" else None)  # else the file's
        if self.mode in ("bwn", "xnor") and first is not None:
            deepest, last = self.deepest_conv()
            if CONV_NAMES.index(first) > CONV_NAMES.index(last):
                raise ArtemError(f"the first binary convolution, {first}, lies past the deepest layer tapped ({deepest}): "
                                 f"the network would have none; {_earlier_or_deeper(last, 'give binary-from')}")
        if self.calibrate and self.mode == "fp32":
            raise ArtemError("calibrate weighs a binarized network's layers as fp32 weighs them: it goes with mode bwn, "
                             "xnor or random, not fp32")
        if self.init == "previous":
            raise ArtemError("--init previous is for frames: artem batch FOLDER --init previous")
        if self.cuda_graph and self.device != "cuda":
            raise ArtemError("a CUDA graph needs device cuda")
        if self.tf32 and self.device != "cuda":
            raise ArtemError("TF32 needs device cuda (a GPU's tensor cores)")

    def deepest_conv(self):
        """(the deepest layer tapped, the last convolution up to it): a binary network whose first binary
        convolution lies past that one would run as fp32."""
        deepest = max(self.taps(), key=LAYER_NAMES.index)
        return deepest, [n for n in LAYER_NAMES[: LAYER_NAMES.index(deepest) + 1] if n.startswith("conv")][-1]

    def taps(self):
        """The names of the layers tapped, content's then style's."""
        return [name for name, _ in (*self.content_layers, *self.style_layers)]

    def blend(self, n_styles):
        """Each style image's share of the style loss, the shares summing to 1 (weights scaled by the
        largest first: 1e308 twice would overflow the sum, and every share would be 0)."""
        top = max(self.style_blend or (1.0,))
        shares = [w / top for w in self.style_blend or (1.0,) * n_styles]
        return [w / sum(shares) for w in shares]


def finite(v):
    """Whether the number ``v`` is finite as a float (an int too large for one, 10**400, is not)."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def given(settings):
    """``settings``, or the defaults for None, as a copy whose NumPy numbers are Python's (a float32
    weight, equal to its float, made its term float32 arithmetic: other bits); an ArtemError where it
    is no ``Settings``."""
    if settings is None:
        return Settings()
    if not isinstance(settings, Settings):
        raise ArtemError(f"settings must be an artem_cli.Settings (Settings(size=256, ...)), not {type(settings).__name__}")
    return dataclasses.replace(settings, **{field.name: _plain(getattr(settings, field.name))
                                            for field in dataclasses.fields(settings)})


def _plain(value):
    """``value`` with its NumPy scalars as Python's numbers (in lists and tuples too: layers' weights)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return (list if isinstance(value, list) else tuple)(_plain(v) for v in value)
    return value


def whole(v):
    """Whether ``v`` is a whole number (not a bool)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _check_types(settings):
    """An ArtemError where a field of ``settings`` is not of its type (before any value is compared)."""
    def real(v):
        return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))

    kinds = {"size": (whole, "a whole number"), "iterations": (whole, "a whole number"),
             "history": (whole, "a whole number"), "seed": (whole, "a whole number"),
             "lr": (real, "a number"), "content_weight": (real, "a number"), "style_weight": (real, "a number"),
             "tv_weight": (real, "a number"), "style_scale": (real, "a number"),
             "original_colors": (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
             "calibrate": (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
             "cuda_graph": (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
             "tf32": (lambda v: isinstance(v, (bool, np.bool_)), "True or False"),
             "binary_from": (lambda v: v is None or isinstance(v, str), "None or a layer's name"),
             "style_blend": (lambda v: v is None or (isinstance(v, (list, tuple)) and all(real(w) for w in v)),
                             "None or a list of numbers, one per style image")}
    kinds.update({name: (lambda v: isinstance(v, str), "a string")
                  for name in ("optimizer", "pooling", "mode", "binary_backward", "device")})
    kinds.update({name: (lambda v: isinstance(v, (str, os.PathLike)), "a string or a path")
                  for name in ("init", "binary_weights")})
    for name, (fits, kind) in kinds.items():
        value = getattr(settings, name)
        if not fits(value):
            raise ArtemError(f"{name.replace('_', '-')} must be {kind}, not {_shown(value)}")
    for name in ("content_layers", "style_layers"):
        layers = getattr(settings, name)
        if not (isinstance(layers, (list, tuple)) and all(isinstance(pair, (list, tuple)) and len(pair) == 2
                                                          and isinstance(pair[0], str) and real(pair[1]) for pair in layers)):
            raise ArtemError(f"{name.replace('_', '-')} must be (layer, weight) pairs, such as (('relu4_2', 1.0),), "
                             f"not {_shown(layers)}")


def _shown(value):
    """``value`` as an error line shows it: its repr where short and on one line, else its type (an
    array's repr is many lines), or a whole number's size in digits (10**400 was 401 of them; more
    than 4300 Python will not write)."""
    if whole(value) and abs(int(value)).bit_length() > 256:
        return f"a {'negative ' * (value < 0)}number of about {int(abs(int(value)).bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= 80 and "\n" not in text else f"a value of type {type(value).__name__}"


class Interruptible:
    """How a signal handler stops artem's work without breaking what runs when the signal comes.

    A handler records every signal that asks to stop (``requested``); the work stops itself at its
    next safe point (``check``): a stylization before each evaluation of its objective (a run
    stopped there returns the image reached so far, with the iterations it ended: none, and the
    starting image, before the first ends; ``stylize_file`` then writes nothing), a
    batch between images, distill and visualize before each step, compare before its reports. A
    ``KeyboardInterrupt`` raised by the handler wherever the program happens to be could land in an
    import, or in numba's compiler as it compiles a kernel at its first call, which swallow it (the
    stop is lost) or die of it. A handler raises one itself only while ``now`` is True: set by work
    that waits on others (a batch on a cluster, waiting for its results), where nothing of this
    process is half done, and set False again before it goes on.

    One ``Interruptible`` serves a whole command: a stylization that starts after a signal came
    stops at once, with nothing made."""

    def __init__(self):
        self.now = False
        self.requested = False

    def check(self):
        """Stop (``KeyboardInterrupt``) where a signal has asked to."""
        if self.requested:
            raise KeyboardInterrupt

    def before(self, function):
        """``function``, checking for a signal before each call."""

        def checked(*args):
            self.check()
            return function(*args)

        return checked


@dataclasses.dataclass(eq=False)  # equal only to itself: == of its image would be an array
class Result:
    image: np.ndarray  # RGB (3, H, W) float32 in 0..1, on the host
    iterations: int
    evaluations: int
    seconds: float
    stop_reason: str  # why the optimization ended: "interrupted" where a Ctrl-C or a signal stopped it
    interrupted: bool  # one came during the call (after the optimization: the result is whole)
    initial_losses: dict  # total, content, style, tv at the start
    losses: dict  # the same of the final image as saved in 8 bits
    history: list  # total loss of the image (as initial_losses counts it) after each iteration

    def __repr__(self):  # the image and the history by their sizes, not their numbers
        return (f"Result(image=<{'x'.join(map(str, self.image.shape))} {self.image.dtype}>, iterations={self.iterations}, "
                f"evaluations={self.evaluations}, seconds={self.seconds:.3f}, stop_reason={self.stop_reason!r}, "
                f"interrupted={self.interrupted}, losses={self.losses}, history=<{len(self.history)} values>)")


PARTS = ("content", "style", "tv")  # the objective's terms
# L-BFGS's steps where its line search stalls: the largest pixel change, in 8-bit levels (the unit
# of VGG space). A binarized network's loss jumps as activations flip, and from the photo the first
# line search can stall in steps that move no pixel by a ten-thousandth of a level (BENCHMARKS.md §4c).
STALL_STEPS = (8, 4, 2, 1, 0.5)


class Loss(float):
    """The value an optimizer minimizes at a point (a float), and ``parts``, the terms of the image
    there as it will be saved (content, style, tv; their sum is the image's total loss, without the
    penalty of ``losses.within_range``): the optimizers keep each value with its point, so the terms
    of the point an iteration ends at stay with it (the last evaluated may be another: a line search
    may fall back on an earlier trial)."""

    def __new__(cls, value, parts):
        loss = super().__new__(cls, value)
        loss.parts = parts
        return loss

    def __getnewargs__(self):  # pickled and copied with its parts
        return float(self), self.parts


class Objective:
    """Weighted content + style + TV loss of an image in VGG space, and its gradient.

    The losses are those of the image as it will be saved (``losses.within_range``): an unclipped
    optimum differs badly from its saved file (style loss 0.2M in the buffer, 3.4M once clipped, on
    coffee + Starry Night at 256 px).
    """

    def __init__(self, net, settings, content_targets, style_targets, low, high):
        self.net, self.settings = net, settings
        self.content_targets, self.style_targets = content_targets, style_targets
        self.low, self.high = low, high  # per-channel bounds of the valid image in VGG space
        self.taps = sorted(set(content_targets) | set(style_targets), key=LAYER_NAMES.index)
        self._parts = {}
        self.initial = None  # the terms at the first point evaluated (the optimizer's start)
        # settings.cuda_graph: each evaluation replays one CUDA graph of the whole (BENCHMARKS.md §6)
        self._graph = CudaGraph(self._evaluate, tf32=settings.tf32 or None) if settings.cuda_graph else None
        self._cublas = None  # settings.tf32: the handle that takes the products of an evaluation not replayed, in TF32
        if settings.tf32:
            from . import gpu_gemm

            self._cublas = gpu_gemm.Cublas()

    def __call__(self, x):
        """The ``Loss`` of ``x`` as it will be saved, and its gradient."""
        value, grad, _ = self.probed(x, lambda grad: [])
        return value, grad

    def probed(self, x, probes):
        """``(loss, grad, readings)``, as the optimizers ask (``optim``): what ``__call__`` gives, and
        the floats of ``probes(grad)``, all from a GPU in one transfer after the evaluation is queued."""
        if self._graph is not None:
            values, grad = self._graph(x)
            grad = grad.copy()  # the graph's own buffer, which its next replay overwrites
        else:
            with self._products():
                values, grad = self._evaluate(x)
        values = read([values, *probes(grad)])
        return self._record(values[: 1 + len(PARTS)]), grad, values[1 + len(PARTS):]

    def loss(self, x):
        """Content + style + TV of ``x`` as it is (a ``Loss``, with no penalty), and the gradient."""
        with self._products():
            value, grad = self._terms(x)
        return self._record(read([value, *(self._parts[n] for n in PARTS)])), grad

    def _products(self):
        """Within, the matrix products of an evaluation are those ``settings.tf32`` asks for."""
        if self._cublas is None:
            return contextlib.nullcontext()
        from . import gpu_gemm

        return gpu_gemm.tf32_products(self._cublas)

    def _evaluate(self, x):
        """The value and the three terms as one float64 vector on x's device, and the gradient (what
        a CUDA graph records)."""
        value, grad = within_range(self._terms, x, self.low, self.high)
        return device_vector(array_module(x), [value, *(self._parts[n] for n in PARTS)]), grad

    def _record(self, values):
        """The ``Loss`` of ``values`` (total, then the ``PARTS``); at the first point, its terms into
        ``initial``."""
        loss = Loss(values[0], dict(zip(PARTS, values[1:])))
        if self.initial is None:
            self.initial = {"total": sum(loss.parts.values()), **loss.parts}
        return loss

    def _terms(self, x):
        """Content + style + TV and the gradient, the values as ``losses`` gives them (on a GPU, left
        there); ``_parts`` keeps the three terms."""
        s = self.settings
        features = self.net.forward(x, self.taps)
        grads, content, style = {}, 0.0, 0.0

        def add(layer, g):
            grads[layer] = g if layer not in grads else grads[layer] + g

        for layer, (weight, target) in self.content_targets.items():
            value, g = content_loss(features[layer], target, s.content_weight * weight)
            content += value
            add(layer, g)
        for layer, (weight, target) in self.style_targets.items():
            value, g = style_loss(features[layer], target, s.style_weight * weight)
            style += value
            add(layer, g)
        image_grad = self.net.backward(grads)
        tv, tv_grad = tv_loss(x, s.tv_weight)
        image_grad += tv_grad
        self._parts = dict(zip(PARTS, (content, style, tv)))
        return content + style + tv, image_grad


WEIGHTS_MEMORY = 300_000_000  # bytes of the weights and their prepared forms


def _network_memory(shape, deepest):
    """Bytes of a pass at (H, W) down to layer ``deepest``: the activations its layers keep (each
    convolution's output and its ReLU's), and the largest convolution's temporaries (Winograd's
    tiles, 2.25 C and 2.25 O, and the output)."""
    h, w = shape
    activations, largest = 0, 0
    for name in LAYER_NAMES[: LAYER_NAMES.index(deepest) + 1]:
        if name.startswith("pool"):
            h, w = h // 2, w // 2
        elif name.startswith("conv"):
            cin, cout = next((i, o) for n, i, o in CONV_LAYERS if n == name)
            activations += 2 * cout * h * w * 4
            largest = max(largest, 3 * (cin + cout) * (h + 4) * (w + 4) * 4)
    return activations, largest


def estimate_memory(shape, settings, style_shapes=()):
    """Bytes one run needs at (H, W), the most of two moments: a style image's forward pass
    (``style_shapes``, each at its run's size: 1.65 times its activations, what the process's
    address space grows by, which ``ulimit -v`` counts; measured at 1024x640, where they are 1.30
    GiB: 2.10-2.15 GiB of address space, 1.63-1.69 GiB resident, 1.57 GiB allocated), and the
    optimization, which reuses what that pass left (activations kept for backward and their
    gradients, the largest convolution's temporaries, and the optimizer's state: L-BFGS keeps
    2 x (pairs + 1) images, the pairs as many as the history or the iterations, and one offered,
    and two (pairs + 1)² matrices of their products on the host, copied in each recursion: 32 (pairs +
    1)² bytes, counted wherever the run goes, a GPU's memory included).
    ``shape`` None: the style images' passes alone (what computing the targets needs)."""
    deepest_style = max((name for name, _ in settings.style_layers), key=LAYER_NAMES.index)
    styles = [1.65 * _network_memory(s, deepest_style)[0] for s in style_shapes]
    run = 0
    if shape is not None:
        activations, largest = _network_memory(shape, max(settings.taps(), key=LAYER_NAMES.index))
        image = 3 * shape[0] * shape[1] * 4
        pairs = max(1, min(settings.history, settings.iterations))
        optimizer = (2 * (pairs + 1) + 4) * image + 32 * (pairs + 1) ** 2 if settings.optimizer == "lbfgs" else 6 * image
        run = 1.5 * activations + 2 * largest + optimizer
    return int(max([run, *styles]) + WEIGHTS_MEMORY)


def check_memory(shape, settings, xp, loaded=False, style_shapes=()):
    """Refuse a run at ``shape`` (its style images at ``style_shapes``; ``shape`` None: those alone)
    that would not fit in the memory free now; ``loaded``: the network is in memory already (its
    weights counted as used, not needed)."""
    need = estimate_memory(shape, settings, style_shapes) - (WEIGHTS_MEMORY if loaded else 0)
    where, have = ("free on the GPU", available_memory(xp)) if xp is not np else (host_memory() or (None, None))
    if have is None or need <= have:
        return
    run = 0 if shape is None else estimate_memory(shape, settings) - (WEIGHTS_MEMORY if loaded else 0)
    what = "the style images' passes need" if need > run else f"a {shape[1]}x{shape[0]} run needs"
    advice = "--size or --style-scale" if need > run else "--size (or --history for L-BFGS)"
    raise ArtemError(f"{what} about {need / 2**30:.1f} GiB more memory but {have / 2**30:.1f} GiB are {where}; "
                     f"use a smaller {advice}")


def style_shapes(styles, settings):
    """The shapes (H, W) that the style images ``styles`` (arrays (3, H, W)) take in a run of ``settings``."""
    return [_style_shape(style, settings.size, settings.style_scale) for style in styles]


def _style_shape(style, size, scale):
    return preprocess.scaled_shape(style.shape, _style_longest(size, scale))


def _style_longest(size, scale):
    return max(16, round(size * scale))


def _check_depth(image_shape, longest, settings, what, knob=None, px_per_unit=1, limit=MAX_SIZE, taps=None,
                 styles_at=None):
    """The shape (H, W) of an image of ``image_shape`` at ``longest`` px on its longest side, where
    each 2x2 pooling halves it: the deepest layer tapped (of ``taps``, by default every layer
    ``settings`` taps) needs 2^pools px on each side (``vgg.min_side``). If it is
    short, the error says what value of the option ``knob`` (``px_per_unit`` px of the longest side
    each) would do, or, past ``limit`` px, that no value would; with ``styles_at`` (the style images'
    longest side now, for a --size that scales them too), the --style-scale that keeps them so."""
    shape = preprocess.scaled_shape(image_shape, longest)
    deepest = max(taps or settings.taps(), key=LAYER_NAMES.index)
    need = min_side(deepest)
    if min(shape) >= need:
        return shape
    message = (f"the {what} at {shape[1]}x{shape[0]} px is too small for {deepest}, which needs at least {need} px "
               "on each side")
    if knob is None:
        raise ArtemError(message)
    h, w = image_shape[-2:]
    reach = math.ceil(need * max(h, w) / min(h, w))  # a longest side at which the shortest has `need` px,
    while min(preprocess.scaled_shape(image_shape, reach - 1)) >= need:  # the least, rounding as scaled_shape
        reach -= 1
    message += f"; at its proportions ({w}x{h}) that takes {reach} px on its longest side"
    if reach > limit:
        raise ArtemError(f"{message}, more than {knob} can give ({limit} px): crop it, or tap no layer as deep as {deepest}")
    value = reach
    if px_per_unit != 1:  # the least value in hundredths whose longest side, rounded, is `reach`
        cents = math.ceil(100 * (reach - 0.5) / px_per_unit)
        while round(px_per_unit * (cents / 100)) < reach:
            cents += 1
        value = cents / 100
    advice = f"use {knob} {value:g} or more"
    if styles_at is not None:  # 2 significant digits, rounded down: the style images no larger than now
        scale = styles_at / value
        digits = 1 - math.floor(math.log10(scale))
        advice += (f" (with --style-scale {math.floor(scale * 10**digits + 1e-9) / 10**digits:g} to keep the style images "
                   "about their size now)")
    raise ArtemError(f"{message}: {advice}")


def check_style(style, settings):
    """Raise ArtemError if ``style`` (RGB (3, H, W)) at the run's style size is too small for the
    deepest layer ``settings`` taps."""
    _check_depth(style.shape, _style_longest(settings.size, settings.style_scale), settings, "style image",
                 "--size × --style-scale", limit=MAX_SIZE * MAX_STYLE_SCALE, taps=[name for name, _ in settings.style_layers])


def stylize(content, styles, settings=None, *, weights_path=None, init_image=None, on_iteration=None,
            interruptible=None):
    """Stylize ``content`` (RGB (3, H, W) floats in 0..1) after ``styles`` (a list of such arrays).

    ``init_image`` (RGB array), when given, is the starting image (where ``settings.init`` names a
    file, it must be given: that file's image; with init "random" it is refused). ``on_iteration(i, value,
    parts, image)`` is called after each iteration, ``image()`` giving the current RGB on the host.
    Ctrl-C (KeyboardInterrupt) stops the optimization and returns what was reached so far, as does
    a signal recorded in ``interruptible`` (an ``Interruptible``), at the next evaluation.
    For many content images after the same styles, a ``Stylizer`` builds the network and the style
    targets once.
    """
    settings = given(settings)
    _check_callbacks(on_iteration, interruptible)
    styles = _style_images(styles)
    settings.validate(len(styles))
    if init_image is not None and settings.init == "random":  # it would be ignored
        raise ArtemError("init 'random' and an init_image are two starting images: give one")
    content = preprocess.rgb_image(content, "content image")
    init_image = _init_image(settings, init_image)
    check_memory(check_content(content, settings), settings, array_module_for(settings.device),  # before any work
                 style_shapes=style_shapes(styles, settings))
    stylizer = Stylizer(settings, weights_path=weights_path)
    return stylizer.stylize(content, stylizer.targets(styles), init_image=init_image, on_iteration=on_iteration,
                            interruptible=interruptible)


def _check_callbacks(on_iteration, interruptible):
    """An ArtemError where ``on_iteration`` is no function or ``interruptible`` no ``Interruptible``."""
    if on_iteration is not None and not callable(on_iteration):
        raise ArtemError(f"on_iteration must be a function (i, value, parts, image), not {type(on_iteration).__name__}")
    if interruptible is not None and not isinstance(interruptible, Interruptible):
        raise ArtemError(f"interruptible must be an artem_cli.api.Interruptible, not {type(interruptible).__name__}")


def _style_images(styles):
    """``styles`` (a list of RGB arrays) checked as ``preprocess.rgb_image`` checks each."""
    if not isinstance(styles, (list, tuple)):
        raise ArtemError(f"the style images must be a list of arrays, not {type(styles).__name__}")
    if not styles:
        raise ArtemError("at least one style image is needed")
    return [preprocess.rgb_image(style, f"style image {i + 1}" if len(styles) > 1 else "style image")
            for i, style in enumerate(styles)]


def _init_image(settings, init_image):
    """``init_image`` checked (None: the run starts as ``settings.init`` says, which must then be
    content or random: a file's image is the caller's to read and give)."""
    if init_image is not None:
        return preprocess.rgb_image(init_image, "init image")
    if settings.init not in ("content", "random"):
        raise ArtemError(f"init {settings.init!r} names a file: pass its image as init_image (or use stylize_file)")
    return None


@dataclasses.dataclass
class Targets:
    """What content images are painted towards: the blended Gram matrices of a set of style images
    at each style layer, in the network (``grams``) and, when calibrating, in the fp32 reference;
    ``made_by``: a weak reference to the Stylizer whose network computed them, where one did (they do
    not keep its network alive)."""

    grams: dict
    reference_grams: dict = None
    made_by: object = dataclasses.field(default=None, repr=False, compare=False)


def style_grams(net, settings, styles):
    """{style layer: the Gram matrix of ``styles`` (host RGB arrays, each resized to the run's style
    size) in ``net``, blended by ``settings.style_blend``}."""
    xp = array_module(net.layer("conv1_1").weight)
    style_layers = [name for name, _ in settings.style_layers]
    grams = {name: 0.0 for name in style_layers}
    for share, style in zip(settings.blend(len(styles)), styles):
        shape = _style_shape(style, settings.size, settings.style_scale)
        features = net.forward(preprocess.to_vgg(xp.asarray(preprocess.resize(style, shape))), style_layers)
        grams = {name: grams[name] + share * gram(features[name]) for name in style_layers}
    return grams


def check_content(content, settings, style_scale_advice=True):
    """The shape (H, W) of ``content`` (RGB (3, H, W)) at the run's size; ArtemError if that is too
    small for the deepest layer ``settings`` taps (with the --style-scale that keeps the style images'
    size where ``style_scale_advice``: a command that has the option)."""
    return _check_depth(content.shape, settings.size, settings, "content image", "--size",
                        styles_at=_style_longest(settings.size, settings.style_scale) if style_scale_advice else None)


class _MemoryErrors:
    """Out of memory (CuPy's OutOfMemoryError is a MemoryError too) as one clear ArtemError: "out of
    memory [on the GPU] ``doing``"; not one the caller's callback raised (``_callers``)."""

    def __init__(self, xp, doing):
        self.xp, self.doing = xp, doing

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is not None and issubclass(kind, MemoryError) and not getattr(value, "artem_callers", False):
            where = "" if self.xp is np else " on the GPU"
            raise ArtemError(f"out of memory{where} {self.doing}") from None


def _callers(function, *args):
    """The caller's ``function`` called: a MemoryError it raises is its own (a cache of its own that is
    full), not artem's out of memory with its advice."""
    try:
        return function(*args)
    except MemoryError as e:
        if not hasattr(e, "artem_callers"):  # not artem's own, within (stylize_file's snapshots)
            e.artem_callers = True
        raise


class Stylizer:
    """The network of ``settings``, built once, and what it paints with: the targets of a set of style
    images (``targets``, computed once), then any number of content images (``stylize``). What
    ``artem batch`` runs; ``stylize`` is one Stylizer used once. A Stylizer serves one call at a
    time (its network keeps the state of the pass in progress): a call while another runs, from
    another thread, is an ArtemError (each thread should have its own). It keeps a copy of
    ``settings``, and ``settings`` gives a copy of that: the network is built for them, and changing
    either later changes nothing here (a new Stylizer takes new settings)."""

    def __init__(self, settings=None, *, weights_path=None):
        settings = given(settings)
        settings.validate()
        self._settings = settings = copy.deepcopy(settings)
        self._busy = threading.Lock()
        self.xp = array_module_for(settings.device)  # the array module, chosen here once for the whole run
        with _MemoryErrors(self.xp, "while loading the network"):
            vgg_path = weights.locate(weights_path)
            check_teacher(settings, vgg_path)
            vgg_weights = weights.load(vgg_path, self.xp)
            self.net = network(settings, vgg_weights)
            self.reference = None
            if settings.mode != "fp32" and settings.calibrate:
                self.reference = VGG16(vgg_weights, pooling=settings.pooling)

    @property
    def settings(self):
        return copy.deepcopy(self._settings)

    @contextlib.contextmanager
    def _turn(self):
        if not self._busy.acquire(blocking=False):
            raise ArtemError("this Stylizer is running another call (from another thread, or this call's on_iteration); "
                             "give each thread its own Stylizer")
        try:
            yield
        finally:
            self._busy.release()

    def targets(self, styles):
        """The ``Targets`` of ``styles`` (a list of host RGB arrays (3, H, W) in 0..1)."""
        settings = self._settings
        styles = _style_images(styles)
        settings.validate(len(styles))
        for style in styles:
            check_style(style, settings)
        with self._turn():  # before the memory check: a run in progress holds what it would count
            check_memory(None, settings, self.xp, loaded=True, style_shapes=style_shapes(styles, settings))
            with _MemoryErrors(self.xp, f"in the style images at --size {settings.size} --style-scale "
                                        f"{settings.style_scale:g}; use a smaller --size or --style-scale"):
                reference = None if self.reference is None else style_grams(self.reference, settings, styles)
                return Targets(style_grams(self.net, settings, styles), reference, made_by=weakref.ref(self))

    def stylize(self, content, targets, *, init_image=None, iterations=None, on_iteration=None, interruptible=None):
        """Stylize ``content`` towards ``targets`` (this Stylizer's), as ``artem_cli.stylize`` does.
        ``init_image`` (RGB), when given, is the starting image whatever ``settings.init`` says;
        ``iterations`` (at least 1), when given, replaces ``settings.iterations``."""
        if iterations is not None:
            if not whole(iterations) or iterations < 1:
                raise ArtemError(f"iterations must be a whole number >= 1, not {_shown(iterations)}")
        _check_callbacks(on_iteration, interruptible)
        settings = self._settings if iterations is None else dataclasses.replace(self._settings, iterations=iterations)
        if not isinstance(targets, Targets) or targets.made_by is None or targets.made_by() is not self:
            raise ArtemError("these targets were not computed by this Stylizer; compute them with its targets()")
        content = preprocess.rgb_image(content, "content image")
        init_image = _init_image(settings, init_image)
        shape = check_content(content, settings)
        with self._turn():  # before the memory check: a run in progress holds what it would count
            check_memory(shape, settings, self.xp, loaded=True)
            with _MemoryErrors(self.xp, f"at {shape[1]}x{shape[0]}; use a smaller --size"):
                return self._run(content, targets, shape, init_image, settings.iterations, on_iteration,
                                 interruptible or Interruptible())

    def _run(self, content, targets, shape, init_image, iterations, on_iteration, interruptible):
        xp, settings = self.xp, self._settings
        content_rgb = xp.asarray(preprocess.resize(content, shape))
        content_x = preprocess.to_vgg(content_rgb)
        objective = build_objective(self.net, settings, content_rgb, targets, self.reference)

        rng = np.random.default_rng(settings.seed)
        if init_image is not None:
            x0 = preprocess.to_vgg(xp.asarray(preprocess.resize(init_image, shape)))
        elif settings.init == "content":
            x0 = content_x.copy()
        else:  # random (a file's image is init_image)
            x0 = xp.asarray(rng.standard_normal(content_x.shape, dtype=np.float32) * 16)

        def finish(x):
            rgb = xp.clip(preprocess.from_vgg(x), 0, 1)
            return preprocess.keep_colors(rgb, content_rgb) if settings.original_colors else rgb

        evaluate = interruptible.before(objective.probed)
        if settings.optimizer == "lbfgs":
            optimizer = LBFGS(evaluate, x0, history=settings.history, stall_steps=STALL_STEPS)
        else:
            optimizer = Adam(evaluate, x0, lr=settings.lr, after_step=True)

        # overflow in a run with absurd weights ends in the one clear error of the NaN check, not in warnings
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            start, history, stopped, x = time.perf_counter(), [], False, x0
            try:  # Ctrl-C where nothing handles signals; a signal recorded in ``interruptible``
                for i, (x, loss) in enumerate(optimizer.run(iterations), start=1):
                    history.append(sum(loss.parts.values()))
                    if on_iteration is not None:  # image(): this iteration's, whenever it is called
                        _callers(on_iteration, i, history[-1], dict(loss.parts), lambda x=x: to_host(finish(x)))
            except KeyboardInterrupt:
                stopped = True
        seconds = time.perf_counter() - start

        def result():
            image = to_host(finish(x)).astype(np.float32)
            return image, objective.loss(preprocess.to_vgg(xp.asarray(io.quantize(image))))[0]

        interrupted = stopped
        try:
            image, loss = result()
        except KeyboardInterrupt:  # Ctrl-C after the optimization: the image reached is there, and its losses again
            interrupted = True
            image, loss = result()
        interrupted = interrupted or interruptible.requested  # a signal recorded after the last evaluation
        return Result(
            image=image,
            iterations=len(history),
            evaluations=optimizer.evaluations,
            seconds=seconds,
            stop_reason="interrupted" if stopped else optimizer.stop_reason,
            interrupted=interrupted,
            initial_losses=objective.initial,
            losses={"total": float(loss), **loss.parts},
            history=history,
        )


def _mean_square(a):
    return float((a * a).mean())


def build_objective(net, settings, content_rgb, targets, reference=None):
    """The objective of ``settings`` for a content image (already at the output's size) and the style
    ``targets`` (``Targets``, of the same network).

    With a ``reference`` network (the fp32 one, for binarized modes; ``targets.reference_grams`` then
    its Grams), each layer's weight is scaled so that its term weighs what it weighs in the
    reference: by the ratio of the mean squares of the targets (features for content, Grams for
    style) in the reference and in ``net``. A binarized network's feature scales differ per layer by
    orders of magnitude, so without this the same loss weights would hand one layer the whole
    objective.
    """
    xp = array_module(content_rgb)
    content_layers = [name for name, _ in settings.content_layers]
    content = net.forward(preprocess.to_vgg(content_rgb), content_layers)
    content_weights, style_weights = dict(settings.content_layers), dict(settings.style_layers)
    if reference is not None:
        ref_content = reference.forward(preprocess.to_vgg(content_rgb), content_layers)
        for name in content_weights:
            content_weights[name] *= _mean_square(ref_content[name]) / max(_mean_square(content[name]), 1e-30)
        for name in style_weights:
            style_weights[name] *= (_mean_square(targets.reference_grams[name])
                                    / max(_mean_square(targets.grams[name]), 1e-30))
    return Objective(
        net,
        settings,
        {name: (content_weights[name], content[name]) for name in content_weights},
        {name: (style_weights[name], targets.grams[name]) for name in style_weights},
        *preprocess.valid_range(xp),
    )


def split_spec(spec):
    """``(mode, weights, layer)`` of a network named ``MODE[:WEIGHTS][@LAYER]``, '' for a part left
    out. A file's path may hold '@' and ':': the text after the last '@' is the layer only where it
    is named as layers are, such as conv3_1 (``bwn:runs@2/net.npz``, ``bwn:run@final`` are files)."""
    mode, _, rest = spec.partition(":")
    head, at, layer = (rest or mode).rpartition("@")
    if not at or not re.fullmatch(r"[a-z]+\d+_\d+", layer):
        head, layer = rest or mode, ""
    return (head, "", layer) if not rest else (mode, head, layer)


def network_spec(spec):
    """A network named as on the command line, ``MODE[:WEIGHTS][@LAYER]`` (bwn and xnor only: WEIGHTS
    trained, untrained or a file made by ``artem distill``, LAYER the first binary convolution), as
    Settings fields: ``xnor``, ``bwn:untrained``, ``xnor:untrained@conv3_1``, ``bwn:my.npz``."""
    mode, source, binary_from = split_spec(spec)
    if mode not in MODES:
        raise ArtemError(f"unknown mode {mode}" + (f" in {spec!r}" if spec != mode else "") + f"; modes are {', '.join(MODES)}")
    if (source or binary_from) and mode not in ("bwn", "xnor"):
        raise ArtemError(f"{spec!r}: only bwn and xnor have binary weights to choose")
    if binary_from and binary_from not in CONV_NAMES[1:]:
        raise ArtemError(f"{spec!r}: the first binary layer must be one of {', '.join(CONV_NAMES[1:])}")
    return {"mode": mode, "binary_weights": source or Settings.binary_weights, "binary_from": binary_from or None}


def spec_settings(spec, vgg_path, deeper=None, **fields):
    """The Settings of the network named ``spec`` (``network_spec``) with ``fields``, validated, its
    trained binary network's file sound and learnt from the VGG16 at ``vgg_path``; where its first
    binary layer lies past the deepest tapped, the advice is in the spec's own terms (MODE@LAYER; a
    trained file that begins past it too: untrained), and ``deeper`` where the command can tap deeper
    ("show a deeper --layer")."""
    settings = Settings(**fields, **network_spec(spec))
    first = settings.binary_from
    deepest, last = settings.deepest_conv()
    if first is not None and CONV_NAMES.index(first) > CONV_NAMES.index(last) and last != CONV_NAMES[0]:
        mode, source, _ = split_spec(spec)
        own = first_binary(dataclasses.replace(settings, binary_from=None))  # conv1_2, or the trained file's first
        advice = f"name {mode}{':' * bool(source)}{source}@{last}" + (
            "" if own == last else " or an earlier layer" + (f" down to {own}" if own != CONV_NAMES[1] else ""))
        if CONV_NAMES.index(own) > CONV_NAMES.index(last):
            advice = f"the trained file begins at {own}, past it too: name {mode}:untrained@{last} or an earlier layer"
        raise ArtemError(f"{spec!r}: the first binary convolution, {first}, lies past the deepest layer tapped ({deepest}): "
                         f"the network would have none; {advice}" + (f", or {deeper}" if deeper else ""))
    settings.validate()
    if settings.mode in ("bwn", "xnor") and settings.binary_weights != "untrained":
        check_trained(settings, vgg_path)
    return settings


def check_trained(settings, vgg_path):
    """An ArtemError where the trained binary network of ``settings`` will not do: its file (missing,
    damaged, another mode's, binary from past the taps), or its teacher (``check_teacher``)."""
    trained_binary_layers(settings)
    check_teacher(settings, vgg_path)


def check_distinct(named):
    """An ArtemError where two of ``named`` ({spec: Settings}) are one network: ``bwn`` and
    ``bwn@conv3_2`` where the trained file begins at conv3_2, ``bwn`` and ``bwn:weights/bwn.npz``."""
    seen = {}
    for spec, settings in named.items():
        source = settings.binary_weights if settings.mode in ("bwn", "xnor") else None
        if source not in (None, "untrained"):
            source = binary_file(settings).resolve()
        first = first_binary(settings)
        other = seen.setdefault((settings.mode, source, first), spec)
        if other != spec:
            raise ArtemError(f"{other!r} and {spec!r} are one network ({settings.mode}"
                             + (f", binary from {first}" if first else "") + "): give it once")


def network(settings, vgg_weights, xnor_kernels=None, float_conv=None):
    """The VGG16 that ``settings`` (mode, pooling, binary weights; with tf32, every float convolution
    one product on the im2col copy) asks for, on ``vgg_weights`` (``xnor_kernels``, ``float_conv``:
    as ``VGG16``'s)."""
    return VGG16(vgg_weights, pooling=settings.pooling, mode=settings.mode, binary=binary_layers(settings, vgg_weights),
                 half_backward=settings.binary_backward == "fp16", xnor_kernels=xnor_kernels,
                 float_conv=float_conv or ("im2col" if settings.tf32 else None))


def binary_layers(settings, vgg_weights):
    """The binary convolutions of ``settings.mode`` (bwn, xnor) as ``settings.binary_weights`` and
    ``settings.binary_from`` ask, or None for the float modes."""
    if settings.mode not in ("bwn", "xnor"):
        return None
    if settings.binary_weights == "untrained":
        return untrained_binary(vgg_weights, first_binary(settings))
    return trained_binary_layers(settings, array_module(vgg_weights["conv1_1.weight"]))


def binary_file(settings):
    """The file of the trained binary network (bwn, xnor) that ``settings.binary_weights`` names:
    the one shipped for "trained" (checked against weights/manifest.json), else the path given."""
    return weights.trained_binary(settings.mode) if settings.binary_weights == "trained" else Path(settings.binary_weights)


def check_teacher(settings, vgg_path):
    """An ArtemError where the trained binary network of ``settings`` (bwn, xnor) learnt from another
    VGG16 than the weights file ``vgg_path``: its binary layers were fitted to that one's features,
    and its fp32 layers are that one's. The networks shipped in weights/ (named "trained", by a path,
    or copied) learnt from the reference; a file of ``artem distill`` from before 2026-12-07 does not
    say which it learnt from, and is taken at its word."""
    if settings.mode not in ("bwn", "xnor") or settings.binary_weights == "untrained":
        return
    path = binary_file(settings)
    _, meta = weights.load_binary(path)  # first: a file missing, a folder, damaged ... is said so
    shipped = weights.is_shipped_binary(path)
    teacher = weights.reference_checksum() if shipped else meta.get("teacher_sha256")
    if teacher is not None and teacher != weights.checksum(vgg_path):
        learnt = f"the trained {settings.mode} network ('{path}') learnt from the reference VGG16" if shipped else \
            f"'{path}' learnt from another VGG16"
        raise ArtemError(f"{learnt}, not from '{vgg_path}'; use --binary-weights untrained with these weights, or "
                         f"train a network on them (artem distill --mode {settings.mode} --weights {vgg_path})")


def first_binary(settings):
    """The first binary convolution of the network that ``settings`` asks for: binary-from where
    given, else conv1_2 for untrained weights, else the trained file's own first (an ArtemError where
    that file will not do); None for the float modes. Settings that differ only in binary-from paint
    alike where this is the same (``bwn`` and ``bwn@conv3_2`` where the file begins at conv3_2)."""
    if settings.mode not in ("bwn", "xnor"):
        return None
    if settings.binary_from is not None:
        return settings.binary_from
    if settings.binary_weights == "untrained":
        return "conv1_2"
    return next(iter(weights.load_binary(binary_file(settings))[0]))


def trained_binary_layers(settings, xp=np):
    """The trained binary convolutions (bwn, xnor) that ``settings.binary_weights`` names, the file
    shipped ("trained") or one made by ``artem distill``, from ``settings.binary_from`` on, on ``xp``;
    an ArtemError where that file will not do (missing, damaged, another mode's, binary from later)."""
    path = binary_file(settings)
    layers, meta = weights.load_binary(path, xp)
    if meta["mode"] != settings.mode:
        raise ArtemError(f"'{path}' holds a trained {meta['mode']} network, not {settings.mode}")
    first = next(iter(layers))
    if settings.binary_from is not None:
        if CONV_NAMES.index(settings.binary_from) < CONV_NAMES.index(first):
            raise ArtemError(f"'{path}' is binary from {first} on; binary-from must be {first} or a later layer")
        layers = {k: v for k, v in layers.items() if CONV_NAMES.index(k) >= CONV_NAMES.index(settings.binary_from)}
        gain = (meta.get("settings") or {}).get("content_gain", 1.0)
        if gain != 1:  # the file's content gain, undone on the layer after the content convolution where that one is fp32's
            from .distill import CONTENT_CONV, with_content_gain

            if CONTENT_CONV not in layers:
                layers = with_content_gain(layers, 1 / gain)
    deepest, last = settings.deepest_conv()
    if CONV_NAMES.index(first) > CONV_NAMES.index(last):  # binary-from, where given, was checked in validate
        raise ArtemError(f"'{path}' is binary from {first} on, past the deepest layer tapped ({deepest}): the network "
                         f"would have no binary layer; {_earlier_or_deeper(last, 'give binary weights binary from')}")
    return layers


def _earlier_or_deeper(last, give):
    """What to do where the first binary convolution lies past ``last``, the deepest tapped: begin
    it at ``last`` or earlier, or tap deeper; only the latter where that is conv1_1 (always fp32)."""
    if last == CONV_NAMES[0]:
        return f"{last}, the only convolution tapped, is never binary: tap a deeper layer"
    return f"{give} {last} or an earlier one, or tap a deeper layer"


def score(image, content, styles, settings=None, *, weights_path=None):
    """The full-precision network's losses of ``image`` (RGB (3, H, W) 0..1, e.g. a saved result)
    against ``content`` and ``styles``, on the CPU, with the layers and weights of ``settings``
    (a run's own, whatever its mode, device and optimizer, which are not used): the common yardstick
    for results of every mode."""
    image = preprocess.rgb_image(image, "image")
    content = preprocess.rgb_image(content, "content image")
    styles = _style_images(styles)
    shape = image.shape[1:]
    if not MIN_SIZE <= max(shape) <= MAX_SIZE:
        raise ArtemError(f"the image is {shape[1]}x{shape[0]} px; artem scores images of {MIN_SIZE} to {MAX_SIZE} px on "
                         "their longest side")
    settings = dataclasses.replace(given(settings), mode="fp32", size=max(shape), binary_weights=Settings.binary_weights,
                                   binary_from=None, binary_backward="fp32", calibrate=False, device="cpu",
                                   cuda_graph=False, tf32=False)
    settings.validate(len(styles))
    _check_depth(shape, max(shape), settings, "image")
    expected = preprocess.scaled_shape(content.shape, max(shape))  # the content at the image's size
    if any(abs(a - b) > 1 for a, b in zip(expected, shape)):  # before the styles, whose size follows the image's
        raise ArtemError(f"the image is {shape[1]}x{shape[0]} but its content at that size is {expected[1]}x{expected[0]}: "
                         "a result is scored against its own content (the same proportions)")
    for style in styles:  # each at the image's size, as stylize had it
        _check_depth(style.shape, _style_longest(settings.size, settings.style_scale), settings, "style image",
                     "--style-scale", px_per_unit=settings.size, limit=MAX_STYLE_SCALE * settings.size,
                     taps=[name for name, _ in settings.style_layers])
    net = VGG16(weights.load(weights.locate(weights_path)), pooling=settings.pooling)
    objective = build_objective(net, settings, preprocess.resize(content, shape), Targets(style_grams(net, settings, styles)))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflow: the error below, not warnings
        loss, _ = objective.loss(preprocess.to_vgg(np.asarray(image, dtype=np.float32)))
    losses = {"total": float(loss), **loss.parts}
    if not all(math.isfinite(value) for value in losses.values()):  # a weight so large that a term overflows
        raise ArtemError(f"the losses are not all finite ({', '.join(f'{k} {v:.4g}' for k, v in losses.items())}); "
                         "try smaller weights")
    return losses


def snapshot_path(output, iteration):
    output = Path(output)
    return output.with_name(f"{output.stem}_{iteration:05d}{output.suffix}")


def _existing_snapshots(output, iterations, save_every):
    """The files (or links) in ``output``'s folder now that a run's snapshots would replace: read from
    the folder, not tried name by name (a run of 10⁹ iterations has as many names)."""
    output = Path(output)
    folder = output.parent if str(output.parent) else Path(".")
    name = re.compile(rf"{re.escape(output.stem)}_(\d{{5,}}){re.escape(output.suffix)}")
    found = []
    for entry in sorted(os.listdir(folder)):
        match = name.fullmatch(entry)
        if match and 0 < int(match[1]) <= iterations and int(match[1]) % save_every == 0 \
                and snapshot_path(output, int(match[1])).name == entry:
            found.append(folder / entry)
    return found


def read_init(settings):
    """The starting image ``settings.init`` names (RGB), or None for content and random; an
    ArtemError for a file that cannot be read."""
    return None if settings.init in ("content", "random") else io.read_image(settings.init, "init image")[0]


def check_outputs(content_path, style_paths, output, settings, *, overwrite=False, save_every=0):
    """An ArtemError where ``stylize_file`` could not write ``output`` and its snapshots as asked: one
    would replace an input (the content, a style, the init file), exists (without ``overwrite``), is a
    folder, or has a name or a folder the OS refuses."""
    settings = given(settings)
    init_path = () if settings.init in ("content", "random") else (settings.init,)
    # the inputs that are there (a missing one is said so when it is read)
    inputs = {io.resolved(p) for p in (content_path, *style_paths, *init_path) if Path(p).exists()}
    if io.resolved(output) in inputs:
        raise ArtemError(f"the output '{output}' would replace an input image; give another output name")
    io.check_writable(output, overwrite)
    if save_every and settings.iterations >= save_every:  # the last snapshot's name, the longest
        io.check_writable(snapshot_path(output, settings.iterations - settings.iterations % save_every), True,
                          what="snapshot")
    snapshots = _existing_snapshots(output, settings.iterations, save_every) if save_every else []
    for path in snapshots:  # an input a snapshot would replace is there now, as the file or a link to it
        if io.resolved(path) in inputs:
            raise ArtemError(f"the output '{path}' would replace an input image; give another output name")
        if path.is_dir():
            raise ArtemError(f"snapshot '{path}' is a folder")
    if snapshots and not overwrite:
        raise ArtemError(f"'{snapshots[0]}' already exists, and --save-every {save_every} would replace it; pass "
                         "--overwrite to replace it")


def stylize_file(content_path, style_paths, output, settings=None, *, overwrite=False, weights_path=None,
                 save_every=0, on_iteration=None, interruptible=None):
    """Read the images, stylize, write ``output`` (alpha of the content kept; not where an interrupt
    came before the first iteration ended), snapshots every ``save_every`` iterations. Checks
    everything it can before the long work starts."""
    settings = given(settings)
    if isinstance(style_paths, (str, os.PathLike)) or not isinstance(style_paths, (list, tuple)):
        raise ArtemError(f"the style paths must be a list of paths ([{style_paths!r}] for one), not "
                         f"{type(style_paths).__name__}")
    for name, path in (("content image", content_path), ("output", output), *(("style image", p) for p in style_paths)):
        io.a_path(path, name)
    if not isinstance(overwrite, bool):
        raise ArtemError(f"overwrite must be True or False, not {overwrite!r}")
    if not (whole(save_every) and save_every >= 0):
        raise ArtemError(f"save_every must be a whole number >= 0 (0: no snapshots), not {save_every!r}")
    settings.validate(len(style_paths))
    init_image = read_init(settings)
    check_outputs(content_path, style_paths, output, settings, overwrite=overwrite, save_every=save_every)
    content, alpha = io.read_image(content_path, "content image")
    styles = [io.read_image(p, "style image")[0] for p in style_paths]
    weights.locate(weights_path)  # fail before reading is wasted

    shape = preprocess.scaled_shape(content.shape, settings.size)
    out_alpha = None if alpha is None else preprocess.resize(alpha, shape)
    content = preprocess.resize(content, shape)  # as stylize sizes it: the photo itself is not held through the run

    def each(i, value, parts, image):
        if save_every and i % save_every == 0:
            try:
                io.write_image(snapshot_path(output, i), image(), out_alpha, overwrite=True)
            except MemoryError as e:  # artem's own: its out of memory at this size
                e.artem_callers = False
                raise
        if on_iteration is not None:
            on_iteration(i, value, parts, image)

    result = stylize(content, styles, settings, weights_path=weights_path, init_image=init_image, on_iteration=each,
                     interruptible=interruptible)
    if not (result.interrupted and result.iterations == 0):  # interrupted in the first iteration: nothing to keep
        io.write_image(output, result.image, out_alpha, overwrite=overwrite)
    return result
