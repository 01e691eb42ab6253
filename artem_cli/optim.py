"""Optimizers: L-BFGS (two-loop recursion, strong-Wolfe line search) and Adam.

Both are written once against the array module of ``x0``, so they run unchanged on NumPy and CuPy.
``fun(x)`` returns ``(value, gradient)``. ``run(max_iterations)`` is a generator that yields
``(x, value)`` after every iteration, so the caller owns progress bars, snapshots and Ctrl-C; when it
ends by itself, ``stop_reason`` says why. A NaN or infinite loss or gradient raises ``ArtemError``.
"""
import math

import numpy as np

from .backend import array_module, to_host
from .errors import ArtemError


def _dot(a, b):
    return float(array_module(a).vdot(a, b))


def _check_finite(value, grad):
    xp = array_module(grad)
    if not math.isfinite(value) or not bool(xp.isfinite(grad).all()):
        raise ArtemError("the loss or its gradient became NaN or infinite; try smaller weights or learning rate")


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


def strong_wolfe(fun, x, value, grad, direction, step, c1=SUFFICIENT_DECREASE, c2=0.9, max_evaluations=25, slope0=None):
    """Line search along ``direction`` for a step meeting the strong Wolfe conditions.

    Returns ``(step, x_new, value_new, grad_new, evaluations)``; the returned point always satisfies
    the sufficient-decrease (Armijo) condition, or ``step`` is None when no such point was found.
    Non-finite trial values count as "too far" and shrink the step. ``slope0``: grad · direction,
    where the caller has it (on a GPU each inner product is a wait for the device).
    """
    if slope0 is None:
        slope0 = _dot(grad, direction)
    evaluations = 0
    best = None  # lowest Armijo-satisfying point seen

    def evaluate(t):
        nonlocal evaluations, best
        evaluations += 1
        x_t = x + t * direction
        f_t, g_t = fun(x_t)
        finite = math.isfinite(f_t)
        slope = _dot(g_t, direction) if finite else math.nan
        if finite and f_t <= value + c1 * t * slope0 and (best is None or f_t < best[2]):
            best = (t, x_t, f_t, g_t)
        return x_t, (f_t if finite else math.inf), g_t, slope

    def armijo_fails(t, f_t):
        return f_t > value + c1 * t * slope0

    def curvature_holds(slope):
        return abs(slope) <= -c2 * slope0

    def zoom(lo, f_lo, s_lo, hi, f_hi, s_hi):
        while evaluations < max_evaluations:
            a, b = min(lo, hi), max(lo, hi)
            t = _cubic_minimum(lo, f_lo, s_lo, hi, f_hi, s_hi, a, b)
            if min(t - a, b - t) < 0.1 * (b - a):  # too close to an end: bisect instead
                t = (a + b) / 2
            x_t, f_t, g_t, s_t = evaluate(t)
            if armijo_fails(t, f_t) or f_t >= f_lo:
                hi, f_hi, s_hi = t, f_t, s_t
            else:
                if curvature_holds(s_t):
                    return t, x_t, f_t, g_t
                if s_t * (hi - lo) >= 0:
                    hi, f_hi, s_hi = lo, f_lo, s_lo
                lo, f_lo, s_lo = t, f_t, s_t
            if abs(hi - lo) * max(1.0, abs(s_lo)) < 1e-12:
                break
        return None

    t_prev, f_prev, s_prev = 0.0, value, slope0
    t = step
    found = None
    while evaluations < max_evaluations:
        x_t, f_t, g_t, s_t = evaluate(t)
        if armijo_fails(t, f_t) or (evaluations > 1 and f_t >= f_prev):
            found = zoom(t_prev, f_prev, s_prev, t, f_t, s_t)
            break
        if curvature_holds(s_t):
            found = (t, x_t, f_t, g_t)
            break
        if s_t >= 0:
            found = zoom(t, f_t, s_t, t_prev, f_prev, s_prev)
            break
        t_next = _cubic_minimum(t_prev, f_prev, s_prev, t, f_t, s_t, t + 0.01 * (t - t_prev), 10 * t)
        t_prev, f_prev, s_prev, t = t, f_t, s_t, t_next
    if found is None:
        found = best
    if found is None:
        return None, x, value, grad, evaluations
    return (*found, evaluations)


class CurvatureHistory:
    """L-BFGS's last ``size`` correction pairs (s, y) for images of ``shape``, and the two-loop
    recursion over them.

    The pairs are the rows of one matrix on the device (s of slot j at row 2j, y at row 2j + 1), and
    their inner products s_i·y_j and y_i·y_j sit on the host, each computed once, when its newer pair
    arrives. The recursion's 2 x ``size`` inner products with the changing vector are then
    scalar arithmetic on those, in the same order as the textbook loops (Nocedal & Wright, Algorithm
    7.4), and the device does three passes over the matrix an iteration: the new pair against all
    (in ``add``), the gradient against all, and the direction as one combination of all rows (in
    ``direction``), instead of 4 x ``size`` vector operations, each a kernel launch on a GPU.
    """

    def __init__(self, xp, size, shape, dtype=np.float32):
        self.xp, self.size = xp, size
        self.rows = xp.empty((2 * size, math.prod(shape)), dtype=dtype)
        self.order = []  # slots, oldest pair first
        self.sy = np.zeros((size, size))  # sy[i, j] = s_i·y_j, by slot
        self.yy = np.zeros((size, size))  # yy[i, j] = y_i·y_j

    def __len__(self):
        return len(self.order)

    def clear(self):
        self.order.clear()

    def add(self, s, y):
        """Keep (s, y), forgetting the oldest pair when full."""
        if len(self.order) < self.size:
            slot = len(self.order)  # slots fill in order, so the pairs held are rows[:2 * len]
        else:
            slot = self.order.pop(0)
        self.order.append(slot)
        self.rows[2 * slot], self.rows[2 * slot + 1] = s.ravel(), y.ravel()
        held = self.rows[: 2 * len(self.order)]
        products = to_host(held @ self.rows[2 * slot : 2 * slot + 2].T).astype(np.float64)  # every row against s, y
        for j in self.order:
            self.sy[j, slot], self.sy[slot, j] = products[2 * j, 1], products[2 * j + 1, 0]
            self.yy[j, slot] = self.yy[slot, j] = products[2 * j + 1, 1]

    def direction(self, grad):
        """-H grad, H the L-BFGS inverse Hessian approximation of the pairs held (-grad if none)."""
        k = len(self.order)
        if k == 0:
            return -grad
        xp, order = self.xp, self.order
        held = self.rows[: 2 * k]
        product = to_host(held @ grad.ravel()).astype(np.float64)
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
        weights = np.zeros(2 * k)  # the direction: -gamma grad + sum of (alpha - beta) s - gamma alpha y
        weights[0::2][order], weights[1::2][order] = alpha - beta, -gamma * alpha
        weights = xp.asarray(weights.astype(held.dtype))
        return (weights @ held).reshape(grad.shape) - gamma * grad


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

    def _steepest_descent(self, x, value, grad):
        """The first of ``stall_steps`` along -grad that decreases the loss enough (Armijo), as
        ``(step, x, value, grad)``, or None."""
        largest, slope = float(array_module(grad).abs(grad).max()), -_dot(grad, grad)
        for size in self.stall_steps:
            step = size / largest
            x_new = x - step * grad
            value_new, grad_new = self.fun(x_new)
            self.evaluations += 1
            if math.isfinite(value_new) and value_new <= value + SUFFICIENT_DECREASE * step * slope:
                return step, x_new, value_new, grad_new
        return None

    def run(self, max_iterations):
        xp = array_module(self.x)
        x = self.x
        value, grad = self.fun(x)
        self.evaluations += 1
        _check_finite(value, grad)
        pairs = CurvatureHistory(xp, max(1, min(self.history, max_iterations)), x.shape, x.dtype)
        rescued = False  # the last step was one of the stall steps
        for _ in range(max_iterations):
            if float(xp.abs(grad).max()) <= self.gradient_tolerance:
                self.stop_reason = "the gradient vanished"
                return
            direction = pairs.direction(grad)
            slope = _dot(grad, direction)
            if slope >= 0:  # not a descent direction: forget the curvature history
                pairs.clear()
                direction = -grad
                slope = _dot(grad, direction)
            step = 1.0 if len(pairs) else min(1.0, 1.0 / float(xp.abs(grad).sum()))
            step, x_new, value_new, grad_new, evaluations = strong_wolfe(self.fun, x, value, grad, direction, step,
                                                                         slope0=slope)
            self.evaluations += evaluations
            stalled = step is None or self._unchanged(value, value_new)
            found = None
            if stalled and self.stall_steps and not rescued:
                pairs.clear()  # they led here
                found = self._steepest_descent(x, value, grad)
                if found is not None:
                    step, x_new, value_new, grad_new = found
            rescued = found is not None
            if step is None:
                self.stop_reason = "the line search found no further decrease"
                return
            _check_finite(value_new, grad_new)
            s, y = x_new - x, grad_new - grad
            ys, yy = to_host(xp.stack([xp.vdot(y, s), xp.vdot(y, y)])).tolist()  # one read from a GPU, not two
            if ys > 1e-10 * yy:
                pairs.add(s, y)
            unchanged = self._unchanged(value, value_new)
            x, value, grad = x_new, value_new, grad_new
            self.x = x
            yield x, value
            if unchanged:
                self.stop_reason = "the loss stopped changing"
                return
        self.stop_reason = "the iteration limit was reached"


class Adam:
    """Adam (Kingma & Ba) with learning rate ``lr`` in the units of x (here 0..255 pixel levels), or
    ``lr(k)``, a function of the step number k = 1, 2, ... (a schedule, for training).

    Each yielded value is the loss at the point the step was taken from (Adam needs no other).
    ``state()`` is what a later ``Adam(..., state=...)`` needs to go on exactly where this one is."""

    def __init__(self, fun, x0, lr, beta1=0.9, beta2=0.999, eps=1e-8, state=None):
        if not callable(lr) and not lr > 0:
            raise ArtemError(f"the learning rate must be positive, not {lr}")
        self.fun, self.x = fun, x0
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        xp = array_module(x0)
        self.m, self.v, self.steps = state if state is not None else (xp.zeros_like(x0), xp.zeros_like(x0), 0)
        self.evaluations = 0
        self.stop_reason = None

    def state(self):
        return self.m, self.v, self.steps

    def run(self, max_iterations):
        xp = array_module(self.x)
        x = self.x
        for _ in range(max_iterations):
            k = self.steps + 1
            value, grad = self.fun(x)
            self.evaluations += 1
            _check_finite(value, grad)
            self.m = self.beta1 * self.m + (1 - self.beta1) * grad
            self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
            m_hat = self.m / (1 - self.beta1**k)
            v_hat = self.v / (1 - self.beta2**k)
            lr = self.lr(k) if callable(self.lr) else self.lr
            x = x - lr * m_hat / (xp.sqrt(v_hat) + self.eps)
            self.x, self.steps = x, k
            yield x, value
        self.stop_reason = "the iteration limit was reached"
