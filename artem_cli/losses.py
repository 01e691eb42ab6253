"""The three terms of neural style transfer, each as (value, gradient).

All are means, not sums, so the same weights give the same balance at 256 px and at 2048 px:

* content: mean over C·H·W of (F - P)^2 at a layer;
* style: mean over C·C of (G - A)^2, with the Gram matrix G = F Fᵀ / (C·H·W), so G is an average over
  positions and does not grow with the image (the normalisation of jcjohnson/neural-style);
* total variation: mean over the image of the squared differences between neighbouring pixels.

Each value is a Python float for NumPy arrays and a 0-d array for CuPy's: reading a value off a GPU
waits for everything queued before it, so the objective reads all its terms at once, at the end.
"""
import numpy as np

from .backend import array_module, matmul


def _value(total):
    """A sum as the losses return it: a float from NumPy, a 0-d array left on the GPU from CuPy."""
    return float(total) if isinstance(total, (np.generic, np.ndarray, float)) else total


def content_loss(features, target, weight=1.0):
    """``weight`` times the mean squared difference, and its gradient with respect to ``features``."""
    diff = features - target
    n = diff.size
    return _value((diff * diff).sum()) * (weight / n), diff * (2.0 * weight / n)


def gram(features):
    """G = F Fᵀ / (C·H·W) for features (C, H, W)."""
    c = features.shape[0]
    f = features.reshape(c, -1)
    return matmul(f, f.T) / f.size


def style_loss(features, target_gram, weight=1.0):
    """``weight`` times the mean over C·C of (G - A)^2, and its gradient with respect to ``features``."""
    f = features.reshape(features.shape[0], -1)
    diff = gram(features) - target_gram
    value = _value((diff * diff).sum()) * (weight / diff.size)
    # dL/dG = 2 (G - A) / C², and G = F Fᵀ / n with symmetric (G - A) gives dL/dF = 2 dL/dG F / n
    grad = matmul(diff, f) * (4.0 * weight / (diff.size * f.size))
    return value, grad.reshape(features.shape)


def within_range(loss, x, low, high, weight=1e4):
    """``loss`` of x clipped to [low, high], plus ``weight`` times the mean squared distance of x
    from that range: the loss of the image as it can be saved, while the penalty pulls pixels that
    wander outside back to the boundary, where the loss's own gradient reaches them again."""
    xp = array_module(x)
    clipped = xp.clip(x, low, high)
    outside = x - clipped
    value, grad = loss(clipped)
    grad *= outside == 0
    grad += outside * (2 * weight / x.size)
    return value + _value(xp.vdot(outside, outside)) * (weight / x.size), grad


def tv_loss(image, weight=1.0):
    """``weight`` times the mean squared difference of vertically and horizontally neighbouring
    pixels, and its gradient."""
    xp = array_module(image)
    dy = image[:, 1:, :] - image[:, :-1, :]
    dx = image[:, :, 1:] - image[:, :, :-1]
    n = image.size
    value = (_value((dy * dy).sum()) + _value((dx * dx).sum())) * (weight / n)
    grad = xp.zeros_like(image)
    # each in place on a view (``grad[...] += d`` would also write the view back: one more pass on a GPU)
    for view, d, subtract in ((grad[:, 1:, :], dy, False), (grad[:, :-1, :], dy, True),
                              (grad[:, :, 1:], dx, False), (grad[:, :, :-1], dx, True)):
        (xp.subtract if subtract else xp.add)(view, d, out=view)
    grad *= 2.0 * weight / n
    return value, grad
