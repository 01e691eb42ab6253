"""Optimizers: L-BFGS (two-loop recursion, strong-Wolfe line search) and Adam.

Both are written once against the array module of ``x0``, so they run unchanged on NumPy and CuPy.
``fun(x, probes)`` returns ``(value, grad, readings)``: the loss, its gradient, and the floats of
``probes(grad)`` (0-d arrays on x's device: what the optimizer needs to know of the gradient), read
from the device in one transfer with the value. On a GPU each read is a wait for the device, which
then idles until Python has queued the next work: L-BFGS reads once per evaluation and once per
iteration after the first, Adam once per evaluation (one per step, and with ``after_step`` one more). ``plain(f)`` makes such a function of an ``f(x) → (value, grad)``.
``run(max_iterations)`` is a generator that yields ``(x, value)`` after every iteration, so the
caller owns progress bars, snapshots and Ctrl-C; when it ends by itself, ``stop_reason`` says why. A
NaN or infinite loss or gradient raises ``ArtemError``.
"""
import math
from typing import NamedTuple

import numpy as np

from .backend import array_module, read, to_host
from .errors import ArtemError


def plain(f):
    """``f(x) → (value, grad)`` as the optimizers call an objective (its probes in a second read)."""

    def fun(x, probes):
        value, grad = f(x)
        return value, grad, read(probes(grad))

    return fun


class Point(NamedTuple):
    """A point evaluated, and what L-BFGS knows of its gradient g without reading it again."""

    x: object
    value: float
    grad: object
    l1: float  # sum |g|: NaN or infinite where g has such an entry (or where its float32 sum overflows)
    largest: float  # max |g|
    square: float  # g·g


def _check_finite(value, l1):
    if not (math.isfinite(value) and math.isfinite(l1)):
        raise ArtemError("the loss or its gradient became NaN or infinite; try smaller weights or learning rate")


def evaluate(fun, x, direction=None):
    """``fun`` at x as a ``Point``, and the slope g·direction along a ``direction`` given (else None),
    in one read. A finite loss with a gradient that is not raises ``ArtemError``; an infinite or NaN
    loss is the caller's to judge (a line search takes it for "too far")."""

    def probes(g):
        xp = array_module(g)
        size = xp.abs(g)
        return [size.sum(), size.max(), xp.vdot(g, g), *([xp.vdot(g, direction)] if direction is not None else [])]

    value, grad, (l1, largest, square, *slope) = fun(x, probes)
    if math.isfinite(value):
        _check_finite(value, l1)
    return Point(x, value, grad, l1, largest, square), (slope[0] if slope else None)


def _cubic_minimum(t1, f1, g1, t2, f2, g2, lo, hi):
    """Minimizer of the cubic through two points with slopes, clamped to [lo, hi]; bisection if none."""
    if not (math.isfinite(f1) and math.isfinite(f2)) or t1 == t2:
        return (lo + hi) / 2
    d1 = g1 + g2 - 3 * (f1 - f2) / (t1 - t2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square < 0:
        return (lo + hi) / 2
    d2 = math.copysign(math.sqrt(d2_square), t2 - t1)
    denominator = g2 - g1 + 2 * d2
    if denominator == 0:
        return (lo + hi) / 2
    t = t2 - (t2 - t1) * (g2 + d2 - d1) / denominator
    return min(max(t, lo), hi)


SUFFICIENT_DECREASE = 1e-4  # Armijo's constant: a step must lower the loss by this share of its slope's promise


def strong_wolfe(fun, start, direction, step, slope0, c1=SUFFICIENT_DECREASE, c2=0.9, max_evaluations=25):
    """Line search from the ``Point`` ``start`` along ``direction`` (``slope0``: start.grad ·
    direction) for a step meeting the strong Wolfe conditions.

    Returns ``(step, point, evaluations)``; the point returned always satisfies the sufficient-decrease
    (Armijo) condition and is finite, or ``step`` is None (and ``point`` is ``start``) when no such
    point was found. A trial whose value is infinite or NaN counts as "too far" and shrinks the step.
    """
    evaluations = 0
    best = None  # the lowest Armijo-satisfying point seen, as (t, point)

    def trial(t):
        nonlocal evaluations, best
        evaluations += 1
        point, slope = evaluate(fun, start.x + t * direction, direction)
        if not math.isfinite(point.value):
            return point, math.inf, math.nan
        if point.value <= start.value + c1 * t * slope0 and (best is None or point.value < best[1].value):
            best = (t, point)
        return point, point.value, slope

    def armijo_fails(t, f_t):
        return f_t > start.value + c1 * t * slope0

    def curvature_holds(slope):
        return abs(slope) <= -c2 * slope0

    def zoom(lo, f_lo, s_lo, hi, f_hi, s_hi):
        while evaluations < max_evaluations:
            a, b = min(lo, hi), max(lo, hi)
            t = _cubic_minimum(lo, f_lo, s_lo, hi, f_hi, s_hi, a, b)
            if min(t - a, b - t) < 0.1 * (b - a):  # too close to an end: bisect instead
                t = (a + b) / 2
            point, f_t, s_t = trial(t)
            if armijo_fails(t, f_t) or f_t >= f_lo:
                hi, f_hi, s_hi = t, f_t, s_t
            else:
                if curvature_holds(s_t):
                    return t, point
                if s_t * (hi - lo) >= 0:
                    hi, f_hi, s_hi = lo, f_lo, s_lo
                lo, f_lo, s_lo = t, f_t, s_t
            if abs(hi - lo) * max(1.0, abs(s_lo)) < 1e-12:
                break
        return None

    t_prev, f_prev, s_prev = 0.0, start.value, slope0
    t = step
    found = None
    while evaluations < max_evaluations:
        point, f_t, s_t = trial(t)
        if armijo_fails(t, f_t) or (evaluations > 1 and f_t >= f_prev):
            found = zoom(t_prev, f_prev, s_prev, t, f_t, s_t)
            break
        if curvature_holds(s_t):
            found = (t, point)
            break
        if s_t >= 0:
            found = zoom(t, f_t, s_t, t_prev, f_prev, s_prev)
            break
        t_next = _cubic_minimum(t_prev, f_prev, s_prev, t, f_t, s_t, t + 0.01 * (t - t_prev), 10 * t)
        t_prev, f_prev, s_prev, t = t, f_t, s_t, t_next
    if found is None:
        found = best
    if found is None:
        return None, start, evaluations
    return (*found, evaluations)


class CurvatureHistory:
    """L-BFGS's last ``size`` correction pairs (s, y) for images like ``image`` (shape, type and
    device), and the two-loop recursion over them.

    The pairs are the rows of one matrix on the device (s of slot j at row 2j, y at row 2j + 1), with
    a slot more than ``size`` for a pair offered by ``add``: the next ``direction`` keeps it where
    s·y > 1e-10 y·y (the curvature that keeps the approximation positive definite), forgetting the
    oldest pair when full. The inner products s_i·y_j and y_i·y_j sit on the host, each computed
    once, when its newer pair arrives. The recursion's 2 x ``size`` inner products with the changing
    vector are then scalar arithmetic on those and on the rows' products with the gradient, in the
    same order as the textbook loops (Nocedal & Wright, Algorithm 7.4). So the device does three
    passes over the matrix an iteration (the new pair against all, the gradient against all, the
    direction as one combination of all rows) and is read once, instead of 4 x ``size`` vector
    operations, each a kernel launch on a GPU, and a read for each product.
    """

    def __init__(self, image, size):
        self.xp, self.size = array_module(image), size
        self.rows = self.xp.zeros_like(image, shape=(2 * (size + 1), image.size))
        self.order = []  # slots of the pairs held, oldest first
        self.offered = None  # the slot of the pair offered, until the next ``direction``
        self.sy = np.zeros((size + 1, size + 1))  # sy[i, j] = s_i·y_j, by slot
        self.yy = np.zeros((size + 1, size + 1))  # yy[i, j] = y_i·y_j

    def __len__(self):
        return len(self.order)

    def clear(self):
        self.order.clear()
        self.offered = None

    def add(self, s, y):
        """Offer (s, y), in the slot no pair held uses (nothing is read from the device here)."""
        self.offered = min(set(range(self.size + 1)) - set(self.order))
        self.rows[2 * self.offered], self.rows[2 * self.offered + 1] = s.ravel(), y.ravel()

    def direction(self, grad, square):
        """``(d, slope)``: d = -H grad, H the L-BFGS inverse Hessian approximation of the pairs held
        once the pair offered is kept or not, and slope = grad·d, from grad's ``square`` (grad·grad);
        -grad and -square where no pair is held."""
        xp = self.xp
        used = self.order + ([self.offered] if self.offered is not None else [])
        if not used:
            return -grad, -square
        held = self.rows[: 2 * (max(used) + 1)]  # every slot in use (and any other below them, unweighted)
        with_grad = (held @ grad.ravel())[:, None]
        if self.offered is not None:  # every row against s, y and grad in one read
            offered = self.rows[2 * self.offered : 2 * self.offered + 2]
            products = to_host(xp.concatenate((held @ offered.T, with_grad), axis=1)).astype(np.float64)
            self._keep(self.offered, products)
            self.offered = None
        else:
            products = to_host(with_grad).astype(np.float64)
        k, order = len(self.order), self.order
        if k == 0:
            return -grad, -square
        product = products[:, -1]
        sg, yg = product[0::2][order], product[1::2][order]  # s_i·grad, y_i·grad, oldest first
        sy, yy = self.sy[np.ix_(order, order)], self.yy[np.ix_(order, order)]
        rho = 1.0 / np.diag(sy)
        alpha = np.zeros(k)
        for i in reversed(range(k)):  # q = -grad - sum over newer j of alpha_j y_j;  alpha_i = rho_i s_i·q
            alpha[i] = rho[i] * (-sg[i] - sy[i, i + 1 :] @ alpha[i + 1 :])
        gamma = float(sy[-1, -1] / yy[-1, -1])
        beta = np.zeros(k)
        for i in range(k):  # r = gamma q + sum over older j of (alpha_j - beta_j) s_j;  beta_i = rho_i y_i·r
            beta[i] = rho[i] * (gamma * (-yg[i] - yy[i] @ alpha) + sy[:i, i] @ (alpha[:i] - beta[:i]))
        weights = np.zeros(len(held))  # the direction: -gamma grad + sum of (alpha - beta) s - gamma alpha y
        weights[0::2][order], weights[1::2][order] = alpha - beta, -gamma * alpha
        slope = float(weights @ product) - gamma * square
        return (xp.asarray(weights.astype(held.dtype)) @ held).reshape(grad.shape) - gamma * grad, slope

    def _keep(self, slot, products):
        """Keep the pair offered in ``slot`` if its curvature s·y is positive enough, from
        ``products`` (every row against its s and y, in the first two columns)."""
        if not products[2 * slot, 1] > 1e-10 * products[2 * slot + 1, 1]:
            return
        if len(self.order) == self.size:
            self.order.pop(0)
        self.order.append(slot)
        for j in self.order:
            self.sy[j, slot], self.sy[slot, j] = products[2 * j, 1], products[2 * j + 1, 0]
            self.yy[j, slot] = self.yy[slot, j] = products[2 * j + 1, 1]


class LBFGS:
    """Limited-memory BFGS with ``history`` correction pairs (100, as in jcjohnson/neural-style).

    Stops when the gradient's largest entry falls below ``gradient_tolerance``, when the loss changes by
    less than ``change_tolerance`` (relative) in an iteration, or when the line search finds no decrease.

    ``stall_steps``: where the line search stalls (no decrease, or one below ``change_tolerance``),
    steepest-descent steps tried in turn before stopping, each given as the largest change of any
    entry of x, with the curvature history cleared; not twice in a row (where the line search
    stalls again right after such a step, the run stops: near a minimum they would only crawl on). A
    loss with jumps (a binarized network's: each activation whose sign flips moves it) can trap the
    line search in steps far too small to matter, where the jumps outweigh the slope; a step of a set
    size gets past them.

    Reads from the device: one per evaluation (the value with the gradient's sum, max and square,
    and the slope along the line) and one per iteration after the first (``CurvatureHistory.direction``,
    once there is a pair).
    """

    def __init__(self, fun, x0, history=100, gradient_tolerance=1e-7, change_tolerance=1e-9, stall_steps=()):
        if history < 1:
            raise ArtemError("L-BFGS history must be at least 1")
        self.fun, self.x = fun, x0
        self.history = history
        self.gradient_tolerance, self.change_tolerance = gradient_tolerance, change_tolerance
        self.stall_steps = tuple(stall_steps)
        self.evaluations = 0
        self.stop_reason = None

    def _unchanged(self, value, value_new):
        return abs(value - value_new) <= self.change_tolerance * max(abs(value_new), 1e-30)

    def _steepest_descent(self, point):
        """The first of ``stall_steps`` along -grad from ``point`` that decreases the loss enough
        (Armijo), as ``(step, point)``, or None."""
        for size in self.stall_steps:
            step = size / point.largest
            new, _ = evaluate(self.fun, point.x - step * point.grad)
            self.evaluations += 1
            if math.isfinite(new.value) and new.value <= point.value - SUFFICIENT_DECREASE * step * point.square:
                return step, new
        return None

    def run(self, max_iterations):
        point, _ = evaluate(self.fun, self.x)
        self.evaluations += 1
        _check_finite(point.value, point.l1)
        pairs = CurvatureHistory(self.x, max(1, min(self.history, max_iterations)))
        rescued = False  # the last step was one of the stall steps
        for _ in range(max_iterations):
            if point.largest <= self.gradient_tolerance:
                self.stop_reason = "the gradient vanished"
                return
            direction, slope = pairs.direction(point.grad, point.square)
            if slope >= 0:  # not a descent direction: forget the curvature history
                pairs.clear()
                direction, slope = -point.grad, -point.square
            step = 1.0 if len(pairs) else min(1.0, 1.0 / point.l1)
            step, new, evaluations = strong_wolfe(self.fun, point, direction, step, slope)
            self.evaluations += evaluations
            stalled = step is None or self._unchanged(point.value, new.value)
            found = None
            if stalled and self.stall_steps and not rescued:
                pairs.clear()  # they led here
                found = self._steepest_descent(point)
                if found is not None:
                    step, new = found
            rescued = found is not None
            if step is None:
                self.stop_reason = "the line search found no further decrease"
                return
            pairs.add(new.x - point.x, new.grad - point.grad)
            unchanged = self._unchanged(point.value, new.value)
            point = new
            self.x = point.x
            yield point.x, point.value
            if unchanged:
                self.stop_reason = "the loss stopped changing"
                return
        self.stop_reason = "the iteration limit was reached"


class Adam:
    """Adam (Kingma & Ba) with learning rate ``lr`` in the units of x (here 0..255 pixel levels), or
    ``lr(k)``, a function of the step number k = 1, 2, ... (a schedule, for training).

    Each yielded value is the loss at the point the step was taken from (Adam needs no other: a
    training's loss of the batch it stepped with), or, with ``after_step``, at the point the step
    reached (a loss the point alone decides, as a stylization's): each evaluation then serves the
    next step too, so a run of n steps evaluates n + 1 times, x0 first.
    ``state()`` is what a later ``Adam(..., state=...)`` needs to go on exactly where this one is."""

    def __init__(self, fun, x0, lr, beta1=0.9, beta2=0.999, eps=1e-8, state=None, after_step=False):
        if not callable(lr) and not lr > 0:
            raise ArtemError(f"the learning rate must be positive, not {lr}")
        self.fun, self.x = fun, x0
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        xp = array_module(x0)
        self.m, self.v, self.steps = state if state is not None else (xp.zeros_like(x0), xp.zeros_like(x0), 0)
        self.after_step = after_step
        self.evaluations = 0
        self.stop_reason = None

    def state(self):
        return self.m, self.v, self.steps

    def run(self, max_iterations):
        xp = array_module(self.x)
        x = self.x
        from . import gpu_float

        step = gpu_float.for_arrays(xp, "adam_step", x.dtype) or adam_step  # CuPy's float32: one launch

        def value_and_gradient(x):
            value, grad, (l1,) = self.fun(x, lambda g: [xp.abs(g).sum()])
            self.evaluations += 1
            _check_finite(value, l1)
            return value, grad

        if self.after_step and max_iterations > 0:
            value, grad = value_and_gradient(x)
        for _ in range(max_iterations):
            k = self.steps + 1
            if not self.after_step:
                value, grad = value_and_gradient(x)
            lr = self.lr(k) if callable(self.lr) else self.lr
            x, self.m, self.v = step(x, grad, self.m, self.v, k, lr, self.beta1, self.beta2, self.eps)
            self.x, self.steps = x, k
            if self.after_step:
                value, grad = value_and_gradient(x)
            yield x, value
        self.stop_reason = "the iteration limit was reached"


def adam_step(x, grad, m, v, k, lr, beta1, beta2, eps):
    """Adam's step number ``k`` from x with the gradient ``grad`` and the moments m and v before it:
    the new (x, m, v), as new arrays. The NumPy twin of ``kernels/adam_step.cu``."""
    xp = array_module(x)
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1**k)
    v_hat = v / (1 - beta2**k)
    return x - lr * m_hat / (xp.sqrt(v_hat) + eps), m, v
