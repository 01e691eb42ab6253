"""Between images (RGB, 0..1, (3, H, W)) and the network's input, and the colour options.

VGG16 as trained in Caffe/Keras takes BGR in 0..255 with the ImageNet channel mean subtracted.
"""
import math

import numpy as np
from PIL import Image

from .backend import array_module, to_host
from .errors import ArtemError, first_line
from .vgg import BGR_MEAN


def to_vgg(rgb):
    """RGB 0..1 -> BGR 0..255 minus the mean (the space the optimizer works in)."""
    xp = array_module(rgb)
    mean = xp.asarray(BGR_MEAN, dtype=rgb.dtype)[:, None, None]
    return rgb[::-1] * 255 - mean


def from_vgg(x):
    """Inverse of ``to_vgg`` (no clipping)."""
    xp = array_module(x)
    mean = xp.asarray(BGR_MEAN, dtype=x.dtype)[:, None, None]
    return ((x + mean) / 255)[::-1]


def valid_range(xp=np):
    """(low, high), (3, 1, 1) each: the bounds of a 0..1 RGB image in VGG space."""
    low = to_vgg(xp.zeros((3, 1, 1), dtype=xp.float32))
    return low, low + 255


def scaled_shape(shape, longest):
    """(H, W) with the longest side ``longest`` and the aspect ratio of ``shape`` (at least 1 px)."""
    h, w = shape[-2:]
    scale = longest / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


# how far outside 0..1 a caller's float image may stray (rounding, a resize's overshoot: Lanczos's is
# about a tenth) before it is taken for another scale (0..255, -1..1, -0.5..0.5) and refused; what
# strays less is clipped
RANGE_SLACK = 0.25


def rgb_image(image, what):
    """``image`` as the API takes it, RGB (3, H, W) floats in 0..1 on the host, as float32 (clipped to
    0..1); an ArtemError that says what is wrong otherwise (``what``: "content image", ...)."""
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        raise ArtemError(f"the {what} must be an array, not {type(image).__name__}")
    if isinstance(image, np.ma.MaskedArray) and np.ma.getmask(image).any():  # its mask would be ignored
        raise ArtemError(f"the {what} is a masked array; artem takes every pixel: fill it first (image.filled(0))")
    if array_module(image) is np:
        try:
            image = np.asarray(image)
        except (TypeError, ValueError, RuntimeError) as e:  # a tensor that needs grad, of a type NumPy has not
            raise ArtemError(f"the {what} ({type(image).__name__}) is no array NumPy can read ({first_line(e, 200)}); "
                             "give a NumPy array") from None
    else:  # CuPy's: its errors are the GPU's
        image = to_host(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4) and image.shape[0] not in (3, 4):
        raise ArtemError(f"the {what} has shape {image.shape}, channels last; artem takes RGB as (3, H, W): "
                         + ("image[..., :3].transpose(2, 0, 1) (its alpha left out)" if image.shape[-1] == 4
                            else "image.transpose(2, 0, 1)"))
    if image.ndim == 3 and image.shape[0] == 4:
        raise ArtemError(f"the {what} has shape {image.shape}, RGBA; artem takes RGB as (3, H, W): image[:3] (its alpha "
                         "left out; stylize_file keeps a file's alpha)")
    if image.ndim == 4 and image.shape[0] == 1:  # a batch of one, as a framework's tensor
        raise ArtemError(f"the {what} has shape {image.shape}, a batch of one; artem takes one RGB image as (3, H, W): "
                         "image[0]")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ArtemError(f"the {what} has shape {image.shape}; artem takes RGB as (3, H, W) (a grey image: "
                         "np.repeat(grey[None], 3, axis=0))")
    if image.dtype.kind != "f":
        raise ArtemError(f"the {what} holds {image.dtype} values; artem takes floats in 0..1 (8-bit pixels: "
                         "image / 255)")
    if not image.size:
        raise ArtemError(f"the {what} is empty: {image.shape[1]}x{image.shape[2]} px")
    low, high = float(image.min()), float(image.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ArtemError(f"the {what} holds NaN or infinite values")
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:
        raise ArtemError(f"the {what}'s values span {low:.4g}..{high:.4g}; artem takes 0..1 (from 0..255: image / 255; "
                         "from -1..1: (image + 1) / 2; from -0.5..0.5: image + 0.5)")
    return np.clip(image, 0, 1).astype(np.float32, copy=False)


def resize(channels, shape):
    """Resize float (C, H, W) or (H, W) host arrays in 0..1 to (H', W') with Lanczos filtering, clipped
    to 0..1 (Lanczos overshoots at edges: a content image's features beyond what an image can be
    would be a target no image reaches)."""
    h, w = shape
    if channels.shape[-2:] == (h, w):
        return channels
    planes = channels[None] if channels.ndim == 2 else channels
    out = np.stack(
        [np.asarray(Image.fromarray(np.asarray(p, dtype=np.float32), "F").resize((w, h), Image.LANCZOS)) for p in planes]
    )
    np.clip(out, 0, 1, out=out)
    return out[0] if channels.ndim == 2 else out


# ITU-R BT.601 luma and the YIQ chroma axes, for --original-colors
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def keep_colors(stylized, content):
    """The luminance of ``stylized`` with the chroma of ``content`` (both RGB (3, H, W) 0..1)."""
    xp = array_module(stylized)
    to_yiq = xp.asarray(_RGB_TO_YIQ)
    yiq_s = xp.tensordot(to_yiq, stylized, axes=1)
    yiq_c = xp.tensordot(to_yiq, content, axes=1)
    yiq = xp.concatenate([yiq_s[:1], yiq_c[1:]])
    return xp.clip(xp.tensordot(xp.asarray(_YIQ_TO_RGB), yiq, axes=1), 0, 1)
