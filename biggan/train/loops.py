"""The step's loops: D steps and micro-batches as `lax.scan` on TPU/GPU or unrolled in Python on
CPU, the gradient accumulation over micro-batches, and the unrolled-D loop (Metz et al. 2017)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def loops_unrolled(unroll=None) -> bool:
    """Whether the step's loops run as Python loops: `unroll`, or by default on CPU
    (scan_or_unroll)."""
    return jax.default_backend() == "cpu" if unroll is None else bool(unroll)


def scan_or_unroll(body, init, xs, unroll=None):
    """`lax.scan(body, init, xs)`, or the same loop unrolled in Python when `unroll` (default: on
    CPU).

    XLA:CPU runs convolutions inside a while-loop body ~40× slower than outside (jax 0.10.2,
    measured: the same D-block gradient twice took 5.1 s in lax.scan and 0.13 s unrolled;
    BUILD_NOTES). On TPU/GPU scan keeps compile time flat in the number of D steps and
    accumulations, so it stays the default there.
    """
    if not loops_unrolled(unroll):
        return jax.lax.scan(body, init, xs)
    n = jax.tree.leaves(xs)[0].shape[0]
    carry, outs = init, []
    for i in range(n):
        carry, out = body(carry, jax.tree.map(lambda a: a[i], xs))
        outs.append(out)
    stacked = None if outs[0] is None else jax.tree.map(lambda *a: jnp.stack(a), *outs)
    return carry, stacked


def accumulate_gradients(loss_fn, params, states, micro_batches, unroll=None):
    """Mean loss, gradient and aux over micro-batches (leading axis of `micro_batches`), in
    `scan_or_unroll`.

    `loss_fn(params, states, micro_batch) -> (loss, (aux, new_states))`; the states (SN vectors, BN
    statistics, the technique states D's micro-batches change) are threaded through them in order.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    n = jax.tree.leaves(micro_batches)[0].shape[0]

    def body(acc, micro_batch):
        grads_sum, states, loss_sum, aux_sum = acc
        (loss, (aux, states)), grads = grad_fn(params, states, micro_batch)
        sums = (
            jax.tree.map(jnp.add, grads_sum, grads),
            loss_sum + loss,
            jax.tree.map(jnp.add, aux_sum, aux),
        )
        return (sums[0], states, sums[1], sums[2]), None

    first = jax.tree.map(lambda a: a[0], micro_batches)
    if loops_unrolled(unroll):
        # The first micro-batch's results start the sums (0 + x = x: the same sums as from zeros),
        # so each micro-batch's loss is traced once; the zeros of the scan below need the aux
        # structure, which jax.eval_shape gets by tracing the loss and its gradient once more (about
        # half of the BigGAN-deep smoke step's trace, bench/startup.py).
        (loss, (aux, states)), grads = grad_fn(params, states, first)
        acc = (grads, states, loss, aux)
        if n > 1:
            rest = jax.tree.map(lambda a: a[1:], micro_batches)
            acc, _ = scan_or_unroll(body, acc, rest, unroll)
    else:
        aux_shape = jax.eval_shape(lambda: grad_fn(params, states, first)[0][1][0])
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), aux_shape)
        init = (jax.tree.map(jnp.zeros_like, params), states, jnp.zeros(()), zeros)
        acc, _ = scan_or_unroll(body, init, micro_batches, unroll)
    grads, states, loss, aux = acc
    return (
        jax.tree.map(lambda g: g / n, grads),
        states,
        loss / n,
        jax.tree.map(lambda a: a / n, aux),
    )


def unroll_discriminator(d_step_fn: Callable, d_state, k: int, unroll: bool = False):
    """Apply `d_state = d_step_fn(d_state, i)` for i = 0 … k−1 with lax.scan and return the result
    (`unroll=True`: a Python loop with i a Python int — faster for convolutions on XLA:CPU, see
    scan_or_unroll).

    Unrolled GANs (Metz et al. 2017): at a G step, unroll k D updates from the current D (each step
    drawing its own batch, e.g. indexing a stacked batch with i inside d_step_fn) and compute G's
    loss against the unrolled D. Differentiating G's loss through this function backpropagates
    through the k D updates (the full unrolled gradient); wrap the result in jax.lax.stop_gradient
    for the cheaper surrogate. Only the real D update (outside) is kept; the unrolled state is
    discarded after the G step.
    """
    if k < 0:
        raise ValueError(f"unroll steps k must be ≥ 0, got {k}.")
    if unroll:
        for i in range(k):
            d_state = d_step_fn(d_state, i)
        return d_state
    final, _ = jax.lax.scan(lambda s, i: (d_step_fn(s, i), None), d_state, jnp.arange(k))
    return final
