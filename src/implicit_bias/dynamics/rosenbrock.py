"""Gradient flow of identical factors by an L-stable Rosenbrock method with the exact Jacobian.

With identical factors the flow is a mirror flow (SPEC A.10, A.12): ``φ' = -B^T r`` with
``r = B z(φ) - y``; writing ``φ = φ0 - B^T λ`` it is the ``m``-dimensional dual flow
``λ' = f(λ) = B z(φ0 - B^T λ) - y`` whose Jacobian ``J = -H``, ``H = B diag(dz/dφ) B^T``, is
symmetric negative semidefinite (``dz/dφ = N z^(2-2/N)``, SPEC A.4). A stiffly accurate,
L-stable Rosenbrock method with this exact Jacobian (RODAS5P: eight stages, order 5 with an
embedded order-4 solution; RODAS4 of Hairer & Wanner, *Solving ODEs II* §IV.7, also available)
solves all its stages with the one SPD matrix ``I/(hγ) + H``: one Gram matrix and one Cholesky
factorisation per step.

Design choices (measured against scipy's BDF on λ, module ``flow``):

- The state is ``φ`` itself, updated per coordinate (``φ <- φ - B^T Δλ``), never recomputed as
  ``φ0 - B^T λ``: coordinates that move over many orders of magnitude keep their relative
  precision and no rebase is needed. A one-step method has no history to lose either.
- The local error ``B^T (embedded - solution)`` is measured in ``log z``: every coordinate to
  relative accuracy ``rtol`` through the weight ``(dz/dφ)/z = N z^(1-2/N)`` (depth 1: relative
  to ``max(1, max|z|)``). Negligible coordinates do not throttle the step, and every
  coordinate that matters is followed to ``rtol``: the saved path is a faithful trajectory.
- On the plateaus between escapes (N >= 3, tiny ``alpha``) ``λ`` drifts by ``h |r|`` with
  ``h`` up to ``1e15``, orthogonally to the columns of the escaped coordinates ``S``, whose
  ``φ_i = ... - b_i^T λ`` must stay accurate to ``rtol``. Computed as ``b_i^T Δλ`` the
  increment would carry a rounding error ``eps h |r|`` (0.1 at ``h = 1e15``). So λ-space is
  rotated by the orthogonal ``Q`` of a QR factorisation of ``B_S``: in that basis ``b_i``
  (``i ∈ S``) has exact zeros outside its first ``|S|`` rows, the Cholesky factorisation of the
  graded matrix ``I/(hγ) + H`` keeps the small ``S``-block of ``Δλ`` to relative accuracy, and
  ``b_i^T Δλ`` never touches the large drift.
- The Gram matrix leaves out the columns whose total weight ``hγ Σ d_j |b_j|^2`` stays below
  ``1e-3 rtol``: they change ``(I/(hγ) + H)^{-1}`` by less than that, relatively.
- Step sizes follow Hairer's RODAS controller with Gustafsson's predictive rule; time is
  accumulated with compensated summation, so steps of size 1 still count at ``t ~ 1e18``.
- Saved times are hit by steps, never by interpolation (the policy of
  :mod:`implicit_bias.dynamics.driver`): every saved state is an error-controlled node.

Matrix-free (``A`` an operator of :mod:`implicit_bias.sensing`): the stage systems are solved by
the projected CG of :class:`~implicit_bias.krylov.GramPCG` to the relative residual
``CG_TOL * rtol`` (1e-9 at the default rtol), three orders below the local error the controller
admits; there is no rotated exact block, so a step that would need one (N >= 3 from a tiny init,
on the plateaus between escapes) ends the run ``failed`` with a message saying so.

:class:`RodasMirrorFlow` is a stepper of :func:`implicit_bias.dynamics.driver.drive`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.linalg.blas import dsyrk

from ..krylov import GramPCG
from ..mirror import MirrorMap
from ..sensing import is_matrix_free
from .driver import StepFailure


@dataclass(frozen=True)
class Tableau:
    """A stiffly accurate Rosenbrock method in the form of Hairer & Wanner (§IV.7)

        (I/(hγ) - J) k_i = f(U_i) + Σ_{j<i} (C_ij / h) k_j,   U_1 = y,  U_i = y + Σ_{j<i} A_ij k_j,
        y_new = U_s + k_s,   local error estimate k_s (the embedded solution is U_s).

    ``A`` holds the rows of ``U_2 .. U_s``, ``C`` those of stages ``2 .. s``.
    """

    name: str
    gamma: float
    A: tuple
    C: tuple
    embedded_order: int


# RODAS4 (Hairer & Wanner's rodas.f, METH = 1): 6 stages, order 4(3).
_A5_RODAS4 = (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950)
RODAS4 = Tableau(
    "rodas4", 0.25,
    A=((1.544,), (0.9466785280815826, 0.2557011698983284),
       (3.314825187068521, 2.896124015972201, 0.9986419139977817), _A5_RODAS4, _A5_RODAS4 + (1.0,)),
    C=((-5.6688,), (-2.430093356833875, -0.2063599157091915),
       (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
       (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160),
       (8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136, -6.058818238834054)),
    embedded_order=3,
)
# RODAS5P (Steinebach 2023, coefficients as in OrdinaryDiffEq.jl): 8 stages, order 5(4).
_A6_RODAS5P = (-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256, 0.030198172008377946)
RODAS5P = Tableau(
    "rodas5p", 0.21193756319429014,
    A=((3.0,), (2.849394379747939, 0.45842242204463923),
       (-6.954028509809101, 2.489845061869568, -10.358996098473584),
       (2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641),
       _A6_RODAS5P, _A6_RODAS5P + (1.0,), _A6_RODAS5P + (1.0, 1.0)),
    C=((-14.155112264123755,), (-17.97296035885952, -2.859693295451294),
       (147.12150275711716, -1.41221402718213, 71.68940251302358),
       (165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306),
       (24.854864614690072, -3.0009227002832186, 47.4931110020768, 5.5814197821558125, -0.6610691825249471),
       (30.91273214028599, -3.1208243349937974, 77.79954646070892, 34.28646028294783, -19.097331116725623,
        -28.087943162872662),
       (37.80277123390563, -3.2571969029072276, 112.26918849496327, 66.9347231244047, -40.06618937091002,
        -54.66780262877968, -9.48861652309627)),
    embedded_order=4,
)

# Step-size control of rodas.f: h_new = h / fac with fac in [1/6, 5], fac ~ err^(1/4) / 0.9.
SAFETY, FAC_MIN, FAC_MAX = 0.9, 1.0 / 6.0, 5.0
# Measured at n = 1000 (N = 2, 3, 4): RODAS5P takes half the steps of RODAS4 and 1.3-1.9x less time.
TABLEAU = RODAS5P
# Jacobian columns left out of the Gram matrix: total relative weight below GRAM_DROP * rtol.
GRAM_DROP = 1e-3
# Rounding noise in a coordinate's increment tolerated before it joins the exact block S.
NOISE = 1e-2
EPS = np.finfo(np.float64).eps
# Matrix-free stages (operator A): relative residual of each stage solve, CG_TOL * rtol (at most 1e-8), so
# that the solves' error stays three orders below the local error the controller admits.
CG_TOL = 1e-3
CG_MAX_ITER = 2000


def tab_final(tab: Tableau, ks: list) -> np.ndarray:
    """``y_new - y = Σ_j A_sj k_j + k_s``."""
    return sum(a * ks[j] for j, a in enumerate(tab.A[-1])) + ks[-1]


class CompensatedTime:
    """A flow time kept as an unevaluated sum ``hi + lo`` (Kahan–Babuška)."""

    def __init__(self, t0: float = 0.0):
        self.hi, self.lo = float(t0), 0.0

    def add(self, h: float) -> None:
        s = self.hi + h
        if abs(self.hi) >= abs(h):
            self.lo += (self.hi - s) + h
        else:
            self.lo += (h - s) + self.hi
        self.hi = s

    def until(self, target: float) -> float:
        """``target - t`` without losing the low part."""
        return (target - self.hi) - self.lo

    def set(self, t: float) -> None:
        self.hi, self.lo = float(t), 0.0

    @property
    def value(self) -> float:
        return self.hi + self.lo


class RotatedOperator:
    """``Q^T B`` for an orthogonal ``Q`` whose first ``k`` columns span ``{b_i : i ∈ S}``.

    ``B`` is ``A`` or ``[A, -A]`` (signed, SPEC A.7); ``S`` holds base columns of ``A``. The rows
    ``k:`` of those columns are set to exact zeros (they are rounding noise), so ``b_i^T v``
    for ``i ∈ S`` reads only the first ``k`` entries of ``v``.
    """

    def __init__(self, A: np.ndarray, y: np.ndarray, signed: bool, exact: np.ndarray | None = None):
        self.signed = signed
        self.m, self.n = A.shape
        self.col_norm2 = np.einsum("ij,ij->j", A, A)
        self.exact = np.zeros(0, dtype=int)
        if exact is None or len(exact) == 0:
            self.A, self.y = np.asfortranarray(A), y  # column-major: Gram columns are gathered
            return
        Q, R, perm = scipy.linalg.qr(A[:, exact], pivoting=True, mode="full", check_finite=False)
        diag = np.abs(np.diag(R))
        rank = int(np.sum(diag > 1e-10 * diag[0])) if diag.size else 0
        self.A = np.asfortranarray(Q.T @ A)
        self.y = Q.T @ y
        self.exact = np.sort(exact[perm[:rank]])
        self.A[rank:, self.exact] = 0.0

    def matvec(self, z: np.ndarray) -> np.ndarray:
        if self.signed:
            return self.A @ (z[: self.n] - z[self.n :])
        return self.A @ z

    def rmatvec(self, lam: np.ndarray) -> np.ndarray:
        g = self.A.T @ lam
        return np.concatenate([g, -g]) if self.signed else g

    def base(self, values: np.ndarray, combine=np.add) -> np.ndarray:
        """Per base column of ``A``: lifted values combined over ``u`` and ``v``."""
        return combine(values[: self.n], values[self.n :]) if self.signed else values

    def gram(self, d: np.ndarray, scale: float) -> np.ndarray:
        """Lower triangle of ``B diag(d) B^T`` without the columns whose total weight
        ``scale * Σ d_j |b_j|^2`` stays below ``GRAM_DROP`` (``scale = hγ / rtol``) or whose
        own weight is below ``1e-20`` of the largest."""
        d = self.base(d)
        weight = d * self.col_norm2
        order = np.argsort(weight)
        dropped = np.searchsorted(np.cumsum(weight[order]) * scale, GRAM_DROP, side="right")
        # and below rounding of the largest (n * 1e-20 << eps): products of near-underflow
        # weights would run in slow subnormal arithmetic
        dropped = max(dropped, np.searchsorted(weight[order], 1e-20 * weight[order[-1]]))
        keep = np.sort(order[dropped:])
        if keep.size == 0:
            return np.zeros((self.m, self.m), order="F")
        C = (self.A if keep.size == self.n else self.A[:, keep]) * np.sqrt(d[keep])  # Fortran order
        return dsyrk(1.0, C, lower=1)


class FreeOperator:
    """:class:`RotatedOperator`'s interface (never rotated) for an operator ``A`` (:mod:`implicit_bias.sensing`):
    its stage systems ``(I/(hγ) + H) k = rhs`` are solved by :class:`~implicit_bias.krylov.GramPCG`."""

    def __init__(self, A, y: np.ndarray, signed: bool):
        from ..sensing import column_norms

        self.A, self.y, self.signed = A, y, signed
        self.m, self.n = A.shape
        self.col_norm2 = column_norms(A)
        self.exact = np.zeros(0, dtype=int)

    matvec, rmatvec, base = RotatedOperator.matvec, RotatedOperator.rmatvec, RotatedOperator.base


class RodasControl:
    """Step control shared by the Rosenbrock steppers of :func:`~.driver.drive`: landing on save times,
    and rodas.f's controller with Gustafsson's predictive rule. A subclass provides ``first_step()``,
    ``_rotate_if_noisy(h)``, ``attempt(h) -> (err, new)`` and ``_take(new)`` (store an accepted state)."""

    def _start_control(self, y: np.ndarray) -> None:
        self._gram = None  # the stage matrix at the current state, reused by rejected attempts with smaller h
        self._h_acc = self._err_acc = None  # Gustafsson's predictive controller
        self._exponent = 1.0 / (self.tableau.embedded_order + 1)
        self._time, self._ynorm, self._h = CompensatedTime(), float(np.linalg.norm(y)), None

    @property
    def t(self) -> float:
        return self._time.value

    def _land(self, target: float) -> None:
        """One accepted step, shortened to land exactly on ``target`` when that is within reach."""
        h = self.first_step() if self._h is None else self._h
        remaining = self._time.until(target)
        landing = remaining <= h
        if landing and remaining <= 1e-12 * h:  # a save time within rounding of t (e.g. 5e-324): no step lands there
            self._time.set(target)
            return
        try:
            h_used, h_next = self.step(remaining if landing else h)
        except (FloatingPointError, np.linalg.LinAlgError, ValueError) as exc:
            raise StepFailure(f"integration failed at t={self.t:.3g}: {exc}") from exc
        if landing and h_used == remaining:
            self._time.set(target)
            self._h = max(h, h_next) if h_next >= h_used else h_next  # a short landing step does not shrink h
        else:
            self._time.add(h_used)
            self._h = h_next

    def step(self, h: float) -> tuple[float, float]:
        """Take one accepted step of size ``<= h``; return ``(h_used, h_next)``."""
        rejected = False
        self._rotate_if_noisy(h)
        for _ in range(100):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):  # trial stages may overshoot
                err, new = self.attempt(h)
            fac = 1.0 / FAC_MIN if not np.isfinite(err) else max(FAC_MIN, min(FAC_MAX, err ** self._exponent / SAFETY))
            if err <= 1.0:
                if self._h_acc is not None:
                    gus = (self._h_acc / h) * (err * err / self._err_acc) ** self._exponent / SAFETY
                    fac = max(fac, max(FAC_MIN, min(FAC_MAX, gus)))
                self._h_acc, self._err_acc = h, max(1e-2, err)
                self._take(new)
                self._gram = None
                self.steps += 1
                h_next = h / fac
                return h, (min(h_next, h) if rejected else h_next)
            self.rejected += 1
            rejected = True
            h /= max(fac, 1.0 / FAC_MAX) if np.isfinite(err) else 1.0 / FAC_MIN
        raise FloatingPointError("step size underflow: 100 rejected steps in a row")


class RodasMirrorFlow(RodasControl):
    """Rosenbrock stepper (default :data:`RODAS5P`) for the mirror flow, driven by :func:`~.driver.drive`.

    ``t`` is kept as a compensated sum, so that steps of size 1 still count at ``t ~ 1e18``.
    """

    def __init__(self, B, y, depth: int, z0: np.ndarray, rtol: float, tableau: Tableau | None = None):
        self.tableau = tableau or TABLEAU
        self.A, self.y0, self.signed = B.A, y, B.signed
        self.depth, self.rtol = depth, rtol
        self.mirror = MirrorMap(depth)
        self.free = is_matrix_free(self.A)
        self.op = FreeOperator(self.A, y, self.signed) if self.free else RotatedOperator(self.A, y, self.signed)
        self.pcg = GramPCG(self.A) if self.free else None
        self.cg_tol = min(CG_TOL * rtol, 1e-8)
        self.z = np.array(z0, dtype=np.float64)
        with np.errstate(divide="ignore", over="ignore"):  # z0 = 0 (underflow) maps outside the domain
            self.phi = self.mirror.phi(self.z)
        self.r = self.op.matvec(self.z) - self.op.y
        self.evals, self.matvecs, self.steps, self.rejected, self.factorizations, self.rotations = 1, 1, 0, 0, 0, 0
        self._start_control(y)

    @property
    def state(self) -> np.ndarray:
        return self.z

    def point(self) -> np.ndarray:
        return self.z

    def residual(self) -> float:
        """``||B z - y|| / ||y||`` (the rotation ``Q`` keeps norms)."""
        return float(np.linalg.norm(self.r)) / self._ynorm

    def advance(self, target: float) -> None:
        """One accepted step, shortened to land exactly on ``target`` when that is within reach."""
        if not self.mirror.in_domain(self.phi):
            raise StepFailure(
                f"the mirror state is outside the domain of the depth-{self.depth} mirror map at t={self.t:.3g} "
                "(a product coordinate is 0 or beyond float64's range, e.g. alpha^N underflowed): use a larger init"
            )
        self._land(target)

    def weights(self, z: np.ndarray) -> np.ndarray | float:
        """Error weights of ``δφ``: the relative error in ``φ`` that sets escape times.

        ``N >= 3``: ``(dz/dφ)/z = N z^(1-2/N) = N / ((N-2)|φ|)``, i.e. ``log z`` to ``rtol``;
        ``N = 2``: ``1/max(|φ|, 1/2)`` with ``φ = log(z)/2``, i.e. ``log z`` to ``rtol`` near
        ``z = 1`` and to ``rtol |log z|`` for small coordinates (their escape time ``∝ |φ|``);
        ``N = 1``: ``1/max(1, max|z|)``.
        """
        if self.depth == 1:
            return 1.0 / max(1.0, float(np.max(np.abs(z))))
        if self.depth == 2:
            return 2.0 / np.maximum(np.abs(np.log(z)), 1.0)
        return self.depth * z ** (1.0 - 2.0 / self.depth)

    def first_step(self) -> float:
        """A step that moves ``log z`` by about ``rtol^(1/4)`` along the initial velocity."""
        velocity = np.max(np.abs(self.op.rmatvec(self.r)) * self.weights(self.z))
        return self.rtol ** 0.25 / max(float(velocity), 1e-300)

    def _rotate_if_noisy(self, h: float) -> None:
        """Move the coordinates whose increment ``b_i^T Δλ`` (size ``~ 2h|r|``) would carry a
        rounding error above ``NOISE * rtol`` in ``log z`` into the exact block ``S``."""
        if self.depth == 1:
            return
        noise = self.op.base(self.weights(self.z), np.maximum) * np.sqrt(self.op.col_norm2) * EPS
        drift = 2.0 * h * np.linalg.norm(self.r)
        needed = np.flatnonzero(noise * drift > NOISE * self.rtol)
        if needed.size == 0 or np.all(np.isin(needed, self.op.exact)):
            return
        # rebuild with a margin of 100 in h, at most m columns, the noisiest first
        if self.free:
            raise StepFailure(
                f"at t={self.t:.3g} the increments b_i^T Δλ would carry rounding above {NOISE:g} rtol in log z; the "
                "matrix-free flow has no exact rotated block: use a dense A, a larger init or a looser rtol"
            )
        wanted = np.flatnonzero(noise * drift * 100.0 > NOISE * self.rtol)
        wanted = wanted[np.argsort(-noise[wanted])][: self.op.m]
        self.op = RotatedOperator(self.A, self.y0, self.signed, np.sort(wanted))
        self.r = self.op.matvec(self.z) - self.op.y
        self.matvecs += self.op.m + 1
        self.rotations += 1
        self._gram = None

    def _stage(self, dlam: np.ndarray):
        """``(φ, z, f)`` at ``λ + dlam``, or None outside the mirror domain."""
        phi = self.phi - self.op.rmatvec(dlam)
        if not self.mirror.in_domain(phi):
            return None
        z = self.mirror.z(phi)
        self.evals += 1
        self.matvecs += 2
        return phi, z, self.op.matvec(z) - self.op.y

    def _factor(self, h: float):
        if self.free:
            self.pcg.prepare(self.op.base(self.mirror.dz_dphi(self.z)), 1.0 / (h * self.tableau.gamma))
            self.factorizations += 1
            return None
        if self._gram is None or self._gram[1] < h:
            self._gram = (self.op.gram(self.mirror.dz_dphi(self.z), h * self.tableau.gamma / self.rtol), h)
            self.matvecs += self.op.m
        M = self._gram[0].copy(order="F")  # dsyrk returns Fortran order, as LAPACK wants it
        M[np.diag_indices_from(M)] += 1.0 / (h * self.tableau.gamma)
        self.factorizations += 1
        try:
            return scipy.linalg.cho_factor(M, lower=True, check_finite=False, overwrite_a=True)
        except np.linalg.LinAlgError:
            # M is SPD in exact arithmetic; if rounding breaks Cholesky, clip the spectrum of H at 0.
            values, vectors = scipy.linalg.eigh(self._gram[0], lower=True, check_finite=False)
            return vectors, np.maximum(values, 0.0) + 1.0 / (h * self.tableau.gamma)

    def _solve(self, factor, rhs: np.ndarray) -> np.ndarray:
        if self.free:
            products = self.pcg.products
            k, _, converged = self.pcg.solve(rhs, self.cg_tol, max_iter=CG_MAX_ITER)
            self.matvecs += self.pcg.products - products
            if not converged:
                raise np.linalg.LinAlgError(f"conjugate gradients did not reach {self.cg_tol:.0e} in {CG_MAX_ITER} iterations")
            return k
        if isinstance(factor[1], np.ndarray):  # (eigenvectors, shifted eigenvalues)
            vectors, shifted = factor
            return vectors @ ((vectors.T @ rhs) / shifted)
        return scipy.linalg.cho_solve(factor, rhs, check_finite=False)

    def attempt(self, h: float):
        """One Rosenbrock step of size ``h`` from the current state.

        Returns ``(err, new)``: the scaled error (accept when ``<= 1``; ``inf`` when a stage
        left the mirror domain) and ``new = (φ, z, r)`` or None.
        """
        factor = self._factor(h)
        tab = self.tableau
        ks: list[np.ndarray] = []
        f = self.r
        for i in range(len(tab.A) + 1):
            rhs = f.copy()
            if i:
                for j, c in enumerate(tab.C[i - 1]):
                    rhs += (c / h) * ks[j]
            ks.append(self._solve(factor, rhs))
            step = sum(a * ks[j] for j, a in enumerate(tab.A[i])) if i < len(tab.A) else tab_final(tab, ks)
            stage = self._stage(step)
            if stage is None:
                return np.inf, None
            f = stage[2]
        new = stage
        dphi_err = np.abs(self.op.rmatvec(ks[-1]))
        weight = self.weights(np.maximum(self.z, new[1])) if self.depth > 1 else self.weights(new[1])
        err = float(np.max(dphi_err * weight) / self.rtol)
        if not (np.isfinite(err) and np.all(np.isfinite(new[2]))):
            return np.inf, None
        return err, new

    def _take(self, new) -> None:
        self.phi, self.z, self.r = new
