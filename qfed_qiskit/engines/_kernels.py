# mypy: allow-untyped-defs
"""Compiled (numba) statevector kernels: forward simulation and one-pass adjoint differentiation.

Every gate of a compiled program is a (possibly controlled) single-qubit gate

    U(θ, φ, λ, γ) = exp(iγ) · [[cos(θ/2), -exp(iλ) sin(θ/2)],
                               [exp(iφ) sin(θ/2), exp(i(φ+λ)) cos(θ/2)]]

whose four angles are affine functions ``coeff * theta[index] + offset`` of the circuit parameters
(``index = -1`` for a constant). This covers u/u3, cu/cu3, rx/ry/rz, crx/cry/crz, p, h, x, y, z, s,
t, sx, cx, cz, ... exactly, global phase included, so one branch-free loop body serves them all.

State layout is Qiskit's little-endian order: qubit ``q`` is bit ``q`` of the basis index.
Amplitudes are kept as separate real and imaginary arrays (structure of arrays) and pairs are
visited in contiguous runs, so LLVM vectorises the inner loops.

The adjoint sweep (Jones & Gacon, arXiv 2009.02823) walks the gates backwards once, and for each
gate does a single fused pass over amplitude pairs that (1) un-applies the gate to the state,
(2) accumulates the 2×2 matrix ``M[r, c] = Σ conj(λ_r) ψ_c`` and (3) un-applies the gate to the
adjoint state λ. Every angle derivative of the gate then follows from
``2 Re Σ_rc dU[r, c] M[r, c]``.
Pairs are always split into ``REDUCE_CHUNKS`` contiguous chunks whose partial sums are added in a
fixed order, and whether a gate runs in the serial or the parallel kernel depends only on the state
size (the parallel one simply runs on fewer threads when asked), so results are bit-identical
whatever the number of threads.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

_CACHE = True
# Below this many amplitude pairs a parallel region costs more than it saves.
PARALLEL_MIN_PAIRS = 1 << 10
REDUCE_CHUNKS = 8


@numba.njit(cache=_CACHE, inline="always")
def _angles(theta, pidx, coeff, offset, g):
    out = np.empty(4)
    for s in range(4):
        i = pidx[g, s]
        out[s] = offset[g, s] + (coeff[g, s] * theta[i] if i >= 0 else 0.0)
    return out


@numba.njit(cache=_CACHE)
def gate_matrix(a):
    """2×2 matrix of U(θ, φ, λ, γ) for angles ``a = (θ, φ, λ, γ)``."""
    c = math.cos(0.5 * a[0])
    s = math.sin(0.5 * a[0])
    eg = complex(math.cos(a[3]), math.sin(a[3]))
    ep = complex(math.cos(a[1]), math.sin(a[1]))
    el = complex(math.cos(a[2]), math.sin(a[2]))
    m = np.empty((2, 2), dtype=np.complex128)
    m[0, 0] = eg * c
    m[0, 1] = -eg * el * s
    m[1, 0] = eg * ep * s
    m[1, 1] = eg * ep * el * c
    return m


@numba.njit(cache=_CACHE)
def gate_derivatives(a):
    """Derivatives of U(θ, φ, λ, γ) with respect to each of its four angles, shape (4, 2, 2)."""
    c = math.cos(0.5 * a[0])
    s = math.sin(0.5 * a[0])
    eg = complex(math.cos(a[3]), math.sin(a[3]))
    ep = complex(math.cos(a[1]), math.sin(a[1]))
    el = complex(math.cos(a[2]), math.sin(a[2]))
    d = np.zeros((4, 2, 2), dtype=np.complex128)
    # d/dθ
    d[0, 0, 0] = -0.5 * eg * s
    d[0, 0, 1] = -0.5 * eg * el * c
    d[0, 1, 0] = 0.5 * eg * ep * c
    d[0, 1, 1] = -0.5 * eg * ep * el * s
    # d/dφ
    d[1, 1, 0] = 1j * eg * ep * s
    d[1, 1, 1] = 1j * eg * ep * el * c
    # d/dλ
    d[2, 0, 1] = -1j * eg * el * s
    d[2, 1, 1] = 1j * eg * ep * el * c
    # d/dγ = i U
    d[3, 0, 0] = 1j * eg * c
    d[3, 0, 1] = -1j * eg * el * s
    d[3, 1, 0] = 1j * eg * ep * s
    d[3, 1, 1] = 1j * eg * ep * el * c
    return d


@numba.njit(cache=_CACHE, inline="always")
def _pair_index(k, lo, hi, lo_mask, hi_mask, ctrl_bit, tgt_bit):
    # Insert zero bits at positions lo < hi into k, then set the control bit (0 when uncontrolled).
    i = k & lo_mask
    i |= (k & ~lo_mask) << 1
    i = (i & hi_mask) | ((i & ~hi_mask) << 1)
    i |= ctrl_bit
    return i, i | tgt_bit


@numba.njit(cache=_CACHE, inline="always")
def _layout(target, control):
    # Positions of the zero bits to insert. An uncontrolled gate inserts one zero bit; we still
    # insert two (at the target and at bit 62, never set) so both cases share one loop body.
    if control < 0:
        return target, 62, (1 << target) - 1, (1 << 62) - 1, 0, 1 << target
    lo = min(target, control)
    hi = max(target, control)
    return lo, hi, (1 << lo) - 1, (1 << hi) - 1, 1 << control, 1 << target


@numba.njit(cache=_CACHE)
def _npairs(num_qubits, control):
    return 1 << (num_qubits - 1) if control < 0 else 1 << (num_qubits - 2)


@numba.njit(cache=_CACHE, fastmath=True, inline="always")
def _run_apply(re, im, i0, i1, run, m):
    # Views indexed from 0 let numba drop negative-index checks, so the loop vectorises.
    r0 = re[i0 : i0 + run]
    q0 = im[i0 : i0 + run]
    r1 = re[i1 : i1 + run]
    q1 = im[i1 : i1 + run]
    m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i = m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]
    for t in range(run):
        ar = r0[t]
        ai = q0[t]
        br = r1[t]
        bi = q1[t]
        r0[t] = m00r * ar - m00i * ai + m01r * br - m01i * bi
        q0[t] = m00r * ai + m00i * ar + m01r * bi + m01i * br
        r1[t] = m10r * ar - m10i * ai + m11r * br - m11i * bi
        q1[t] = m10r * ai + m10i * ar + m11r * bi + m11i * br


@numba.njit(cache=_CACHE, fastmath=True, inline="always")
def _run_adjoint(pr, pi, lr, li, i0, i1, run, u, acc):
    # One fused pass: psi <- U^dag psi; acc += conj(lam_r) psi_c; lam <- U^dag lam.
    pr0 = pr[i0 : i0 + run]
    pi0 = pi[i0 : i0 + run]
    pr1 = pr[i1 : i1 + run]
    pi1 = pi[i1 : i1 + run]
    lr0 = lr[i0 : i0 + run]
    li0 = li[i0 : i0 + run]
    lr1 = lr[i1 : i1 + run]
    li1 = li[i1 : i1 + run]
    u00r, u00i, u01r, u01i, u10r, u10i, u11r, u11i = u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7]
    z = u00r * 0
    s00r = s00i = s01r = s01i = s10r = s10i = s11r = s11i = z
    for t in range(run):
        ar = pr0[t]
        ai = pi0[t]
        br = pr1[t]
        bi = pi1[t]
        p0r = u00r * ar - u00i * ai + u01r * br - u01i * bi
        p0i = u00r * ai + u00i * ar + u01r * bi + u01i * br
        p1r = u10r * ar - u10i * ai + u11r * br - u11i * bi
        p1i = u10r * ai + u10i * ar + u11r * bi + u11i * br
        pr0[t] = p0r
        pi0[t] = p0i
        pr1[t] = p1r
        pi1[t] = p1i
        xr = lr0[t]
        xi = li0[t]
        yr = lr1[t]
        yi = li1[t]
        s00r += xr * p0r + xi * p0i
        s00i += xr * p0i - xi * p0r
        s01r += xr * p1r + xi * p1i
        s01i += xr * p1i - xi * p1r
        s10r += yr * p0r + yi * p0i
        s10i += yr * p0i - yi * p0r
        s11r += yr * p1r + yi * p1i
        s11i += yr * p1i - yi * p1r
        lr0[t] = u00r * xr - u00i * xi + u01r * yr - u01i * yi
        li0[t] = u00r * xi + u00i * xr + u01r * yi + u01i * yr
        lr1[t] = u10r * xr - u10i * xi + u11r * yr - u11i * yi
        li1[t] = u10r * xi + u10i * xr + u11r * yi + u11i * yr
    acc[0] += s00r
    acc[1] += s00i
    acc[2] += s01r
    acc[3] += s01i
    acc[4] += s10r
    acc[5] += s10i
    acc[6] += s11r
    acc[7] += s11i


@numba.njit(cache=_CACHE, inline="always")
def _chunk_apply(re, im, m, target, control, start, stop):
    lo, hi, lo_mask, hi_mask, cbit, tbit = _layout(target, control)
    lob = 1 << lo
    k = start
    while k < stop:
        run = min(lob - (k & (lob - 1)), stop - k)
        i0, i1 = _pair_index(k, lo, hi, lo_mask, hi_mask, cbit, tbit)
        _run_apply(re, im, i0, i1, run, m)
        k += run


@numba.njit(cache=_CACHE, fastmath=True, inline="always")
def _chunk_adjoint(pr, pi, lr, li, u, target, control, start, stop, acc):
    lo, hi, lo_mask, hi_mask, cbit, tbit = _layout(target, control)
    lob = 1 << lo
    k = start
    while k < stop:
        run = min(lob - (k & (lob - 1)), stop - k)
        i0, i1 = _pair_index(k, lo, hi, lo_mask, hi_mask, cbit, tbit)
        _run_adjoint(pr, pi, lr, li, i0, i1, run, u, acc)
        k += run


@numba.njit(cache=_CACHE, parallel=True)
def _apply_parallel(re, im, m, target, control, npairs):
    step = (npairs + REDUCE_CHUNKS - 1) // REDUCE_CHUNKS
    for ch in prange(REDUCE_CHUNKS):
        _chunk_apply(re, im, m, target, control, ch * step, min(npairs, (ch + 1) * step))


@numba.njit(cache=_CACHE, fastmath=True, parallel=True)
def _adjoint_parallel(pr, pi, lr, li, u, target, control, npairs, acc):
    step = (npairs + REDUCE_CHUNKS - 1) // REDUCE_CHUNKS
    for ch in prange(REDUCE_CHUNKS):
        _chunk_adjoint(
            pr, pi, lr, li, u, target, control, ch * step, min(npairs, (ch + 1) * step), acc[ch]
        )


@numba.njit(cache=_CACHE, fastmath=True)
def _adjoint_serial(pr, pi, lr, li, u, target, control, npairs, acc):
    step = (npairs + REDUCE_CHUNKS - 1) // REDUCE_CHUNKS
    for ch in range(REDUCE_CHUNKS):
        _chunk_adjoint(
            pr, pi, lr, li, u, target, control, ch * step, min(npairs, (ch + 1) * step), acc[ch]
        )


@numba.njit(cache=_CACHE)
def _split(m, out):
    # 2x2 complex matrix -> 8 reals (row-major, real then imaginary part).
    for r in range(2):
        for c in range(2):
            out[2 * (2 * r + c)] = m[r, c].real
            out[2 * (2 * r + c) + 1] = m[r, c].imag


@numba.njit(cache=_CACHE)
def simulate(num_qubits, targets, controls, pidx, coeff, offset, theta, re, im):
    """Run the program on the state ``re + i im`` (modified in place; usually ``|0…0⟩``)."""
    m8 = np.empty(8, dtype=re.dtype)
    for g in range(targets.shape[0]):
        _split(gate_matrix(_angles(theta, pidx, coeff, offset, g)), m8)
        npairs = _npairs(num_qubits, controls[g])
        if npairs >= PARALLEL_MIN_PAIRS:
            _apply_parallel(re, im, m8, targets[g], controls[g], npairs)
        else:
            _chunk_apply(re, im, m8, targets[g], controls[g], 0, npairs)


@numba.njit(cache=_CACHE)
def adjoint(num_qubits, targets, controls, pidx, coeff, offset, theta, pr, pi, lr, li, grad):
    """Accumulate ``d/dθ Σ_k g_k |ψ_k|²`` into ``grad``.

    Args:
        pr, pi: Final state ``ψ`` (destroyed: un-applied back to the initial state).
        lr, li: ``g ⊙ ψ`` for the upstream gradient ``g`` on the probabilities (destroyed).
        grad: Output, one entry per circuit parameter (accumulated into).
    """
    u8 = np.empty(8, dtype=pr.dtype)
    acc = np.empty((REDUCE_CHUNKS, 8), dtype=pr.dtype)
    for g in range(targets.shape[0] - 1, -1, -1):
        a = _angles(theta, pidx, coeff, offset, g)
        _split(np.conj(gate_matrix(a).T), u8)
        acc[:] = 0
        npairs = _npairs(num_qubits, controls[g])
        if npairs >= PARALLEL_MIN_PAIRS:
            _adjoint_parallel(pr, pi, lr, li, u8, targets[g], controls[g], npairs, acc)
        else:
            _adjoint_serial(pr, pi, lr, li, u8, targets[g], controls[g], npairs, acc)
        has_param = False
        for s in range(4):
            if pidx[g, s] >= 0:
                has_param = True
        if not has_param:
            continue
        m = np.zeros(4, dtype=np.complex128)  # M[r, c] = sum conj(lam_r) psi_c, row-major
        for ch in range(REDUCE_CHUNKS):
            for j in range(4):
                m[j] += complex(acc[ch, 2 * j], acc[ch, 2 * j + 1])
        d = gate_derivatives(a)
        for s in range(4):
            i = pidx[g, s]
            if i < 0:
                continue
            val = d[s, 0, 0] * m[0] + d[s, 0, 1] * m[1] + d[s, 1, 0] * m[2] + d[s, 1, 1] * m[3]
            grad[i] += 2.0 * coeff[g, s] * val.real
