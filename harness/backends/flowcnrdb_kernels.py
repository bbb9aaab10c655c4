"""FlowCNRDB's building blocks computed for a CPU: the same functions as the modules, reorganised.

Point-wise layers run as matrix products in channels-last layout, a cache-sized
piece at a time; the windowed GRN's box sums as a sliding window down the rows
and block sums along the columns, its replicate padding applied by
broadcasting; a CNRDB's dense features grow in one buffer. Each function
states which module call it equals; ``tests/inference/test_backend_fast.py`` holds them
to the modules within 1e-4 (float32). Nothing here changes process state.

Reduced precision (:class:`Compute` with ``dtype`` bfloat16) runs the matrix
products and the dense 3x3 convolutions named there in bfloat16 and keeps
every statistic, norm, residual stream and the warp in the wide dtype. No
reduced-precision product ever reads a strided slice: oneDNN's AMX bfloat16
kernel reads the columns past K of such a slice (oneDNN issue 5717), so each
such operand is handed over as a contiguous copy (:func:`_dense`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.models.flowcnrdb import CNRDB, GRN, ConvNeXtBlock, LayerNorm2d


class Compute:
    """The dtypes of the fast path: ``dtype`` for matrix products and dense 3x3 convolutions, ``wide`` for the rest.

    With ``dtype`` bfloat16 the point-wise layers (matrix products), the
    CNRDB's 3x3 fusion convolutions and the U-Net's dense 3x3 convolutions (its
    skip convolutions and each frame's share of its first one) run in
    bfloat16; everything else stays in ``wide`` (the input's dtype): residual
    streams, the expanded maps, depth-wise convolutions, LayerNorm and GRN
    statistics, the flow and the warp, the remaining convolutions. Weights are
    converted once per :class:`Compute`. With ``dtype == wide`` every
    conversion is a no-op.

    ``fused_expansion``: ConvNeXt expansions (1x1 and SiLU) through oneDNN's
    fused product-and-SiLU (:func:`fused_expansion_works`), in float32 over a
    whole map at once (:meth:`expanded`, stages 1 and 2), in reduced
    precision ``REDUCED_ROWS`` pixels at a time, each piece widened into the
    expanded map while in cache (:meth:`products_into`, every stage).
    """

    ROWS = 8192  # pixels per float32 product: its output is still in cache for what follows it
    REDUCED_ROWS = 32768  # pixels per reduced-precision product; also bounds oneDNN's buffers

    def __init__(self, dtype: torch.dtype, wide: torch.dtype, fused_expansion: bool = False) -> None:
        self.dtype, self.wide = dtype, wide
        self.fused_expansion = fused_expansion
        self._weights: dict[int, Tensor] = {}

    def weight(self, p: Tensor) -> Tensor:
        if p.dtype == self.dtype:
            return p
        if id(p) not in self._weights:
            self._weights[id(p)] = p.to(self.dtype)
        return self._weights[id(p)]

    def conv(self, conv: nn.Conv2d, x: Tensor) -> Tensor:
        """``conv(x)`` in ``dtype``."""
        return conv._conv_forward(x.to(self.dtype), self.weight(conv.weight), self.bias(conv.bias))

    def bias(self, p: Tensor | None) -> Tensor | None:
        return None if p is None else self.weight(p)

    @property
    def expands_whole(self) -> bool:
        """Whether a ConvNeXt expansion is one fused product over the whole map (:meth:`expanded`)."""
        return self.fused_expansion and self.dtype == self.wide

    def expanded(self, conv: nn.Conv2d, x: Tensor) -> Tensor:
        """silu(conv(x)) of a contiguous channels-last (..., C) map as one oneDNN product with the SiLU fused."""
        return fused_silu_product(x, conv.weight.flatten(1), conv.bias)

    def linear(self, conv: nn.Conv2d, x: Tensor, silu: bool = False, add: Tensor | None = None) -> Tensor:
        """A 1x1 convolution on a channels-last (..., C) map, returned in the wide dtype (see :meth:`linear_into`)."""
        return self.linear_into(conv, x, x.new_empty(*x.shape[:-1], conv.out_channels, dtype=self.wide), silu, add)

    def linear_into(
        self, conv: nn.Conv2d, x: Tensor, out: Tensor, silu: bool = False, add: Tensor | None = None
    ) -> Tensor:
        """A 1x1 convolution on a channels-last (..., C) map written into ``out``, each piece then SiLU or ``+ add``.

        The product runs in ``dtype``, ``ROWS`` pixels at a time (``REDUCED_ROWS``
        in reduced precision), each piece's SiLU or sum following at once in the
        wide dtype while the piece is in cache. ``x`` may be a column slice of a
        wider buffer (read in place in float32), ``out`` one too (written in place).
        """
        w = self.weight(conv.weight).flatten(1)
        return self.products_into([(x, w)], self.bias(conv.bias), out, silu, add)

    def products_into(
        self,
        terms: Sequence[tuple[Tensor, Tensor]],
        b: Tensor | None,
        out: Tensor,
        silu: bool = False,
        add: Tensor | None = None,
    ) -> Tensor:
        """sum of x @ w.T over ``terms`` (+ ``b``) into ``out``, a piece at a time as in :meth:`linear_into`.

        The weights ``w`` (out, in) are in ``dtype`` already; each ``x`` is a channels-last (..., C) map of ``out``'s pixels.
        """
        srcs = [(x.flatten(0, -2), w) for x, w in terms]
        dst = out.view(-1, out.shape[-1])
        extra = None if add is None else add.flatten(0, -2)
        direct = dst.dtype == self.dtype == self.wide
        fused = silu and len(srcs) == 1 and not direct and self.fused_expansion
        step = self.ROWS if direct or fused else self.REDUCED_ROWS
        for i in range(0, dst.shape[0], step):
            piece = dst[i : i + step]
            y = piece if direct else None
            for k, (src, w) in enumerate(srcs):
                part = src[i : i + step].to(self.dtype)
                if fused:  # the SiLU comes with the product, in float32 before the rounding to ``dtype``
                    y = piece.copy_(fused_silu_product(part, w, b))
                elif direct and k:
                    piece.addmm_(part, w.t())
                elif direct:
                    product_into(part, w, b, piece)
                else:  # into the wide output by converting the product
                    part = product_into(part, w, b if k == 0 else None, part.new_empty(part.shape[0], w.shape[0]))
                    if y is None:
                        y = piece.copy_(part) if piece.dtype == self.wide else part.to(self.wide)
                    else:
                        y.add_(part)
            assert y is not None  # there is at least one term
            if silu and not fused:
                F.silu(y, inplace=True)
            elif extra is not None:
                y.add_(extra[i : i + step])
            if y.dtype != piece.dtype:
                piece.copy_(y)
        return out


def _dense(x: Tensor) -> Tensor:
    """``x`` itself in float32 or wider; in reduced precision a contiguous copy unless it is contiguous already.

    oneDNN's AMX bfloat16 product reads past K when K is not a multiple of 32
    and the operand is a column slice of a wider buffer: whatever the columns
    beyond hold (NaN in a fresh buffer) reaches the output. A contiguous
    operand has no such columns.
    """
    return x if x.dtype.itemsize >= 4 or x.is_contiguous() else x.contiguous()


def product_into(x: Tensor, w: Tensor, b: Tensor | None, out: Tensor) -> Tensor:
    """x @ w.T (+ b) of a (pixels, C) matrix, written into ``out``."""
    x = _dense(x)
    return torch.mm(x, w.t(), out=out) if b is None else torch.addmm(b, x, w.t(), out=out)


def fused_silu_product(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """oneDNN's silu(x @ w.T + b), the SiLU applied as each piece is computed (a new tensor)."""
    return torch.ops.mkldnn._linear_pointwise(_dense(x), w, b, "swish", [], "")


@functools.cache
def fused_expansion_works(dtype: torch.dtype = torch.float32) -> bool:
    """Whether oneDNN's fused product-and-SiLU in ``dtype`` exists in this torch build and agrees with ``silu(linear(x))``.

    Probed once per process and dtype on a small product.
    """
    return probe_fused_expansion(dtype)


def probe_fused_expansion(dtype: torch.dtype = torch.float32) -> bool:
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*shape, generator=gen).to(dtype) for shape in ((3, 5, 16), (40, 16), (40,)))
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        with torch.inference_mode():
            fused = fused_silu_product(x, w, b)
    except (AttributeError, RuntimeError, NotImplementedError, TypeError):
        return False
    expected = F.silu(F.linear(x.double(), w.double(), b.double()))  # rounded once to ``dtype`` at most
    tol = max(torch.finfo(dtype).eps, 1e-5)
    if fused.shape != expected.shape or fused.dtype != dtype:
        return False
    return bool(torch.allclose(fused.double(), expected, rtol=tol, atol=1e-6))


def convnext_fast(
    block: ConvNeXtBlock, x: Tensor, cast: Compute, then: tuple[nn.Conv2d, Tensor] | None = None
) -> Tensor:
    """``block(x)``: point-wise layers as matrix products in channels-last layout, a few rows at a time.

    The depth-wise convolution and LayerNorm go over the whole map, the
    expansion and its SiLU ``Compute.ROWS`` pixels at a time (with
    ``cast.expands_whole``: one oneDNN product with the SiLU fused,
    :meth:`Compute.expanded`); once the GRN's window statistics are known, its
    normalisation, the projection and the residual sum go ``PROJECT_PIXELS``
    at a time, each piece of the expanded map read back from cache. Each
    pixel's arithmetic is the same in every arrangement, so are the bits.

    With ``then = (conv, into)`` (a CNRDB layer: 1x1 ``conv`` and SiLU after
    the block) silu(conv(block(x))) goes into ``into`` (B, h, w, C') and the
    block's own output is never formed (:func:`fold_projection`).
    """
    dw, ln, pw1, _, _, grn, pw2, _ = block.block
    x = x.to(cast.wide).contiguous(memory_format=torch.channels_last)
    b, _, h, w = x.shape
    rows = x.permute(0, 2, 3, 1)  # (B, h, w, C); depth-wise, LayerNorm, GRN and the residual in the wide dtype
    out = torch.empty_like(rows) if then is None else then[1]
    terms = None if then is None else fold_projection(pw2, then[0], cast.dtype)

    def project(r0: int, r1: int) -> None:
        grn_apply_(grn, y, n, (r0, r1))
        if terms is None:
            cast.linear_into(pw2, y[:, r0:r1], out[:, r0:r1], add=rows[:, r0:r1])
        else:
            wg, wx, bias = terms
            cast.products_into([(y[:, r0:r1], wg), (rows[:, r0:r1], wx)], bias, out[:, r0:r1], silu=True)

    if cast.expands_whole:
        y = cast.expanded(pw1, _layer_norm(ln, dw(x)))
    else:
        y = rows.new_empty(*rows.shape[:-1], pw1.out_channels)
        cast.linear_into(pw1, _layer_norm(ln, dw(x)), y, silu=True)
    n = grn_scale(grn, y)
    in_row_pieces(b, w)(project, h)
    return out.permute(0, 3, 1, 2)


def fold_projection(pw2: nn.Conv2d, conv: nn.Conv2d, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(Wc W2, Wc, Wc b2 + bc) in ``dtype``: ``conv`` after a block's projection ``pw2`` and residual sum, as two products.

    conv(x + pw2(g)) = g @ (Wc W2).T + x @ Wc.T + (Wc b2 + bc). Folded in
    float64 and rounded once: every product of two float32 values is exact
    there, so the folded weights do not depend on how a matrix product splits
    its sums over threads.
    """
    wc, w2 = conv.weight.flatten(1).double(), pw2.weight.flatten(1).double()
    bias = torch.zeros(wc.shape[0], dtype=torch.float64)
    if pw2.bias is not None:
        bias += wc @ pw2.bias.double()
    if conv.bias is not None:
        bias += conv.bias.double()
    return (wc @ w2).to(dtype), wc.to(dtype), bias.to(dtype)


PROJECT_PIXELS = 12288  # pixels per piece of a ConvNeXt block's projection: 16 rows of a full-size latent map


def in_row_pieces(b: int, w: int) -> Callable[[Callable[[int, int], None], int], None]:
    """A runner of ``step(r0, r1)`` over the rows of B x h x ``w`` maps in order, ``PROJECT_PIXELS`` per piece (one piece if B > 1)."""

    def run(step: Callable[[int, int], None], h: int) -> None:
        per = h if b > 1 else max(1, PROJECT_PIXELS // w)
        for r0 in range(0, h, per):
            step(r0, min(h, r0 + per))

    return run


def _layer_norm(ln: LayerNorm2d, d: Tensor) -> Tensor:
    """LayerNorm of a (B, C, h, w) channels-last map over its channels, as a (B, h, w, C) view."""
    return F.layer_norm(d.permute(0, 2, 3, 1), ln.norm.normalized_shape, ln.norm.weight, ln.norm.bias, ln.norm.eps)


def cnrdb_fast(cnrdb: CNRDB, x: Tensor, cast: Compute) -> Tensor:
    """``cnrdb(x)``: the dense features grow in one channels-last buffer, no concatenations.

    The buffer starts zeroed, so no column of it ever holds an uninitialised
    value, whatever a product reads.
    """
    b, c, h, w = x.shape
    grow = cnrdb.blocks[0][2].out_channels
    buf = x.new_zeros(b, h, w, c + grow * len(cnrdb.blocks), dtype=cast.dtype)
    buf[..., :c] = x.permute(0, 2, 3, 1)
    for j, (proj, block, out, _) in enumerate(cnrdb.blocks):
        start = c + grow * j
        y = x.new_empty(b, h, w, proj.out_channels, dtype=cast.wide)
        cast.linear_into(proj, buf[..., :start], y)
        convnext_fast(block, y.permute(0, 3, 1, 2), cast, then=(out, buf[..., start : start + grow]))
    conv = cast.conv(cnrdb.conv_out, buf.permute(0, 3, 1, 2)).to(cast.wide)
    return torch.add(conv.mul_(0.2), x)


_ONE = torch.ones(())


def grn_channels_last_(grn: GRN, x: Tensor) -> Tensor:
    """``grn`` on a (B, h, w, C) map, overwriting ``x``; the normalisation is one multiply-add, x * (gamma * N + 1) + beta."""
    return grn_apply_(grn, x, grn_scale(grn, x))


def grn_scale(grn: GRN, x: Tensor) -> Tensor:
    """gamma * N + 1 of ``grn`` for a (B, h, w, C) map, over its valid windows (not yet padded).

    On large maps the window sums go ``GRN_CHUNK_BYTES`` of row sums at a
    time, while those rows are still in cache; maps whose row sums fit in
    three chunks go in one. Every output row's arithmetic is the same either
    way, so are the bits.
    """
    _, h, w, _ = x.shape
    s = grn.window
    if h <= s and w <= s:
        g = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True)
        return _normalised(grn, g, g)
    k1, k2 = min(h, s), min(w, s)
    rows, row = h - k1 + 1, x[:, 0].nbytes
    whole = rows * row <= 3 * GRN_CHUNK_BYTES
    out = None if whole else x.new_empty(x.shape[0], rows, w - k2 + 1, x.shape[3])
    for j0, sums in _row_square_sums(x, k1, rows if whole else max(1, GRN_CHUNK_BYTES // row)):
        g = column_window_sums_(sums, k2).clamp_min_(0).sqrt_()
        if out is None:
            return _normalised(grn, g, g)
        _normalised(grn, g, out[:, j0 : j0 + g.shape[1]])
    assert out is not None
    return out


GRN_CHUNK_BYTES = 6 << 20  # row sums per chunk of grn_scale


def _normalised(grn: GRN, g: Tensor, out: Tensor) -> Tensor:
    """gamma * N + 1 with N = G / (mean_c G + eps), written into ``out``: two passes over G (overwritten)."""
    return torch.addcmul(_ONE, g.div_(g.mean(dim=-1, keepdim=True).add_(1e-6)), grn.gamma.view(-1), out=out)


def grn_apply_(grn: GRN, x: Tensor, n: Tensor, rows: tuple[int, int] | None = None) -> Tensor:
    """x * n + beta over ``x``'s rows ``rows`` (default: all), in place.

    Replicate padding without materialising it: each band of x takes its edge
    of n by broadcasting.
    """
    _, h, w, _ = x.shape
    r0, r1 = rows or (0, h)
    beta = grn.beta.view(-1)
    for ys, yn, ns, nn_ in _segments(h, n.shape[1]):
        s0, s1 = max(ys, r0), min(ys + yn, r1)
        if s0 >= s1:
            continue
        src = n[:, ns + s0 - ys : ns + s1 - ys] if nn_ == yn else n[:, ns : ns + 1]
        for xs, xn, ms, mn in _segments(w, n.shape[2]):
            band = x[:, s0:s1, xs : xs + xn]
            torch.addcmul(beta, band, src[:, :, ms : ms + mn], out=band)
    return x


def _row_square_sums(x: Tensor, k: int, step: int) -> Iterator[tuple[int, Tensor]]:
    """The h - k + 1 'valid' sums of the squares of ``k`` consecutive rows of a (B, h, w, C) map, ``step`` at a time.

    Yields (first row, sums of ``step`` rows or fewer) in order, all in one
    buffer that the next chunk overwrites. A sliding window, row by row: the
    first sum accumulates k squared rows, each next one adds the row entering
    and subtracts the one leaving (the previous chunk's last sum is kept
    aside, so the caller may overwrite what it gets). Every step is one
    contiguous operation on whole rows.
    """
    rows = x.shape[1] - k + 1
    buf = x.new_empty(x.shape[0], min(step, rows), *x.shape[2:])
    last = x.new_empty(x.shape[0], *x.shape[2:])
    for j0 in range(0, rows, step):
        out = buf[:, : min(step, rows - j0)]
        for j in range(j0, j0 + out.shape[1]):
            acc = out[:, j - j0]
            if j == 0:
                acc.zero_()
                for i in range(k):
                    acc.addcmul_(x[:, i], x[:, i])
                continue
            enter, leave = x[:, j + k - 1], x[:, j - 1]
            prev = last if j == j0 else out[:, j - j0 - 1]
            torch.addcmul(prev, enter, enter, out=acc).addcmul_(leave, leave, value=-1)
        if j0 + step < rows:
            last.copy_(out[:, -1])
        yield j0, out


def column_window_sums_(src: Tensor, k: int) -> Tensor:
    """The n - k + 1 'valid' sums of ``k`` consecutive columns of a contiguous (..., n, C) map, written over ``src``.

    The window sums at every ``b``-th start come from block sums (one
    reduction, then a cumulative sum over n / b blocks); the b - 1 starts after
    each follow by adding the differences src[i + k] - src[i], b - 1 whole-map
    operations vectorised over the channels. Once the block sums and the
    differences are taken, ``src`` is not read again: the sums overwrite its
    first n - k + 1 columns (the result is a view of it).
    """
    *lead, n, c = src.shape
    if n == k:
        return src.sum(-2, keepdim=True)
    b = next((b for b in (32, 16, 8) if k % b == 0 and n % b == 0), 0)
    if not b:
        cum = src.cumsum(-2)
        out = cum.new_empty(*lead, n - k + 1, c)
        out[..., :1, :] = cum[..., k - 1 : k, :]
        torch.sub(cum[..., k:, :], cum[..., : n - k, :], out=out[..., 1:, :])
        return out
    rows = src.reshape(-1, n, c)
    blocks, m = n // b, k // b
    cum = rows.view(-1, blocks, b, c).sum(2).cumsum(1)  # (P, blocks, C): sums of the first 1, 2, ... blocks
    starts = blocks - m + 1  # window sums at the starts 0, b, 2b, ..., n - k
    aligned = cum[:, m - 1 :].clone()
    aligned[:, 1:] -= cum[:, : starts - 1]
    full = (starts - 1) * b
    steps = torch.sub(rows[:, k:], rows[:, : n - k]).view(-1, starts - 1, b, c)
    out = rows[:, : n - k + 1]  # src from here on
    grid = out[:, :full].view(-1, starts - 1, b, c)
    grid[:, :, 0] = aligned[:, :-1]
    for t in range(1, b):
        torch.add(grid[:, :, t - 1], steps[:, :, t - 1], out=grid[:, :, t])
    out[:, full] = aligned[:, -1]
    return out.view(*lead, n - k + 1, c)


def _segments(size: int, valid: int) -> list[tuple[int, int, int, int]]:
    """(start, length, source start, source length) of the replicate-padded layout along one axis.

    The valid values sit after (size - valid) // 2 copies of the first one and
    before the remaining copies of the last, as ``F.pad(mode='replicate')`` places them.
    """
    top = (size - valid) // 2
    bottom = size - valid - top
    segs = [(top, valid, 0, valid)]
    if top:
        segs.insert(0, (0, top, 0, 1))
    if bottom:
        segs.append((top + valid, bottom, valid - 1, 1))
    return segs
