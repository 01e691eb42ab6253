"""Between images (RGB, 0..1, (3, H, W)) and the network's input, and the colour options.

VGG16 as trained in Caffe/Keras takes BGR in 0..255 with the ImageNet channel mean subtracted.
"""
import numpy as np
from PIL import Image

from .backend import array_module
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


def resize(channels, shape):
    """Resize float (C, H, W) or (H, W) host arrays to (H', W') with Lanczos filtering."""
    h, w = shape
    if channels.shape[-2:] == (h, w):
        return channels
    planes = channels[None] if channels.ndim == 2 else channels
    out = np.stack(
        [np.asarray(Image.fromarray(np.asarray(p, dtype=np.float32), "F").resize((w, h), Image.LANCZOS)) for p in planes]
    )
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
