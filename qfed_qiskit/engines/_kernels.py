"""Compiled (numba) statevector kernels: forward simulation and one-pass adjoint differentiation.

Every gate of a compiled program is a (possibly controlled) single-qubit gate

    U(θ, φ, λ, γ) = exp(iγ) · [[cos(θ/2), -exp(iλ) sin(θ/2)], [exp(iφ) sin(θ/2), exp(i(φ+λ)) cos(θ/2)]]

whose four angles are affine functions ``coeff * theta[index] + offset`` of the circuit parameters
(``index = -1`` for a constant). This covers u/u3, cu/cu3, rx/ry/rz, crx/cry/crz, p, h, x, y, z, s,
t, sx, cx, cz, ... exactly, global phase included, so one branch-free loop body serves them all.

State layout is Qiskit's little-endian order: qubit ``q`` is bit ``q`` of the basis index.

The adjoint sweep (Jones & Gacon, arXiv 2009.02823) walks the gates backwards once, and for each gate
does a single fused pass over amplitude pairs that (1) un-applies the gate to the state,
(2) accumulates the 2×2 matrix ``M[r, c] = Σ conj(λ_r) ψ_c`` and (3) un-applies the gate to the adjoint
state λ. Every angle derivative of the gate then follows from ``2 Re Σ_rc dU[r, c] M[r, c]``.
Pairs are always split into ``REDUCE_CHUNKS`` contiguous chunks whose partial sums are added in a
fixed order, by the serial and the parallel kernels alike, so results are bit-identical whatever the
number of threads.
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
def _angles(theta, pidx, coeff, offset, g):  # type: ignore[no-untyped-def]
    out = np.empty(4)
    for s in range(4):
        i = pidx[g, s]
        out[s] = offset[g, s] + (coeff[g, s] * theta[i] if i >= 0 else 0.0)
    return out


@numba.njit(cache=_CACHE)
def gate_matrix(a):  # type: ignore[no-untyped-def]
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
def gate_derivatives(a):  # type: ignore[no-untyped-def]
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
def _pair_index(k, lo, hi, lo_mask, hi_mask, ctrl_bit, tgt_bit):  # type: ignore[no-untyped-def]
    # Insert zero bits at positions lo < hi into k, then set the control bit (0 when uncontrolled).
    i = k & lo_mask
    i |= (k & ~lo_mask) << 1
    i = (i & hi_mask) | ((i & ~hi_mask) << 1)
    i |= ctrl_bit
    return i, i | tgt_bit


@numba.njit(cache=_CACHE, inline="always")
def _layout(target, control):  # type: ignore[no-untyped-def]
    # Positions of the zero bits to insert. An uncontrolled gate inserts one zero bit; we still
    # insert two (at target and at the top bit n) and halve the loop count, which keeps the body
    # identical for both cases.
    if control < 0:
        return target, 62, (1 << target) - 1, (1 << 62) - 1, 0, 1 << target
    lo = min(target, control)
    hi = max(target, control)
    return lo, hi, (1 << lo) - 1, (1 << hi) - 1, 1 << control, 1 << target


@numba.njit(cache=_CACHE, parallel=True)
def _apply_parallel(state, m, target, control, npairs, nchunks):  # type: ignore[no-untyped-def]
    lo, hi, lo_mask, hi_mask, cbit, tbit = _layout(target, control)
    m00, m01, m10, m11 = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    step = (npairs + nchunks - 1) // nchunks
    for ch in prange(nchunks):
        for k in range(ch * step, min(npairs, (ch + 1) * step)):
            i0, i1 = _pair_index(k, lo, hi, lo_mask, hi_mask, cbit, tbit)
            a = state[i0]
            b = state[i1]
            state[i0] = m00 * a + m01 * b
            state[i1] = m10 * a + m11 * b


@numba.njit(cache=_CACHE)
def _apply_serial(state, m, target, control, npairs):  # type: ignore[no-untyped-def]
    lo, hi, lo_mask, hi_mask, cbit, tbit = _layout(target, control)
    m00, m01, m10, m11 = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    for k in range(npairs):
        i0, i1 = _pair_index(k, lo, hi, lo_mask, hi_mask, cbit, tbit)
        a = state[i0]
        b = state[i1]
        state[i0] = m00 * a + m01 * b
        state[i1] = m10 * a + m11 * b


@numba.njit(cache=_CACHE)
def _npairs(num_qubits, control):  # type: ignore[no-untyped-def]
    return 1 << (num_qubits - 1) if control < 0 else 1 << (num_qubits - 2)


@numba.njit(cache=_CACHE)
def simulate(num_qubits, targets, controls, pidx, coeff, offset, theta, state, parallel):  # type: ignore[no-untyped-def]
    """Run the program on ``state`` (modified in place; usually ``|0…0⟩``)."""
    for g in range(targets.shape[0]):
        a = _angles(theta, pidx, coeff, offset, g)
        m = gate_matrix(a).astype(state.dtype)
        npairs = _npairs(num_qubits, controls[g])
        if parallel and npairs >= PARALLEL_MIN_PAIRS:
            _apply_parallel(state, m, targets[g], controls[g], npairs, REDUCE_CHUNKS)
        else:
            _apply_serial(state, m, targets[g], controls[g], npairs)


@numba.njit(cache=_CACHE, parallel=True)
def _adjoint_gate_parallel(psi, lam, minv, target, control, npairs, nchunks):  # type: ignore[no-untyped-def]
    lo, hi, lo_mask, hi_mask, cbit, tbit = _layout(target, control)
    u00, u01, u10, u11 = minv[0, 0], minv[0, 1], minv[1, 0], minv[1, 1]
    acc = np.zeros((nchunks, 4), dtype=np.complex128)
    step = (npairs + nchunks - 1) // nchunks
    for ch in prange(nchunks):
        s00 = s01 = s10 = s11 = psi[0] * 0
        for k in range(ch * step, min(npairs, (ch + 1) * step)):
            i0, i1 = _pair_index(k, lo, hi, lo_mask, hi_mask, cbit, tbit)
            a = psi[i0]
            b = psi[i1]
            p0 = u00 * a + u01 * b
            p1 = u10 * a + u11 * b
            psi[i0] = p0
            psi[i1] = p1
            l0 = lam[i0]
            l1 = lam[i1]
            cl0 = l0.conjugate()
            cl1 = l1.conjugate()
            s00 += cl0 * p0
            s01 += cl0 * p1
            s10 += cl1 * p0
            s11 += cl1 * p1
            lam[i0] = u00 * l0 + u01 * l1
            lam[i1] = u10 * l0 + u11 * l1
        acc[ch, 0] = s00
        acc[ch, 1] = s01
        acc[ch, 2] = s10
        acc[ch, 3] = s11
    out = np.zeros(4, dtype=np.complex128)
    for ch in range(nchunks):
        for j in range(4):
            out[j] += acc[ch, j]
    return out


@numba.njit(cache=_CACHE)
def _adjoint_gate_serial(psi, lam, minv, target, control, npairs, nchunks):  # type: ignore[no-untyped-def]
    lo, hi, lo_mask, hi_mask, cbit, tbit = _layout(target, control)
    u00, u01, u10, u11 = minv[0, 0], minv[0, 1], minv[1, 0], minv[1, 1]
    out = np.zeros(4, dtype=np.complex128)
    step = (npairs + nchunks - 1) // nchunks
    for ch in range(nchunks):
        s00 = s01 = s10 = s11 = psi[0] * 0
        for k in range(ch * step, min(npairs, (ch + 1) * step)):
            i0, i1 = _pair_index(k, lo, hi, lo_mask, hi_mask, cbit, tbit)
            a = psi[i0]
            b = psi[i1]
            p0 = u00 * a + u01 * b
            p1 = u10 * a + u11 * b
            psi[i0] = p0
            psi[i1] = p1
            l0 = lam[i0]
            l1 = lam[i1]
            cl0 = l0.conjugate()
            cl1 = l1.conjugate()
            s00 += cl0 * p0
            s01 += cl0 * p1
            s10 += cl1 * p0
            s11 += cl1 * p1
            lam[i0] = u00 * l0 + u01 * l1
            lam[i1] = u10 * l0 + u11 * l1
        out[0] += s00
        out[1] += s01
        out[2] += s10
        out[3] += s11
    return out


@numba.njit(cache=_CACHE)
def adjoint(num_qubits, targets, controls, pidx, coeff, offset, theta, psi, lam, grad, parallel):  # type: ignore[no-untyped-def]
    """Accumulate ``d/dθ Σ_k g_k |ψ_k|²`` into ``grad``.

    Args:
        psi: Final state (destroyed: un-applied back to the initial state).
        lam: ``g ⊙ psi`` for the upstream gradient ``g`` on the probabilities (destroyed).
        grad: Output, one entry per circuit parameter (accumulated into).
    """
    for g in range(targets.shape[0] - 1, -1, -1):
        a = _angles(theta, pidx, coeff, offset, g)
        m = gate_matrix(a)
        minv = np.conj(m.T).astype(psi.dtype)
        npairs = _npairs(num_qubits, controls[g])
        if parallel and npairs >= PARALLEL_MIN_PAIRS:
            acc = _adjoint_gate_parallel(
                psi, lam, minv, targets[g], controls[g], npairs, REDUCE_CHUNKS
            )
        else:
            acc = _adjoint_gate_serial(psi, lam, minv, targets[g], controls[g], npairs, REDUCE_CHUNKS)
        has_param = False
        for s in range(4):
            if pidx[g, s] >= 0:
                has_param = True
        if not has_param:
            continue
        d = gate_derivatives(a)
        for s in range(4):
            i = pidx[g, s]
            if i < 0:
                continue
            val = d[s, 0, 0] * acc[0] + d[s, 0, 1] * acc[1] + d[s, 1, 0] * acc[2] + d[s, 1, 1] * acc[3]
            grad[i] += 2.0 * coeff[g, s] * val.real
