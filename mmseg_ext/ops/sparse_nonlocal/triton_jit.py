"""The ``@triton.jit`` kernels of the Triton backend (launched by :mod:`.triton_kernels`).

Layout: channels-last rows ``q, k`` (R, C), ``v`` (R, CV), ``off`` (R, K, 2) with
``R = B * H * W``, contiguous, any float dtype; arithmetic in ``ACC`` (float32, or float64 for
float64 rows); row/element offsets in ``IDX`` (int32 where every offset fits, else int64).
Channel counts, ``K`` and the tile sizes are compile-time constants, so that the channel masks
vanish when a count is a power of two and rows of 8 bf16 / 4 fp32 load as 16-byte vectors.

Every kernel computes the geometry of a (query row, point) with :func:`_geometry`: corner
indices clamped into the map, off-map corners given weight 0 (loads are never masked by the
geometry), a point with a non-finite offset flagged (its logit is NaN, so its query's softmax
and output are NaN: the rule of every backend). No kernel uses atomics: each output element is
written by exactly one program, sums run in a fixed order, so results are bitwise reproducible.
"""
import triton
import triton.language as tl


@triton.jit
def _row_geometry(rows, H, W, K: tl.constexpr, ACC: tl.constexpr):
    """Per query row, what :func:`_geometry` needs for every point: ``(yq, xq, base, k_row)``,
    the row's pixel coordinates (ACC), its batch's first row and ``row * K`` (its first point:
    offsets at ``2 (k_row + j)``, per-point scalars at ``k_row + j``). Computed once per
    program, outside the loops over the points."""
    n = rows % (H * W)
    return (n // W).to(ACC), (n % W).to(ACC), rows - n, rows * K


@triton.jit
def _geometry(off_ptr, yq, xq, base, k_row, j, H, W, dil, K: tl.constexpr, KH: tl.constexpr,
              KW: tl.constexpr, ACC: tl.constexpr, IDX: tl.constexpr):
    """Geometry of point(s) ``j`` of the query rows described by :func:`_row_geometry`'s
    ``(yq, xq, base, k_row)`` (broadcastable tensors).

    Returns ``(ry0, ry1, x0, x1)``: the flat rows of the corner lines ``y0, y1`` (batch offset
    included) and the corner columns, all clamped into the map, so that corner ``(a, b)`` is row
    ``ry_a + x_b``; ``(wy0, wy1, wx0, wx1)``: per-axis bilinear weights, 0 for an off-map
    corner, NaN (the corners those of offset 0) when an offset of the point is not finite;
    ``(dwy0, dwy1, dwx0, dwx1)``: their derivatives w.r.t. the sampling coordinate.
    """
    a = j // KW
    b = j - a * KW
    o = 2 * (k_row + j)
    dy = tl.load(off_ptr + o).to(ACC)
    dx = tl.load(off_ptr + o + 1).to(ACC)
    ok = ((dy - dy) == 0) & ((dx - dx) == 0)  # false for NaN and +-inf
    dy = tl.where(ok, dy, 0.0)
    dx = tl.where(ok, dx, 0.0)
    # grid offset (a - (KH - 1) / 2) * dil, exact in any float type
    sy = yq + ((2 * a - (KH - 1)) * dil).to(ACC) * 0.5 + dy
    sx = xq + ((2 * b - (KW - 1)) * dil).to(ACC) * 0.5 + dx
    fy = tl.math.floor(sy)
    fx = tl.math.floor(sx)
    ly = sy - fy
    lx = sx - fx
    # clamp before the int cast so that huge offsets cannot overflow
    iy = tl.minimum(tl.maximum(fy, -2.0), H + 1.0).to(tl.int32)
    ix = tl.minimum(tl.maximum(fx, -2.0), W + 1.0).to(tl.int32)
    vy0 = (iy >= 0) & (iy < H)
    vy1 = (iy >= -1) & (iy < H - 1)
    vx0 = (ix >= 0) & (ix < W)
    vx1 = (ix >= -1) & (ix < W - 1)
    nan = tl.where(ok, 0.0, float('nan'))  # NaN weights make the point's logit NaN
    wy0 = tl.where(vy0, 1.0 - ly, 0.0) + nan
    wy1 = tl.where(vy1, ly, 0.0) + nan
    wx0 = tl.where(vx0, 1.0 - lx, 0.0)
    wx1 = tl.where(vx1, lx, 0.0)
    ry0 = base + (tl.minimum(tl.maximum(iy, 0), H - 1) * W).to(IDX)
    ry1 = base + (tl.minimum(tl.maximum(iy + 1, 0), H - 1) * W).to(IDX)
    x0 = tl.minimum(tl.maximum(ix, 0), W - 1).to(IDX)
    x1 = tl.minimum(tl.maximum(ix + 1, 0), W - 1).to(IDX)
    return (ry0, ry1, x0, x1, wy0, wy1, wx0, wx1, -(vy0.to(ACC)), vy1.to(ACC),
            -(vx0.to(ACC)), vx1.to(ACC))


@triton.jit
def _rows(ptr, rows, NC: tl.constexpr, NCP: tl.constexpr, ACC: tl.constexpr):
    """Rows ``x[rows, :NC]`` as a (len(rows), NCP) ACC tile (zero padded past NC)."""
    cols = tl.arange(0, NCP)
    if NC == NCP:
        x = tl.load(ptr + rows[:, None] * NC + cols[None, :])
    else:
        x = tl.load(ptr + rows[:, None] * NC + cols[None, :], mask=cols[None, :] < NC,
                    other=0.0)
    return x.to(ACC)


@triton.jit
def _corners(ptr, ry0, ry1, x0, x1, NC: tl.constexpr, NCP: tl.constexpr, ACC: tl.constexpr):
    """The 4 corner rows (y0 x0, y0 x1, y1 x0, y1 x1) of ``x`` as (BLOCK_N, NCP) tiles."""
    return (_rows(ptr, ry0 + x0, NC, NCP, ACC), _rows(ptr, ry0 + x1, NC, NCP, ACC),
            _rows(ptr, ry1 + x0, NC, NCP, ACC), _rows(ptr, ry1 + x1, NC, NCP, ACC))


@triton.jit
def _weight_grad(t00, t01, t10, t11, wy0, wy1, wx0, wx1, dwy0, dwy1, dwx0, dwx1):
    """(dL/dsy, dL/dsx) from ``t_c = dL/dw_c`` of the 4 corner weights ``w_c = wy * wx``."""
    gy = (t00 * wx0 + t01 * wx1) * dwy0 + (t10 * wx0 + t11 * wx1) * dwy1
    gx = (t00 * wy0 + t10 * wy1) * dwx0 + (t01 * wy0 + t11 * wy1) * dwx1
    return gy, gx


@triton.jit
def _fwd_kernel(q_ptr, k_ptr, v_ptr, off_ptr, s_ptr, out_ptr, R, H, W, dil, K: tl.constexpr,
                KH: tl.constexpr, KW: tl.constexpr, C: tl.constexpr, CP: tl.constexpr,
                CV: tl.constexpr, CVP: tl.constexpr, BLOCK_K: tl.constexpr, ACC: tl.constexpr,
                IDX: tl.constexpr, BLOCK_N: tl.constexpr, VALUES: tl.constexpr,
                ONLINE: tl.constexpr):
    """Fused forward of ``BLOCK_N`` query rows. The query tile is loaded once; per point the
    geometry is computed once and the logit is the dot of the query with the bilinear key. With
    ``VALUES`` and ``ONLINE`` it is stored to ``s_ptr`` at once (one column per point: no
    register tile of K columns to update) and an online softmax over the K points accumulates
    the bilinear values of all CV channels; then the program re-reads its own logits and
    stores the softmax ``s`` (R, K) over them, and ``out`` (R, CV). Without ``VALUES`` the raw
    logits (a register tile, stored once). ``ONLINE=False`` (for triton 2.x, which miscompiles
    the online softmax): the logits tile first, then its softmax, stored, and a second pass
    over the points for the values (geometry computed twice, ``s_j`` read back per point)."""
    raw = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = raw < R
    rows = tl.minimum(raw, R - 1).to(IDX)  # padding rows re-read the last row, never stored
    yq, xq, base, k_row = _row_geometry(rows, H, W, K, ACC)
    q = _rows(q_ptr, rows, C, CP, ACC)
    acc = tl.zeros((BLOCK_N, CVP), dtype=ACC)
    kidx = tl.arange(0, BLOCK_K)
    s_off = rows[:, None] * K + kidx[None, :]
    s_mask = row_mask[:, None] & (kidx[None, :] < K)
    if VALUES and ONLINE:
        den = tl.zeros((BLOCK_N, ), dtype=ACC)
        m = den - float('inf')
    else:
        logits = tl.zeros((BLOCK_N, BLOCK_K), dtype=ACC)
    for j in range(K):
        (ry0, ry1, x0, x1, wy0, wy1, wx0, wx1, dwy0, dwy1, dwx0,
         dwx1) = _geometry(off_ptr, yq, xq, base, k_row, j, H, W, dil, K, KH, KW, ACC, IDX)
        w00 = wy0 * wx0
        w01 = wy0 * wx1
        w10 = wy1 * wx0
        w11 = wy1 * wx1
        k00, k01, k10, k11 = _corners(k_ptr, ry0, ry1, x0, x1, C, CP, ACC)
        kmix = w00[:, None] * k00 + w01[:, None] * k01 + w10[:, None] * k10 + w11[:, None] * k11
        lj = tl.sum(q * kmix, axis=1)
        if VALUES and ONLINE:
            tl.store(s_ptr + k_row + j, lj, mask=row_mask)
            m_new = tl.maximum(m, lj)
            alpha = tl.exp(m - m_new)
            p = tl.exp(lj - m_new)
            v00, v01, v10, v11 = _corners(v_ptr, ry0, ry1, x0, x1, CV, CVP, ACC)
            vmix = (w00[:, None] * v00 + w01[:, None] * v01 + w10[:, None] * v10 +
                    w11[:, None] * v11)
            acc = acc * alpha[:, None] + p[:, None] * vmix
            den = den * alpha + p
            m = m_new
        else:  # a register tile: per-point stores spill here (triton 2.1; 8 rows on sm_90)
            logits = tl.where(kidx[None, :] == j, lj[:, None], logits)
    if VALUES:
        if ONLINE:
            tl.debug_barrier()  # the logits other threads of this program stored
            lk = tl.load(s_ptr + s_off, mask=s_mask, other=float('-inf'))
            s = tl.exp(lk - m[:, None]) / den[:, None]
            acc = acc / den[:, None]
            tl.debug_barrier()  # every logit read before the softmax overwrites it
        else:
            lk = tl.where(kidx[None, :] < K, logits, float('-inf'))  # no padding in the max
            e = tl.exp(lk - tl.max(lk, axis=1)[:, None])
            s = e / tl.sum(e, axis=1)[:, None]
        tl.store(s_ptr + s_off, s, mask=s_mask)
        if not ONLINE:
            tl.debug_barrier()  # the softmax, read back one column per point
            for j in range(K):
                (ry0, ry1, x0, x1, wy0, wy1, wx0, wx1, dwy0, dwy1, dwx0,
                 dwx1) = _geometry(off_ptr, yq, xq, base, k_row, j, H, W, dil, K, KH, KW, ACC,
                                   IDX)
                sj = tl.load(s_ptr + k_row + j, mask=row_mask, other=0.0)
                v00, v01, v10, v11 = _corners(v_ptr, ry0, ry1, x0, x1, CV, CVP, ACC)
                acc += ((sj * wy0 * wx0)[:, None] * v00 + (sj * wy0 * wx1)[:, None] * v01 +
                        (sj * wy1 * wx0)[:, None] * v10 + (sj * wy1 * wx1)[:, None] * v11)
        cols = tl.arange(0, CVP)
        tl.store(out_ptr + rows[:, None] * CV + cols[None, :], acc,
                 mask=row_mask[:, None] & (cols[None, :] < CV))
    else:
        tl.store(s_ptr + s_off, logits, mask=s_mask)


@triton.jit
def _bwd_query_kernel(q_ptr, k_ptr, v_ptr, off_ptr, s_ptr, g_ptr, dl_ptr, dq_ptr, doff_ptr, R,
                      H, W, dil, K: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                      C: tl.constexpr, CP: tl.constexpr, CV: tl.constexpr, CVP: tl.constexpr,
                      BLOCK_K: tl.constexpr, ACC: tl.constexpr, IDX: tl.constexpr,
                      BLOCK_N: tl.constexpr, SOFTMAX: tl.constexpr, NEED_Q: tl.constexpr,
                      NEED_OFF: tl.constexpr):
    """Query side of the backward for ``BLOCK_N`` rows, each output written once: with
    ``SOFTMAX``, from ``g = dL/dout`` (R, CV) and the saved softmax ``s``, pass 1 computes
    ``ds_j = sum_c w_c <g, v[corner_c]>`` and the offset gradient through the values, then the
    softmax backward ``dl = s (ds - <s, ds>)``, stored to ``dl_ptr`` (read by pass 2 and by the
    dk pull); without ``SOFTMAX`` ``dl = dL/dlogits`` is read from ``dl_ptr``. Pass 2: ``dq =
    sum_j dl_j bilinear(k, p_j)`` and the offset gradient through the keys. The per-point
    scalars ``s_j``, ``dl_j`` are loaded (one column each), not picked out of a register tile."""
    raw = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = raw < R
    rows = tl.minimum(raw, R - 1).to(IDX)
    yq, xq, base, k_row = _row_geometry(rows, H, W, K, ACC)
    kidx = tl.arange(0, BLOCK_K)
    k_off = rows[:, None] * K + kidx[None, :]
    k_in = kidx[None, :] < K
    gy = tl.zeros((BLOCK_N, BLOCK_K), dtype=ACC)
    gx = tl.zeros((BLOCK_N, BLOCK_K), dtype=ACC)
    if SOFTMAX:
        g = _rows(g_ptr, rows, CV, CVP, ACC)
        ds = tl.zeros((BLOCK_N, BLOCK_K), dtype=ACC)
        for j in range(K):
            (ry0, ry1, x0, x1, wy0, wy1, wx0, wx1, dwy0, dwy1, dwx0,
             dwx1) = _geometry(off_ptr, yq, xq, base, k_row, j, H, W, dil, K, KH, KW, ACC, IDX)
            v00, v01, v10, v11 = _corners(v_ptr, ry0, ry1, x0, x1, CV, CVP, ACC)
            ga00 = tl.sum(g * v00, axis=1)
            ga01 = tl.sum(g * v01, axis=1)
            ga10 = tl.sum(g * v10, axis=1)
            ga11 = tl.sum(g * v11, axis=1)
            dsj = wy0 * (wx0 * ga00 + wx1 * ga01) + wy1 * (wx0 * ga10 + wx1 * ga11)
            ds = tl.where(kidx[None, :] == j, dsj[:, None], ds)
            if NEED_OFF:
                sj = tl.load(s_ptr + k_row + j, mask=row_mask, other=0.0).to(ACC)
                gyj, gxj = _weight_grad(sj * ga00, sj * ga01, sj * ga10, sj * ga11, wy0, wy1,
                                        wx0, wx1, dwy0, dwy1, dwx0, dwx1)
                gy = tl.where(kidx[None, :] == j, gyj[:, None], gy)
                gx = tl.where(kidx[None, :] == j, gxj[:, None], gx)
        s = tl.load(s_ptr + k_off, mask=k_in, other=0.0).to(ACC)
        dl = s * (ds - tl.sum(s * ds, axis=1)[:, None])
        tl.store(dl_ptr + k_off, dl, mask=row_mask[:, None] & k_in)
        tl.debug_barrier()  # pass 2 reads dl one column per point, across threads
    if NEED_Q or NEED_OFF:
        q = _rows(q_ptr, rows, C, CP, ACC)
        dq = tl.zeros((BLOCK_N, CP), dtype=ACC)
        for j in range(K):
            (ry0, ry1, x0, x1, wy0, wy1, wx0, wx1, dwy0, dwy1, dwx0,
             dwx1) = _geometry(off_ptr, yq, xq, base, k_row, j, H, W, dil, K, KH, KW, ACC, IDX)
            dlj = tl.load(dl_ptr + k_row + j, mask=row_mask, other=0.0).to(ACC)
            k00, k01, k10, k11 = _corners(k_ptr, ry0, ry1, x0, x1, C, CP, ACC)
            if NEED_Q:
                dq += dlj[:, None] * (
                    (wy0 * wx0)[:, None] * k00 + (wy0 * wx1)[:, None] * k01 +
                    (wy1 * wx0)[:, None] * k10 + (wy1 * wx1)[:, None] * k11)
            if NEED_OFF:
                gyj, gxj = _weight_grad(dlj * tl.sum(q * k00, axis=1),
                                        dlj * tl.sum(q * k01, axis=1),
                                        dlj * tl.sum(q * k10, axis=1),
                                        dlj * tl.sum(q * k11, axis=1), wy0, wy1, wx0, wx1,
                                        dwy0, dwy1, dwx0, dwx1)
                gy = tl.where(kidx[None, :] == j, gy + gyj[:, None], gy)
                gx = tl.where(kidx[None, :] == j, gx + gxj[:, None], gx)
        if NEED_Q:
            cols = tl.arange(0, CP)
            tl.store(dq_ptr + rows[:, None] * C + cols[None, :], dq,
                     mask=row_mask[:, None] & (cols[None, :] < C))
    if NEED_OFF:
        tl.store(doff_ptr + 2 * k_off, gy, mask=row_mask[:, None] & k_in)
        tl.store(doff_ptr + 2 * k_off + 1, gx, mask=row_mask[:, None] & k_in)


@triton.jit
def _corners_kernel(off_ptr, key_ptr, w_ptr, R, H, W, dil, R0, R1, K: tl.constexpr,
                    KH: tl.constexpr, KW: tl.constexpr, ACC: tl.constexpr, IDX: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """For every entry ``e = (r K + j) 4 + c`` (corner c of point j of query r) of the query
    rows ``R0 <= r < R1`` (one chunk of the inverse map): the key/value row it samples,
    ``key[e - 4 K R0]`` (``R`` for an off-map corner: sorted last, never pulled), and its
    bilinear weight ``w[e - 4 K R0]`` (the caller passes both pointers at the chunk's start).
    Input of the inverse map of the dk / dv pulls."""
    raw = R0 + tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.minimum(raw, R1 - 1).to(IDX)[:, None]
    kidx = tl.arange(0, BLOCK_K)[None, :]
    j = tl.minimum(kidx, K - 1)
    mask = (raw[:, None] < R1) & (kidx < K)
    yq, xq, base, k_row = _row_geometry(rows, H, W, K, ACC)
    (ry0, ry1, x0, x1, wy0, wy1, wx0, wx1, dwy0, dwy1, dwx0,
     dwx1) = _geometry(off_ptr, yq, xq, base, k_row, j, H, W, dil, K, KH, KW, ACC, IDX)
    e = ((rows - R0) * K + j) * 4
    tl.store(key_ptr + e, tl.where(dwy0 * dwx0 != 0, ry0 + x0, R), mask=mask)
    tl.store(key_ptr + e + 1, tl.where(dwy0 * dwx1 != 0, ry0 + x1, R), mask=mask)
    tl.store(key_ptr + e + 2, tl.where(dwy1 * dwx0 != 0, ry1 + x0, R), mask=mask)
    tl.store(key_ptr + e + 3, tl.where(dwy1 * dwx1 != 0, ry1 + x1, R), mask=mask)
    tl.store(w_ptr + e, wy0 * wx0, mask=mask)
    tl.store(w_ptr + e + 1, wy0 * wx1, mask=mask)
    tl.store(w_ptr + e + 2, wy1 * wx0, mask=mask)
    tl.store(w_ptr + e + 3, wy1 * wx1, mask=mask)


@triton.jit
def _pull_kernel(src_ptr, a_ptr, w_ptr, perm_ptr, start_ptr, first_ptr, out_ptr, NCHUNK, STRIDE,
                 K: tl.constexpr, CH: tl.constexpr, ACC: tl.constexpr, IDX: tl.constexpr,
                 BLOCK_E: tl.constexpr, BLOCK_CH: tl.constexpr):
    """Gradient of one key/value row ``t`` (one channel tile), pulled from the entries that
    sample it: ``out[t] = sum_e a[e // 4] w[e] src[e // 4K]`` over the entries ``e =
    perm[start[c, t]:start[c, t + 1]]`` of each chunk ``c`` of the inverse map in turn (chunk
    c: the stable sort of its corner keys; ``start`` is (NCHUNK, STRIDE)), so in the order of a
    single stable sort of all entries. ``first[c, t] <= start[c, t]`` starts the chunk's steps
    so that entry number i of the row (over all chunks) is added into accumulator lane
    ``i % BLOCK_E``: the sums do not depend on the chunking either.
    dv: ``a`` = softmax, ``src`` = dL/dout; dk: ``a`` = dL/dlogits, ``src`` = query rows."""
    t = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_CH + tl.arange(0, BLOCK_CH)
    c_in = cols < CH
    acc = tl.zeros((BLOCK_E, BLOCK_CH), dtype=ACC)
    for c in range(NCHUNK):
        e_lo = tl.load(start_ptr + c * STRIDE + t)
        e_hi = tl.load(start_ptr + c * STRIDE + t + 1)
        for e0 in range(tl.load(first_ptr + c * STRIDE + t), e_hi, BLOCK_E):
            ei = e0 + tl.arange(0, BLOCK_E)
            e_in = (ei >= e_lo) & (ei < e_hi)
            p = tl.load(perm_ptr + ei, mask=e_in, other=0).to(IDX)
            coef = (tl.load(w_ptr + p, mask=e_in, other=0.0).to(ACC) *
                    tl.load(a_ptr + p // 4, mask=e_in, other=0.0).to(ACC))
            x = tl.load(src_ptr + (p // (4 * K))[:, None] * CH + cols[None, :],
                        mask=e_in[:, None] & c_in[None, :], other=0.0).to(ACC)
            acc += coef[:, None] * x
    tl.store(out_ptr + t.to(IDX) * CH + cols, tl.sum(acc, axis=0), mask=c_in)
