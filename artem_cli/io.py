"""Reading and writing images with Pillow.

``read_image`` returns float32 RGB (3, H, W) in 0..1 and the alpha channel (H, W) or None, whatever
the file holds: EXIF orientation is applied; an embedded colour profile other than sRGB is converted
to sRGB; greyscale, palette, CMYK, 16-bit and alpha inputs are converted; an animated file gives its first frame. ``write_image`` writes 8-bit files (Pillow
cannot write 16-bit colour) atomically (``atomic_write``) and never replaces an existing file unless
told to. ``list_images`` lists a folder's image files (a batch's inputs, its --style-dir, distill's
--images). Every failure a user can cause is an ``ArtemError`` with one clear line. Nothing here
changes process-wide settings (Pillow's, the warnings filters), so threads may read and write at once.
"""
import contextlib
import errno
import fcntl
import fnmatch
import os
import re
import secrets
import struct
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .errors import ArtemError, NoSpace

# Images of more pixels than this (11,585 x 11,585) are refused before they are decoded: decompression
# bombs, and sizes no stylization could use. Pillow's own guard, a process-wide setting that artem
# leaves as it is, refuses above 2 x Image.MAX_IMAGE_PIXELS (179 M pixels by default) and warns above
# 1 x; the command line silences that warning, since this limit covers it.
MAX_PIXELS = 134_000_000

WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".bmp": "BMP"}


def _in_srgb(img):
    """``img`` in sRGB where its file embeds another colour profile (Adobe RGB, Display P3, a CMYK
    press's: each pixel's colour as the profile says, not its numbers read as sRGB); as it is where it
    has none, an sRGB one, or one that littlecms cannot read (it is then read as sRGB, as viewers do)."""
    icc = img.info.get("icc_profile")
    if icc and img.mode == "P":  # a palette's colours are the profile's too
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return img
    try:
        profile = ImageCms.ImageCmsProfile(BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(profile).lower().replace(" ", ""):
            return img
        return ImageCms.profileToProfile(img, profile, SRGB, outputMode="RGBA" if img.mode == "RGBA" else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img


SRGB = ImageCms.createProfile("sRGB")


def _to_array(img):
    """(rgb float32 (3, H, W) in 0..1, alpha (H, W) or None) from a Pillow image of any common mode."""
    alpha = None
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(img, dtype=np.float32)
        grey = grey / (65535.0 if mode.startswith("I;16") or grey.max() > 255 else 255.0)
        return np.repeat(np.clip(grey, 0, 1)[None], 3, axis=0), None
    if mode == "F":  # floats in 0..1 (a little overshoot clipped), or the ranges of 8 or 16 bits: the largest value says
        grey = np.asarray(img, dtype=np.float32)
        top = float(grey.max(where=np.isfinite(grey), initial=0.0))  # of the numbers: an infinity says no range
        grey = np.clip(np.nan_to_num(grey / (1.0 if top <= 2 else 255.0 if top <= 255 else 65535.0), nan=0.0), 0, 1)
        return np.repeat(grey[None], 3, axis=0), None
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
    pixels = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))  # 8 bits a channel, (H, W, 3)
    rgb = np.empty((3, *pixels.shape[:2]), dtype=np.float32)  # filled plane by plane: no float copy of the photo beside it
    for c in range(3):
        np.divide(pixels[..., c], np.float32(255), out=rgb[c], dtype=np.float32)
    return rgb, alpha


@contextlib.contextmanager
def alone(path, busy):
    """The block run while this process alone holds ``path`` (a folder, or a lock file, made where it
    is missing): another process, or another holder in this one, that asks meanwhile gets
    ``ArtemError(busy)``. The lock, flock's, goes with the process however it ends; where it cannot be
    taken (a file system without locks, some FUSE ones; a folder on NFS, where a lock needs a file
    open for writing) the block runs unguarded."""
    fd = os.open(path, os.O_RDONLY if os.path.isdir(path) else os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ArtemError(busy) from None
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


def a_path(value, what):
    """``value`` as a Path, or an ArtemError where it is no path (a string or an os.PathLike)."""
    if not isinstance(value, (str, os.PathLike)):
        raise ArtemError(f"the {what} must be a path (a string or a pathlib.Path), not {type(value).__name__}")
    return Path(value)


def read_image(path, what="image"):
    """Read ``path``; ``what`` names it in error messages ("content image", "style image", ...)."""
    path = a_path(path, what)
    if path.is_dir():
        raise ArtemError(f"{what} '{path}' is a folder, not an image file")
    if not path.is_file():
        if str(path) == "-" and not path.exists():
            raise ArtemError(f"{what} '-': artem reads images from files, not from standard input")
        raise ArtemError(f"{what} '{path}' {not_a_file(path)}")
    size = ""
    try:  # opened from a file object, not a name: Pillow maps a named file's raw pixels into memory instead of
        # decoding them, and then skipped a TIFF's orientation (greyscale, 16-bit, RGBA) with its size swapped
        with open(path, "rb") as f, Image.open(f) as img:
            size = f" ({img.width}x{img.height})"
            if img.width * img.height > MAX_PIXELS:
                raise Image.DecompressionBombError
            img.seek(0)
            # a 16-bit RGB PNG is read in 8 bits, its colour key not: it would mark other pixels
            wide = img.format == "PNG" and img.mode == "RGB" and any("16" in str(tile[3]) for tile in img.tile)
            img.load()
            img = _turned_upright(img)
            keyed = None if wide else _keyed_alpha(img)  # of the file's own numbers, before any conversion of its colours
            rgb, alpha = _to_array(_in_srgb(img))
            return rgb, alpha if keyed is None else keyed
    except Image.DecompressionBombError:
        raise ArtemError(f"{what} '{path}' is too large (over {MAX_PIXELS:,} pixels)") from None
    except MemoryError:
        raise ArtemError(f"{what} '{path}' is too large for the memory free{size}") from None
    except UnidentifiedImageError:
        with open(path, "rb") as f:  # read, not its size: a file of /proc has size 0 and text in it
            empty = f.read(1) == b""
        raise ArtemError(f"{what} '{path}' is {'an empty file' if empty else 'not an image file Pillow can read'}") from None
    except PermissionError:
        raise ArtemError(f"{what} '{path}' cannot be read: permission denied") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ArtemError(f"{what} '{path}' is damaged or truncated ({e})") from None


def _keyed_alpha(img):
    """The alpha channel (H, W) of an image that marks one colour transparent (a PNG's tRNS chunk in a
    greyscale or RGB image, a GIF's in greyscale): 0 where a pixel is that colour, 1 elsewhere; None
    where it marks none, or no pixel has it (a palette's transparency is ``_to_array``'s)."""
    key = img.info.get("transparency")
    if img.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "RGB") or not isinstance(key, (int, tuple)):
        return None
    pixels, key = np.asarray(img), np.asarray(key)
    if key.shape != pixels.shape[2:]:
        return None
    hit = np.all(pixels == key, axis=-1) if pixels.ndim == 3 else pixels == key
    return np.where(hit, np.float32(0), np.float32(1)) if hit.any() else None


def _turned_upright(img):
    """``img`` turned as its EXIF orientation says; as it is where its EXIF data cannot be parsed (the
    pixels are sound: viewers show them unturned)."""
    try:
        return ImageOps.exif_transpose(img)
    except (SyntaxError, ValueError, KeyError, IndexError, TypeError, struct.error):
        return img


def output_format(path):
    fmt = WRITE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ArtemError(f"cannot tell the output format of '{path}'; use one of {', '.join(WRITE_FORMATS)}")
    return fmt


def not_a_file(path):
    """What ``path``, which is no regular file, is instead: "does not exist", "is a folder", ..."""
    path = Path(path)
    if path.is_dir():
        return "is a folder"
    if os.path.lexists(path) and not path.exists():
        return "is a link to nothing (or a loop of links)"
    return "is not a regular file (a device or a pipe?)" if path.exists() else "does not exist"


def resolved(path):
    """``path`` made absolute with its links followed (``Path.resolve``), or an ArtemError where they
    loop (the OS says so; Python up to 3.12 raises RuntimeError there, later ones return a path)."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ArtemError(f"'{path}' leads into a loop of symbolic links") from None
    try:
        return Path(path).resolve()
    except RuntimeError:
        raise ArtemError(f"'{path}' leads into a loop of symbolic links") from None


def check_writable(path, overwrite=False, image=True, what="output"):
    """Fail now, before any work, if ``path`` could not be written as asked (an image: in the format its
    suffix names, which is returned); ``what`` names it in the messages."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        if not path.name or path.is_dir():
            raise ArtemError(f"{what} '{path}' is a folder")
        if str(path) == "-" and image:
            raise ArtemError(f"{what} '-': artem writes images to files, not to standard output")
        fmt = output_format(path) if image else None
        for there in (folder, path):  # a loop of links
            if os.path.lexists(there) and not there.exists():
                resolved(there)
        if os.path.lexists(path) and not overwrite:  # a link to nothing too (replaced with overwrite)
            raise ArtemError(f"{what} '{path}' already exists; pass --overwrite to replace it")
        if not folder.is_dir():
            raise ArtemError(f"{what} folder '{folder}' " + ("is a file" if folder.exists() else "does not exist"))
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ArtemError(f"{what} folder '{folder}' is not writable")
    except OSError as e:  # what the OS refuses of the path otherwise (a name too long, ...)
        raise ArtemError(f"{what} '{path}': {e.strerror or e}") from None
    return fmt


def _open_temporary(folder, suffix):
    """(fd, name) of a new file in ``folder`` for writing. Where Linux's O_TMPFILE works the file has no
    name (None) until ``_name_file`` links it: a process killed before that leaves nothing behind.
    Elsewhere it is a hidden ``.artem-*`` file, removed again on any error the process survives."""
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            return os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o666), None  # the umask applies
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):  # no O_TMPFILE here
                raise
    while True:  # the umask applies, as to the unnamed file (read nowhere: setting it is process-wide)
        name = _hidden_name(folder, suffix)
        try:
            return os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o666), name
        except FileExistsError:
            continue


def _hidden_name(folder, suffix):
    """A new hidden name in ``folder`` for a file on its way to its own."""
    return Path(folder) / f".artem-{secrets.token_hex(8)}{suffix}"


def _name_file(fd, path, suffix):
    """Link the unnamed file ``fd`` to ``path`` if nothing is there (returns ``path``), else to a new
    hidden name beside it (returned) for the caller to rename over ``path``."""
    source = f"/proc/self/fd/{fd}"
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:  # with dst_dir_fd, os.link is linkat(AT_SYMLINK_FOLLOW), which links the file /proc names
        try:
            os.link(source, path.name, dst_dir_fd=folder)
            return path
        except FileExistsError:
            pass
        while True:
            name = _hidden_name(path.parent, suffix)
            try:
                os.link(source, name.name, dst_dir_fd=folder)
                return name
            except FileExistsError:
                continue
    finally:
        os.close(folder)


def atomic_write(path, write, overwrite=True):
    """Call ``write(file_object)`` on a new file in ``path``'s folder, flush it to disk, then give it
    the name ``path`` in one step: ``path`` is always absent, as it was, or complete, whenever the
    process stops (SIGKILL included) or the disk fills. Without ``overwrite`` an existing ``path``
    (even one made meanwhile by another process) is an ``ArtemError``, and is left as it is."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, name = _open_temporary(folder, path.suffix)
    except OSError as e:
        raise write_error(e)(f"cannot write in '{folder}' ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if name is None:
                name = _name_file(f.fileno(), path, path.suffix)
        if name != path:
            if overwrite:
                os.replace(name, path)
            else:
                os.link(name, path)  # fails if path exists
                os.unlink(name)
    except BaseException as e:
        if name is not None and name != path:
            name.unlink(missing_ok=True)
        if isinstance(e, FileExistsError):
            raise ArtemError(f"output '{path}' already exists; pass --overwrite to replace it") from None
        if isinstance(e, OSError):
            raise write_error(e)(f"cannot write '{path}' ({e.strerror or e})") from None
        raise


def write_error(error):
    """The ArtemError class for an OSError of a write: ``NoSpace`` where the disk or the quota is full."""
    return NoSpace if error.errno in (errno.ENOSPC, errno.EDQUOT) else ArtemError


def to_pil(rgb, alpha=None, fmt="PNG"):
    """An 8-bit Pillow image of RGB (3, H, W) in 0..1 (with ``alpha`` where ``fmt`` keeps it)."""
    rgb = np.clip(np.asarray(rgb, dtype=np.float32), 0, 1).transpose(1, 2, 0)
    channels = [rgb]
    mode = "RGB"
    if alpha is not None and fmt in ("PNG", "TIFF", "WEBP"):
        channels.append(np.clip(alpha, 0, 1)[..., None])
        mode = "RGBA"
    data = np.concatenate(channels, axis=2)
    return Image.fromarray(np.rint(data * 255).astype(np.uint8), mode)


def write_image(path, rgb, alpha=None, overwrite=False):
    """Write RGB (3, H, W) in 0..1 (and alpha (H, W) in 0..1) to ``path``, format from its suffix,
    atomically; an ArtemError for arrays of other shapes or ranges, as ``preprocess.rgb_image`` says."""
    from .preprocess import rgb_image

    rgb = rgb_image(rgb, "image")
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.shape != rgb.shape[1:] or alpha.dtype.kind != "f":
            raise ArtemError(f"the alpha channel must be floats of shape {rgb.shape[1:]}, not {alpha.dtype} of {alpha.shape}")
    fmt = check_writable(a_path(path, "output"), overwrite)
    save_image(path, to_pil(rgb, alpha, fmt), fmt, overwrite, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))


def save_image(path, img, fmt, overwrite=True, **options):
    """Write the Pillow image ``img`` to ``path`` in ``fmt`` atomically (``atomic_write``). It is encoded
    in memory first: Pillow's encoders of JPEG, TIFF and BMP write to a file's descriptor themselves and
    take a short write (a full disk, a file size limit) for a whole one, which left a truncated file
    named as done; Python's writes of the bytes fail there."""
    encoded = BytesIO()
    try:
        img.save(encoded, format=fmt, **options)
    except (OSError, ValueError) as e:  # what the format cannot hold (a JPEG over 65,535 px, a WebP over 16,383)
        raise ArtemError(f"cannot write '{path}' as {fmt} ({e})") from None
    atomic_write(path, lambda f: f.write(encoded.getbuffer()), overwrite)


def quantize(rgb):
    """The 8-bit image a file would hold, back as float32 0..1 (to score what is really saved)."""
    return np.rint(np.clip(rgb, 0, 1) * 255).astype(np.float32) / 255


# the files a folder's listing takes for images: the common suffixes of photos and frames that every
# Pillow artem takes (10 and later) reads. Not a Photoshop file (beside its own export, x.psd and x.jpg
# would make one result), nor AVIF (read only where Pillow was built with libavif)
IMAGE_SUFFIXES = (".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".qoi",
                  ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".j2k", ".jpf", ".jpx")


def natural_key(path):
    """Sort key in which numbers count as numbers: frame2 before frame10; names equal so (frame1 and
    frame01, a.png and A.png) in the order of their characters, not of the folder's listing."""
    # the odd parts are the numbers split out (the digits \d takes: "²" is a digit to isdigit, not to int)
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", str(path)))], str(path)


def list_images(folder, recursive=False, include=(), exclude=(), skip=None, what="input folder", marked=None):
    """Image files of ``folder`` (and its subfolders when ``recursive``; links to folders are not
    followed) in natural order, a folder's files together (before its subfolders'), relative to it, hidden ones left out; ``include``/``exclude`` are
    glob patterns on the relative path or the name; ``skip``, a folder (the output folder, which may
    lie inside) whose files are never inputs, nor those of a subfolder that holds a file named
    ``marked`` (another batch's output folder, by its manifest). An entry with an image's suffix that is no regular file
    (a link to nothing, a pipe) is listed, for its reading to say what it is; a subfolder that cannot
    be listed is an ArtemError, not left out unsaid."""
    folder = a_path(folder, what)
    for name, patterns in (("include", include), ("exclude", exclude)):
        if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
            raise ArtemError(f"{name} must be a list of glob patterns ([{patterns!r}] for one), not {patterns!r}")
    if not folder.is_dir():
        raise ArtemError(f"{what} '{folder}' does not exist or is not a folder")
    skip = resolved(skip) if skip is not None else None
    root = resolved(folder)
    inside = lambda path, other: path == other or other in path.parents  # noqa: E731

    def unlisted(error):
        raise ArtemError(f"cannot list the folder '{error.filename}' ({error.strerror})")

    found = []
    for top, folders, names in os.walk(folder, onerror=unlisted):
        here = Path(top)
        # hidden folders (and, where they lie inside, the output folder) hold no inputs; others only when recursive
        folders[:] = sorted(f for f in folders if recursive and not f.startswith(".")
                            and (skip is None or resolved(here / f) != skip)
                            and not (marked is not None and (here / f / marked).is_file()))
        for name in names:
            path = here / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES or path.is_dir():
                continue  # hidden files (macOS's ._* files among them), other files, links to folders
            if skip is not None and path.is_file() and inside(resolved(path), skip) and not (
                    inside(root, skip) and inside(resolved(path), root)):
                continue  # a link into the output folder (whose files are inputs where the input folder lies in it)
            rel = path.relative_to(folder)
            matches = lambda patterns: any(fnmatch.fnmatch(str(rel), p) or fnmatch.fnmatch(name, p) for p in patterns)  # noqa: E731
            if (include and not matches(include)) or matches(exclude):
                continue
            found.append(rel)
    # a folder's files together, before its subfolders' (depth first, each level in natural order)
    return sorted(found, key=lambda rel: ([natural_key(part) for part in rel.parent.parts], natural_key(rel.name)))
