"""Training the binarized VGG16 by distillation from the fp32 one: data, the student, the loop,
checkpoints (``artem distill``).

The teacher is the fp32 network. The student has the same layers, every convolution from
``binary_from`` on binary (bwn: binary weights; xnor: binary weights and inputs), the earlier ones
the teacher's. Its binary weights are the signs of latent float weights, initialised from fp32 and
trained with the straight-through gradient; each filter's α, the biases and (xnor) the centre shift
of each input channel are trained too. All of them live in one flat vector θ, each in units of its
own initial size, so that one Adam learning rate suits them all.

The loss is what a stylization asks of the network: at each tap (the content and style layers of
the default settings), the student's features and their Gram matrices against the teacher's, each
normalised by the size of the teacher's. The data: random crops (scale, flip, colour) of training
images, and, mixed into each batch, images that the student's own stylizations produce, where
student and teacher can differ most (the optimizer seeks out whatever the student responds to).

The data of step k depend only on (seed, k), so a run resumed from a checkpoint goes on exactly as
the uninterrupted run would have.
"""
import contextlib
import dataclasses
import hashlib
import json
import math
import sys
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np

from . import binarize, io, preprocess, weights
from .api import DEFAULT_STYLE_LAYERS, Interruptible, Settings, Targets, build_objective, style_grams
from .backend import array_module, array_module_for, to_host
from .errors import ArtemError
from .losses import content_loss, gram, style_loss
from .optim import LBFGS, Adam, plain
from .vgg import CONV_NAMES, LAYER_NAMES, VGG16

SKIMAGE = "scikit-image==0.26.0"
# The scikit-image sample images that the training uses by default, with their licences as
# scikit-image's documentation gives them. Left out: those the quality report and the examples use
# (astronaut, chelsea, coffee, hubble_deep_field, ihc, rocket), synthetic ones, and tiny ones.
TRAINING_IMAGES = {
    "camera.png": "CC0, Lav Varshney",
    "brick.png": "CC0, CC0Textures (Bricks25)",
    "grass.png": "CC0, CC0Textures",
    "gravel.png": "CC0, CC0Textures (Gravel04)",
    "cell.png": "CC0, Paul Müller",
    "clock_motion.png": "public domain, Stefan van der Walt",
    "coins.png": "no known copyright restrictions (Pompeii coins, Brooklyn Museum)",
    "text.png": "public domain",
    "retina.jpg": "CC0, Wikimedia Commons (Fundus photograph of normal left eye)",
    "motorcycle_left.png": "Middlebury 2014 stereo data sets, as distributed in scikit-image's data",
}


def training_image_paths(folders=()):
    """The scikit-image sample images of ``TRAINING_IMAGES`` (the wheel fetched like the weights and
    unpacked once into the cache), then every image file in ``folders``."""
    target = weights.cache_dir() / "training"
    missing = [name for name in TRAINING_IMAGES if not (target / name).is_file()]
    if missing:
        wheel = weights.download_wheel(SKIMAGE, "scikit_image-0.26.0-*.whl")
        try:
            target.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(wheel) as archive:
                for name in missing:
                    data = archive.read(f"skimage/data/{name}")
                    io.atomic_write(target / name, lambda f, data=data: f.write(data))
        except (zipfile.BadZipFile, KeyError, OSError) as e:
            wheel.unlink(missing_ok=True)
            raise ArtemError(f"the scikit-image wheel was damaged and has been removed; run again ({e})") from None
    paths = [target / name for name in TRAINING_IMAGES]
    for folder in map(Path, folders):
        found = [folder / rel for rel in io.list_images(folder, recursive=True, what="training images folder")]
        if not found:
            raise ArtemError(f"training images folder '{folder}' holds no image files")
        paths += found
    return paths


def random_crop(rng, rgb, size):
    """A size x size crop of ``rgb`` (3, H, W) at a random scale (its shorter side resized to 1-2x
    ``size``), flipped left-right half of the time, in random colours: a grey image is coloured
    along a random gradient between two colours, a colour one has its channels permuted half of
    the time."""
    shorter = rng.uniform(size, 2 * size)
    h, w = rgb.shape[1:]
    shape = (max(size, round(h * shorter / min(h, w))), max(size, round(w * shorter / min(h, w))))
    image = preprocess.resize(rgb, shape)
    i, j = rng.integers(0, shape[0] - size + 1), rng.integers(0, shape[1] - size + 1)
    crop = image[:, i : i + size, j : j + size]
    if rng.random() < 0.5:
        crop = crop[:, :, ::-1]
    if np.ptp(crop - crop.mean(axis=0)) < 1e-3:  # grey
        low, high = rng.random(3), rng.random(3)
        crop = low[:, None, None] + crop.mean(axis=0)[None] * (high - low)[:, None, None]
    elif rng.random() < 0.5:
        crop = crop[rng.permutation(3)]
    return np.ascontiguousarray(np.clip(crop, 0, 1), dtype=np.float32)


@dataclasses.dataclass
class DistillSettings:
    """Everything that shapes a distillation run (and must match when it is resumed)."""

    mode: str = "bwn"  # or "xnor"
    binary_from: str = "conv1_2"  # the first binary convolution; the ones before stay fp32
    steps: int = 1000
    batch: int = 4  # crops per step, of which ``stylized`` come from the student's stylizations
    stylized: int = 1
    crop: int = 128
    lr: float = 0.01  # Adam's learning rate in units of each parameter's initial size, cosine decay
    feature_weight: float = 1.0
    gram_weight: float = 1.0
    content_weight: float = 1.0  # the features' term at the content layer (relu4_2), times feature_weight
    content_gain: float = 1.0  # the content layer's features times this in the file written (``with_content_gain``)
    stylize_every: int = 10  # steps between two new stylized images
    stylize_iterations: int = 20
    pool: int = 8  # stylized images kept (the newest)
    seed: int = 0
    device: str = "cpu"

    def validate(self):
        if self.mode not in ("bwn", "xnor"):
            raise ArtemError(f"distill trains the bwn or xnor network, not {self.mode!r}")
        if self.binary_from not in TRAINED:
            raise ArtemError(f"binary-from must be one of {', '.join(TRAINED)} (the convolutions a loss sees), "
                             f"not {self.binary_from!r}")
        if self.steps < 1 or self.batch < 1 or not 0 <= self.stylized <= self.batch:
            raise ArtemError("steps and batch must be at least 1, and stylized between 0 and batch")
        if not 32 <= self.crop <= 1024:
            raise ArtemError(f"crop must be 32..1024 pixels, not {self.crop}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ArtemError(f"the learning rate must be a positive number, not {self.lr}")
        if not (math.isfinite(self.content_weight) and self.content_weight >= 0):
            raise ArtemError(f"the content weight must be a number >= 0, not {self.content_weight}")
        if not (math.isfinite(self.content_gain) and 0.01 <= self.content_gain <= 100):  # the file's numbers stay float32's
            raise ArtemError(f"the content gain must be a number from 0.01 to 100, not {self.content_gain}")
        if self.content_gain != 1 and CONV_NAMES.index(self.binary_from) > CONV_NAMES.index(CONTENT_CONV):
            raise ArtemError(f"the content gain scales {CONTENT_CONV}, which is not binary from {self.binary_from} on")


CONTENT_TAP = "relu4_2"  # the default content layer
CONTENT_CONV = LAYER_NAMES[LAYER_NAMES.index(CONTENT_TAP) - 1]  # the convolution whose output it is
TAPS = sorted({CONTENT_TAP, *(name for name, _ in DEFAULT_STYLE_LAYERS)}, key=LAYER_NAMES.index)
DEEPEST = LAYER_NAMES[LAYER_NAMES.index(TAPS[-1]) - 1]  # no tap sees the convolutions after it
TRAINED = CONV_NAMES[1 : CONV_NAMES.index(DEEPEST) + 1]  # where binary_from may be: conv1_2 .. conv5_1


class Student:
    """The trained parameters of the binary layers as one flat vector θ (see the module's notes):
    ``layers(θ)`` gives the network's ``binarize.BinaryLayer``s, ``gradient(net)`` dLoss/dθ from the
    parameter gradients a backward pass left in the layers. The convolutions after the deepest tap
    (conv5_2, conv5_3) are seen by no loss: they stay XNOR-Net's binarization of fp32."""

    def __init__(self, teacher_weights, mode, binary_from, input_scales):
        self.xp = array_module(teacher_weights["conv1_1.weight"])
        self.mode = mode
        self.names = CONV_NAMES[CONV_NAMES.index(binary_from) : CONV_NAMES.index(DEEPEST) + 1]
        self.untrained = {name: binarize.untrained(teacher_weights[f"{name}.weight"], teacher_weights[f"{name}.bias"], self.xp)
                          for name in CONV_NAMES[CONV_NAMES.index(DEEPEST) + 1 :]}
        pieces, scales, self.slices = [], [], {}
        offset = 0
        for name in self.names:
            weight, bias = teacher_weights[f"{name}.weight"], teacher_weights[f"{name}.bias"]
            alpha = self.xp.maximum(self.xp.abs(weight).reshape(len(weight), -1).mean(axis=1), 1e-8)
            parts = {
                "latent": (weight, self.xp.full(weight.shape, float(self.xp.abs(weight).mean()), np.float32)),
                "alpha": (alpha, alpha),
                "bias": (bias, self.xp.full(bias.shape, float(self.xp.abs(bias).mean()) + 1e-3, np.float32)),
                "shift": (self.xp.zeros(weight.shape[1], np.float32),
                          self.xp.full(weight.shape[1], input_scales[name], np.float32)),
            }
            for part, (value, scale) in parts.items():
                self.slices[name, part] = (slice(offset, offset + value.size), value.shape)
                offset += value.size
                pieces.append((value / scale).ravel())
                scales.append(scale.ravel())
        self.theta0 = self.xp.concatenate(pieces).astype(np.float32)
        self.scale = self.xp.concatenate(scales).astype(np.float32)

    def part(self, vector, name, part):
        where, shape = self.slices[name, part]
        return vector[where].reshape(shape)

    def layers(self, theta):
        params = theta * self.scale
        out = {}
        for name in self.names:
            latent = to_host(self.part(params, name, "latent"))
            shift = self.part(params, name, "shift") if self.mode == "xnor" else self.xp.zeros_like(self.part(params, name, "shift"))
            out[name] = binarize.BinaryLayer(binarize.pack_filters(latent), self.part(params, name, "alpha"),
                                             self.part(params, name, "bias"), shift)
        return {**out, **self.untrained}

    def gradient(self, grads):
        """dLoss/dθ from {layer: its parameter gradients}; the latent weights get the gradient of
        their signs (straight-through)."""
        grad = self.xp.zeros_like(self.theta0)
        for name in self.names:
            for part, key in (("latent", "signs"), ("alpha", "alpha"), ("bias", "bias"), ("shift", "shift")):
                if key in grads[name]:
                    self.part(grad, name, part)[...] = grads[name][key]
        return grad * self.scale


def with_content_gain(layers, gain):
    """The binary layers ``layers`` with the content layer's features multiplied by ``gain`` and
    everything after it unchanged: the content convolution's α and bias times ``gain`` (ReLU passes a
    positive factor through), the next convolution's α divided by it and its centre shift multiplied
    by it (its channel means, its scale map and so its output before α scale with its input). A
    stylization with the network then weighs the content loss ``gain``² times as much against the
    style loss, which no layer after the content layer sees. Where ``layers`` has no content
    convolution (binary from a later layer on), only the next one changes: ``1 / gain`` undoes a
    file's gain where its content convolution is left out."""
    if gain == 1:
        return layers
    following = CONV_NAMES[CONV_NAMES.index(CONTENT_CONV) + 1]
    changed = dict(layers)
    if CONTENT_CONV in layers:
        content = layers[CONTENT_CONV]
        changed[CONTENT_CONV] = content._replace(alpha=content.alpha * gain, bias=content.bias * gain)
    if following in layers:
        after = layers[following]
        changed[following] = after._replace(alpha=after.alpha / gain, shift=after.shift * gain)
    return changed


def _input_scales(teacher, images, binary_from):
    """The mean activation entering each convolution from ``binary_from`` to ``DEEPEST``: the unit of its shift."""
    names = CONV_NAMES[CONV_NAMES.index(binary_from) : CONV_NAMES.index(DEEPEST) + 1]
    inputs = [LAYER_NAMES[LAYER_NAMES.index(n) - 1] for n in names]
    sums = dict.fromkeys(names, 0.0)
    for image in images:
        out = teacher.forward(preprocess.to_vgg(image), inputs)
        for name, tap in zip(names, inputs):
            sums[name] += float(out[tap].mean()) / len(images)
    return {name: max(value, 1e-3) for name, value in sums.items()}


def distill_loss(student_net, teacher, image, settings, first):
    """The distillation loss of one image (VGG input) and its gradient left in ``student_net``'s
    layers: per tap after the first binary convolution ``first``, the features' and the Gram
    matrices' mean squared difference, each divided by the mean square of the teacher's and
    weighted by ``settings`` (the features at the content layer by ``content_weight`` too). The
    layers before ``first`` are the teacher's: the student starts from the teacher's activations
    there."""
    entry = LAYER_NAMES[LAYER_NAMES.index(first) - 1]  # the layer whose output ``first`` reads
    taps = [t for t in TAPS if LAYER_NAMES.index(t) > LAYER_NAMES.index(first)]
    target = teacher.forward(image, [*taps, entry])
    features = student_net.forward(target[entry], taps, start=first)
    total, grads = 0.0, {}
    for tap in taps:
        t = target[tap]
        weight = settings.feature_weight * (settings.content_weight if tap == CONTENT_TAP else 1.0)
        value, grads[tap] = content_loss(features[tap], t, weight / (float((t * t).mean()) + 1e-12))
        total += value
        t_gram = gram(t)
        value, g = style_loss(features[tap], t_gram, settings.gram_weight / (float((t_gram * t_gram).mean()) + 1e-12))
        total += value
        grads[tap] += g
    student_net.backward(grads, parameters=True)
    return float(total)  # from a GPU too (its terms are 0-d device arrays): the history and checkpoints hold floats


CHECKPOINT_ARRAYS = {"__meta__", "theta", "m", "v", "pool"}  # what a checkpoint holds (with its settings in __meta__)


class Trainer:
    """One distillation run: the teacher, the student, the data, Adam, checkpoints."""

    def __init__(self, settings, image_paths, weights_path=None):
        self._created, self.seconds_before = time.perf_counter(), 0.0  # the latter: of the runs it resumes
        settings.validate()
        self.settings = s = settings
        self.xp = array_module_for(s.device)
        teacher = weights.locate(weights_path)
        self.teacher_weights = weights.load(teacher, self.xp)
        self.teacher_sha256 = weights.checksum(teacher)  # a checkpoint must go on learning from the same
        self.teacher = VGG16(self.teacher_weights)
        self.images = [io.read_image(p, "training image")[0] for p in image_paths]
        if not self.images:
            raise ArtemError("no training images")
        pixels = hashlib.sha256()  # the data a step draws from, in order: a checkpoint must go on with the same
        for image in self.images:
            pixels.update(repr(image.shape).encode())
            pixels.update(image.tobytes())
        self.images_sha256 = pixels.hexdigest()
        self.run_id = uuid.uuid4().hex  # the training's: its checkpoints and networks carry it, a resume goes on with it
        rng = np.random.default_rng([s.seed, 0])
        calibration = [self._crop(rng) for _ in range(4)]
        self.student = Student(self.teacher_weights, s.mode, s.binary_from,
                               _input_scales(self.teacher, calibration, s.binary_from))
        self.pool = []  # (step made, RGB image) of the student's stylizations, newest last
        self.history = []  # (step, loss)

    def _crop(self, rng):
        image = self.images[rng.integers(len(self.images))]
        return self.xp.asarray(random_crop(rng, image, self.settings.crop))

    def network(self, theta):
        return VGG16(self.teacher_weights, mode=self.settings.mode, binary=self.student.layers(theta))

    def _stylized(self, theta, step):
        """A new image from a short stylization by the student: a training crop painted after another."""
        s = self.settings
        rng = np.random.default_rng([s.seed, step, 1])
        content, style = self._crop(rng), self._crop(rng)
        net, settings = self.network(theta), Settings(size=s.crop)
        objective = build_objective(net, settings, content, Targets(style_grams(net, settings, [to_host(style)])))
        x = preprocess.to_vgg(content)
        for x, _ in LBFGS(objective.probed, x, history=10).run(s.stylize_iterations):
            pass
        return self.xp.clip(preprocess.from_vgg(self.xp.clip(x, objective.low, objective.high)), 0, 1)

    def batch(self, theta, step):
        """The images of ``step``: crops, and the newest stylized images of the pool."""
        s = self.settings
        if s.stylized and (step - 1) % s.stylize_every == 0:
            self.pool = [*self.pool, (step, self._stylized(theta, step))][-s.pool:]
        rng = np.random.default_rng([s.seed, step])
        shown = [image for _, image in self.pool]
        chosen = [shown[i] for i in rng.permutation(len(shown))[: s.stylized]] if shown else []
        return [self._crop(rng) for _ in range(s.batch - len(chosen))] + chosen

    def loss(self, theta, step):
        """The mean distillation loss of ``step``'s batch at θ, and its gradient."""
        net = self.network(theta)
        images = self.batch(theta, step)
        total, sums = 0.0, {}
        for image in images:
            total += distill_loss(net, self.teacher, preprocess.to_vgg(image), self.settings, self.settings.binary_from)
            for name in self.student.names:
                grads = net.layer(name).grads
                sums[name] = {k: sums[name][k] + g for k, g in grads.items()} if name in sums else grads
        return total / len(images), self.student.gradient(sums) / len(images)

    def learning_rate(self, step):
        return self.settings.lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / self.settings.steps))

    def run(self, checkpoint=None, checkpoint_every=100, resume=False, progress=None, interruptible=None):
        """Train to ``settings.steps``; returns the final θ. ``checkpoint`` (a file) is written every
        ``checkpoint_every`` steps and at the end; with ``resume`` the run goes on from it. A signal
        recorded in ``interruptible`` (an ``api.Interruptible``) stops it before its next step:
        ``KeyboardInterrupt``."""
        theta, state = self.student.theta0, None
        if resume:
            theta, state = self.load_checkpoint(checkpoint)
        step = (interruptible or Interruptible()).before(lambda t: self.loss(t, adam.steps + 1))
        adam = Adam(plain(step), theta, lr=self.learning_rate, state=state)
        for theta, value in adam.run(self.settings.steps - adam.steps):
            if not bool(self.xp.isfinite(theta).all()):  # the step's loss was finite, the step was not
                raise ArtemError(f"the training diverged at step {adam.steps} (the network's parameters are no longer "
                                 "finite); try a smaller --lr")
            self.history.append((adam.steps, value))
            if checkpoint is not None and (adam.steps % checkpoint_every == 0 or adam.steps == self.settings.steps):
                self.save_checkpoint(checkpoint, theta, adam.state())
            if progress is not None:
                progress(adam.steps, value)
        return theta

    def seconds(self):
        """The training's seconds so far: this trainer's, and those of the runs it went on from."""
        return self.seconds_before + time.perf_counter() - self._created

    def save_checkpoint(self, path, theta, state):
        m, v, steps = state
        pool = np.stack([to_host(img) for _, img in self.pool]) if self.pool else np.zeros((0, 3, 1, 1), np.float32)
        meta = {"settings": dataclasses.asdict(self.settings), "steps": steps, "history": self.history,
                "pool_steps": [k for k, _ in self.pool], "images_sha256": self.images_sha256,
                "teacher_sha256": self.teacher_sha256, "seconds": self.seconds(), "run_id": self.run_id}
        arrays = {"theta": to_host(theta), "m": to_host(m), "v": to_host(v), "pool": pool,
                  "__meta__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
        io.atomic_write(path, lambda f: np.savez(f, **arrays))

    def load_checkpoint(self, path):
        """(θ, Adam's state) from ``path``, whose settings must be these (bar ``steps``, which may grow)."""
        path = Path(path)
        not_one = f"'{path}' is not a checkpoint of artem distill"
        try:
            with open(path, "rb") as f:
                if not zipfile.is_zipfile(f):
                    raise ArtemError(f"{not_one} (not an .npz archive)")
            with np.load(path, allow_pickle=False) as archive:
                if not CHECKPOINT_ARRAYS <= set(archive.files):  # before reading them all
                    raise ArtemError(f"{not_one} (no training state in it)")
                arrays = {k: archive[k] for k in archive.files}
            meta = json.loads(arrays["__meta__"].tobytes())
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise ArtemError(f"checkpoint '{path}' is not readable ({e.strerror if isinstance(e, OSError) else e})") from None
        fields = {"settings": dict, "steps": int, "history": list, "pool_steps": list}
        if not isinstance(meta, dict) or not all(isinstance(meta.get(k), kind) for k, kind in fields.items()):
            raise ArtemError(f"{not_one} (no training state in it)")
        seconds = meta.get("seconds", 0.0)  # not recorded before 2026-12-07
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ArtemError(f"{not_one} (no training state in it)")
        mine, theirs = {**dataclasses.asdict(self.settings), **FREE}, _bound(meta["settings"])
        if mine != theirs:
            changed = ", ".join(k for k in mine if mine[k] != theirs.get(k))
            raise ArtemError(f"checkpoint '{path}' was made with other settings ({changed}); start a new run")
        if meta.get("images_sha256", self.images_sha256) != self.images_sha256:  # not recorded before 2026-12-07
            raise ArtemError(f"checkpoint '{path}' was made with other training images (--images); resume with the same "
                             "ones, or start a new run")
        if meta.get("teacher_sha256", self.teacher_sha256) != self.teacher_sha256:  # not recorded before 2026-12-07
            raise ArtemError(f"checkpoint '{path}' learnt from another VGG16 (--weights); resume with the same one, or "
                             "start a new run")
        if arrays["theta"].shape != self.student.theta0.shape:
            raise ArtemError(f"checkpoint '{path}' does not fit this network")
        if meta["steps"] > self.settings.steps:
            raise ArtemError(f"checkpoint '{path}' is at step {meta['steps']}, past --steps {self.settings.steps}")
        self.history = [tuple(h) for h in meta["history"]]
        self.seconds_before = float(seconds)
        self.run_id = training_id(meta)
        self.pool = [(k, self.xp.asarray(img)) for k, img in zip(meta["pool_steps"], arrays["pool"])]
        xp = self.xp
        return xp.asarray(arrays["theta"]), (xp.asarray(arrays["m"]), xp.asarray(arrays["v"]), meta["steps"])

    def export(self, theta, destination, seconds):
        """Write the trained binary layers (``weights.save_binary``) with how they were made."""
        meta = {"mode": self.settings.mode, "settings": dataclasses.asdict(self.settings), "seconds": round(seconds),
                "command": " ".join(["artem", *sys.argv[1:]]) if sys.argv and "artem" in sys.argv[0] else None,
                "final_loss": self.history[-1][1] if self.history else None, "teacher_sha256": self.teacher_sha256,
                "run_id": self.run_id}
        return weights.save_binary(with_content_gain(self.student.layers(theta), self.settings.content_gain),
                                   destination, meta)


FREE = {"steps": None, "device": None, "content_gain": None}  # settings a resume may change (steps may grow)


def _bound(settings):
    """A checkpoint's ``settings`` as they bind a resume: a field added since it was written takes
    its default, which is what that run used; the ``FREE`` ones left out."""
    return {**dataclasses.asdict(DistillSettings()), **settings, **FREE}


def training_id(meta):
    """The id of the training that a checkpoint's ``meta`` is of: recorded since 2026-12-07, else drawn
    from what stays the training's (its settings as they bind a resume, images, teacher, first step),
    the same at each resume."""
    return meta.get("run_id") or hashlib.sha256(json.dumps(
        [_bound(meta["settings"]), meta.get("images_sha256"), meta.get("teacher_sha256"), meta["history"][:1]],
        sort_keys=True).encode()).hexdigest()


def wrote_from(output, checkpoint):
    """Whether ``output`` is a network that the training of ``checkpoint`` wrote (when it finished, or
    a resume of it did): a resume with more steps replaces it. Files from before 2026-12-07 do not
    say which training they are of: not replaced."""
    try:
        _, written = weights.load_binary(output)
        with np.load(checkpoint, allow_pickle=False) as archive:
            meta = json.loads(archive["__meta__"].tobytes())
        return written.get("run_id") is not None and written.get("run_id") == training_id(meta)
    except (ArtemError, OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile, EOFError):
        return False


def is_checkpoint(path):
    """Whether ``path`` is an archive with a checkpoint's arrays (named, not read)."""
    try:
        with open(path, "rb") as f:
            if not zipfile.is_zipfile(f):
                return False
        with np.load(path, allow_pickle=False) as archive:
            return CHECKPOINT_ARRAYS <= set(archive.files)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return False


@contextlib.contextmanager
def alone_on(output, checkpoint):
    """The files a training writes (its network, its checkpoint) this process's alone while the block
    runs: another distill that would write either is refused (two passed their checks at once, and
    the one that ended last replaced the other's files). The locks are files of the cache (locks/,
    each named by the SHA-256 of a path), which stay: one removed could be held by a process that
    opened it just before. Where the cache cannot be written, the block runs unguarded."""
    folder = weights.cache_dir() / "locks"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        yield
        return
    with contextlib.ExitStack() as held:
        for path, option in ((output, "-o"), (checkpoint, "--checkpoint")):
            lock = folder / hashlib.sha256(str(io.resolved(path)).encode(errors="surrogateescape")).hexdigest()
            try:
                held.enter_context(io.alone(lock, f"another distill is writing '{path}' now: wait for it to end, or "
                                                  f"give another {option}"))
            except OSError:  # a lock file that cannot be opened (another user's): unguarded
                pass
        yield


def distill(settings, output, image_folders=(), checkpoint=None, checkpoint_every=100, resume=False,
            weights_path=None, progress=None, interruptible=None):
    """Train the binary network of ``settings`` and write it to ``output``; returns the Trainer."""
    array_module_for(settings.device)  # a device that is missing said before the training images are fetched
    paths = training_image_paths(image_folders)
    trainer = Trainer(settings, paths, weights_path)
    theta = trainer.run(checkpoint, checkpoint_every, resume, progress, interruptible)
    trainer.export(theta, output, trainer.seconds())
    return trainer
