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
Fastmath code compiled in this process and the same code loaded from numba's cache differ in
their last bits; :mod:`qfed_qiskit.engines.kernel_cache` has every process load it from the cache.
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
def _layout(target, control, cval=1):
    # Positions of the zero bits to insert. An uncontrolled gate inserts one zero bit; we still
    # insert two (at the target and at bit 62, never set) so both cases share one loop body.
    # ``cval`` is the value of the control bit on the pairs visited.
    if control < 0:
        return target, 62, (1 << target) - 1, (1 << 62) - 1, 0, 1 << target
    lo = min(target, control)
    hi = max(target, control)
    return lo, hi, (1 << lo) - 1, (1 << hi) - 1, cval << control, 1 << target


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
def _run_adjoint(pr, pi, lr, li, i0, i1, run, u, acc, zero=0.0):
    # One fused pass: psi <- U^dag psi; acc += conj(lam_r) psi_c; lam <- U^dag lam.
    # The sums are kept in the type of ``zero``: float64 by default; the fused kernels pass a
    # float32 zero for float32 states, so the loop vectorises twice as wide.
    pr0 = pr[i0 : i0 + run]
    pi0 = pi[i0 : i0 + run]
    pr1 = pr[i1 : i1 + run]
    pi1 = pi[i1 : i1 + run]
    lr0 = lr[i0 : i0 + run]
    li0 = li[i0 : i0 + run]
    lr1 = lr[i1 : i1 + run]
    li1 = li[i1 : i1 + run]
    u00r, u00i, u01r, u01i, u10r, u10i, u11r, u11i = u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7]
    z = zero
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
def _chunk_apply(re, im, m, target, control, start, stop, cval=1):
    lo, hi, lo_mask, hi_mask, cbit, tbit = _layout(target, control, cval)
    lob = 1 << lo
    k = start
    while k < stop:
        run = min(lob - (k & (lob - 1)), stop - k)
        i0, i1 = _pair_index(k, lo, hi, lo_mask, hi_mask, cbit, tbit)
        _run_apply(re, im, i0, i1, run, m)
        k += run


@numba.njit(cache=_CACHE, fastmath=True, inline="always")
def _chunk_adjoint(pr, pi, lr, li, u, target, control, start, stop, acc, cval=1, zero=0.0):
    lo, hi, lo_mask, hi_mask, cbit, tbit = _layout(target, control, cval)
    lob = 1 << lo
    k = start
    while k < stop:
        run = min(lob - (k & (lob - 1)), stop - k)
        i0, i1 = _pair_index(k, lo, hi, lo_mask, hi_mask, cbit, tbit)
        _run_adjoint(pr, pi, lr, li, i0, i1, run, u, acc, zero)
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


# ---------------------------------------------------------------------------------------------
# Fused programs (see program.FusedProgram): each operation is the multiplexed gate
# |0><0|_c (x) A_0 + |1><1|_c (x) A_1 built from several factor gates, and layout changes.


@numba.njit(cache=_CACHE, inline="always")
def _matmul2(a, b, out):
    # out = a @ b for 2x2 complex matrices (out may not alias a or b).
    out[0, 0] = a[0, 0] * b[0, 0] + a[0, 1] * b[1, 0]
    out[0, 1] = a[0, 0] * b[0, 1] + a[0, 1] * b[1, 1]
    out[1, 0] = a[1, 0] * b[0, 0] + a[1, 1] * b[1, 0]
    out[1, 1] = a[1, 0] * b[0, 1] + a[1, 1] * b[1, 1]


@numba.njit(cache=_CACHE)
def _factor_matrices(theta, pidx, coeff, offset, controlled, start, stop, gm, a):
    """Factor matrices ``gm[k]`` and the branch products ``a[0] = A_0``, ``a[1] = A_1``."""
    tmp = np.empty((2, 2), dtype=np.complex128)
    for b in range(2):
        a[b, 0, 0] = 1.0
        a[b, 0, 1] = 0.0
        a[b, 1, 0] = 0.0
        a[b, 1, 1] = 1.0
    for k in range(start, stop):
        g = gate_matrix(_angles(theta, pidx, coeff, offset, k))
        gm[k - start] = g
        for b in range(controlled[k], 2):
            _matmul2(g, a[b], tmp)
            a[b] = tmp


@numba.njit(cache=_CACHE, fastmath=True)
def _adjoint_serial_cv(pr, pi, lr, li, u, target, control, cval, npairs, acc):
    step = (npairs + REDUCE_CHUNKS - 1) // REDUCE_CHUNKS
    for ch in range(REDUCE_CHUNKS):
        _chunk_adjoint(
            pr,
            pi,
            lr,
            li,
            u,
            target,
            control,
            ch * step,
            min(npairs, (ch + 1) * step),
            acc[ch],
            cval,
            acc[ch, 0],
        )


@numba.njit(cache=_CACHE, fastmath=True, parallel=True)
def _adjoint_parallel_cv(pr, pi, lr, li, u, target, control, cval, npairs, acc):
    step = (npairs + REDUCE_CHUNKS - 1) // REDUCE_CHUNKS
    for ch in prange(REDUCE_CHUNKS):
        _chunk_adjoint(
            pr,
            pi,
            lr,
            li,
            u,
            target,
            control,
            ch * step,
            min(npairs, (ch + 1) * step),
            acc[ch],
            cval,
            acc[ch, 0],
        )


@numba.njit(cache=_CACHE, fastmath=True, parallel=True)
def _apply_parallel_cv(re, im, m, target, control, cval, npairs):
    step = (npairs + REDUCE_CHUNKS - 1) // REDUCE_CHUNKS
    for ch in prange(REDUCE_CHUNKS):
        _chunk_apply(re, im, m, target, control, ch * step, min(npairs, (ch + 1) * step), cval)


@numba.njit(cache=_CACHE, fastmath=True)
def _apply_branch(re, im, m8, target, control, cval, npairs, parallel):
    if parallel:
        _apply_parallel_cv(re, im, m8, target, control, cval, npairs)
    else:
        _chunk_apply(re, im, m8, target, control, 0, npairs, cval)


@numba.njit(cache=_CACHE)
def _permute(src, dst, p):
    for j in range(p.shape[0]):
        dst[j] = src[p[j]]


@numba.njit(cache=_CACHE)
def simulate_fused(
    num_qubits,
    kind,
    target,
    control,
    start,
    stop,
    pidx,
    coeff,
    offset,
    controlled,
    perms,
    theta,
    re,
    im,
    parallel,
):
    """Run a fused program on the state ``re + i im`` (modified in place).

    ``parallel``: use the threaded kernels for large states (when numba has more than one thread;
    results are the same either way).
    """
    m8 = np.empty(8, dtype=re.dtype)
    a = np.empty((2, 2, 2), dtype=np.complex128)
    gm = np.empty((max(1, int(np.max(stop - start))), 2, 2), dtype=np.complex128)
    cur_r, cur_i = re, im
    oth_r, oth_i = np.empty_like(re), np.empty_like(im)
    swapped = False
    for o in range(kind.shape[0]):
        if kind[o] == 1:
            p = perms[target[o]]
            _permute(cur_r, oth_r, p)
            _permute(cur_i, oth_i, p)
            cur_r, oth_r = oth_r, cur_r
            cur_i, oth_i = oth_i, cur_i
            swapped = not swapped
            continue
        _factor_matrices(theta, pidx, coeff, offset, controlled, start[o], stop[o], gm, a)
        t = target[o]
        c = control[o]
        if c < 0:
            _split(a[1], m8)
            npairs = 1 << (num_qubits - 1)
            _apply_branch(
                cur_r, cur_i, m8, t, c, 1, npairs, parallel and npairs >= PARALLEL_MIN_PAIRS
            )
            continue
        npairs = 1 << (num_qubits - 2)
        par = parallel and npairs >= PARALLEL_MIN_PAIRS
        has0 = False
        for k in range(start[o], stop[o]):
            if controlled[k] == 0:
                has0 = True
        if has0:
            _split(a[0], m8)
            _apply_branch(cur_r, cur_i, m8, t, c, 0, npairs, par)
        _split(a[1], m8)
        _apply_branch(cur_r, cur_i, m8, t, c, 1, npairs, par)
    if swapped:
        re[:] = cur_r
        im[:] = cur_i


@numba.njit(cache=_CACHE)
def _op_gradient(theta, pidx, coeff, offset, controlled, start, stop, gm, a, m, b, grad):
    """Add the derivatives of branch ``b`` of one operation, given ``m[r, c] = Σ conj(λ_r) ψ_c``.

    For factor ``k``, ``A_b = L G_k R`` (``R``: the factors before it, ``L = A_b (G_k R)^†``), so
    ``Σ dA_b ⊙ M = Σ dG_k ⊙ (L^T M R^T)``.
    """
    r = np.eye(2, dtype=np.complex128)
    p = np.empty((2, 2), dtype=np.complex128)
    lm = np.empty((2, 2), dtype=np.complex128)
    q = np.empty((2, 2), dtype=np.complex128)
    for k in range(start, stop):
        if b == 0 and controlled[k] == 1:
            continue
        g = gm[k - start]
        _matmul2(g, r, p)
        has_param = False
        for s in range(4):
            if pidx[k, s] >= 0:
                has_param = True
        if has_param:
            # l = a[b] @ p^H; q = l^T m r^T
            ph = np.conj(p.T)
            lmat = np.empty((2, 2), dtype=np.complex128)
            _matmul2(a[b], ph, lmat)
            _matmul2(lmat.T.copy(), m, lm)
            _matmul2(lm, r.T.copy(), q)
            d = gate_derivatives(_angles(theta, pidx, coeff, offset, k))
            for s in range(4):
                i = pidx[k, s]
                if i < 0:
                    continue
                val = d[s, 0, 0] * q[0, 0] + d[s, 0, 1] * q[0, 1]
                val += d[s, 1, 0] * q[1, 0] + d[s, 1, 1] * q[1, 1]
                grad[i] += 2.0 * coeff[k, s] * val.real
        r[:] = p


@numba.njit(cache=_CACHE)
def _adjoint_branch(pr, pi, lr, li, a, u8, acc, m, t, c, cval, npairs, par):
    _split(np.conj(a.T), u8)
    acc[:] = 0
    if par:
        _adjoint_parallel_cv(pr, pi, lr, li, u8, t, c, cval, npairs, acc)
    else:
        _adjoint_serial_cv(pr, pi, lr, li, u8, t, c, cval, npairs, acc)
    m[:] = 0
    for ch in range(REDUCE_CHUNKS):
        for j in range(4):
            m[j // 2, j % 2] += complex(acc[ch, 2 * j], acc[ch, 2 * j + 1])


@numba.njit(cache=_CACHE)
def adjoint_fused(
    num_qubits,
    kind,
    target,
    control,
    start,
    stop,
    pidx,
    coeff,
    offset,
    controlled,
    perms,
    theta,
    pr,
    pi,
    lr,
    li,
    grad,
    parallel,
):
    """As :func:`adjoint`, for a fused program (all four state arrays are destroyed)."""
    u8 = np.empty(8, dtype=pr.dtype)
    acc = np.empty((REDUCE_CHUNKS, 8), dtype=pr.dtype)
    a = np.empty((2, 2, 2), dtype=np.complex128)
    m = np.empty((2, 2), dtype=np.complex128)
    gm = np.empty((max(1, int(np.max(stop - start))), 2, 2), dtype=np.complex128)
    bufs = np.empty((4, pr.shape[0]), dtype=pr.dtype)
    cpr, cpi, clr, cli = pr, pi, lr, li
    opr, opi, olr, oli = bufs[0], bufs[1], bufs[2], bufs[3]
    for o in range(kind.shape[0] - 1, -1, -1):
        if kind[o] == 1:
            p = perms[control[o]]  # the inverse layout change
            _permute(cpr, opr, p)
            _permute(cpi, opi, p)
            _permute(clr, olr, p)
            _permute(cli, oli, p)
            cpr, opr = opr, cpr
            cpi, opi = opi, cpi
            clr, olr = olr, clr
            cli, oli = oli, cli
            continue
        _factor_matrices(theta, pidx, coeff, offset, controlled, start[o], stop[o], gm, a)
        t = target[o]
        c = control[o]
        if c < 0:
            npairs = 1 << (num_qubits - 1)
            par = parallel and npairs >= PARALLEL_MIN_PAIRS
            _adjoint_branch(cpr, cpi, clr, cli, a[1], u8, acc, m, t, c, 1, npairs, par)
            _op_gradient(
                theta, pidx, coeff, offset, controlled, start[o], stop[o], gm, a, m, 1, grad
            )
            continue
        npairs = 1 << (num_qubits - 2)
        par = parallel and npairs >= PARALLEL_MIN_PAIRS
        has0 = False
        for k in range(start[o], stop[o]):
            if controlled[k] == 0:
                has0 = True
        if has0:
            _adjoint_branch(cpr, cpi, clr, cli, a[0], u8, acc, m, t, c, 0, npairs, par)
            _op_gradient(
                theta, pidx, coeff, offset, controlled, start[o], stop[o], gm, a, m, 0, grad
            )
        _adjoint_branch(cpr, cpi, clr, cli, a[1], u8, acc, m, t, c, 1, npairs, par)
        _op_gradient(theta, pidx, coeff, offset, controlled, start[o], stop[o], gm, a, m, 1, grad)
