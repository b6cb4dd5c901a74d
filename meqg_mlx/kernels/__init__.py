"""Custom kernels: one dispatch over three backends, chosen by device at call time.

Each kernel's body is written once in `metal/` (meqg_metal) and runs as
- Metal, through `mx.fast.metal_kernel`, on Apple GPUs;
- CUDA, through `mx.fast.cuda_kernel`, on MLX's CUDA backend;
- C++ on the CPU, in the MLX extension `make kernels` builds (meqg_metal._meqg_kernels).
Every kernel has its MLX-ops reference (the code meqg ran before), which stays the
oracle of the tests and the fallback: MEQG_KERNELS=0 turns every kernel off, and a
kernel whose backend is missing falls back with the reason in `status()` (`meqg doctor`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

import mlx.core as mx

# Kernels and the backends they have; a backend missing here runs the MLX-ops reference.
KERNELS = {
    "ssd_scan": ("cpu", "metal", "cuda"),
    "causal_conv": ("cpu", "metal", "cuda"),  # the SSD mixer's depthwise conv + bias + silu
    "activations": ("cpu",),  # silu, softplus, gelu, swiglu; on GPUs MLX's own fused ops are vectorised
    "gate_reductions": ("cpu",),
    "nearest_code": ("cpu", "metal", "cuda"),  # RVQ's argmin over codes
    "grouped_matmul": ("cpu",),  # the MoE's expert products; GPUs run mx.gather_mm
    "softmax": ("cpu",),  # softmax, logsumexp, cross-entropy along the last axis
    "attention": ("cpu",),  # the encoders'; GPUs run mx.fast.scaled_dot_product_attention
    "residual_norm": ("cpu",),  # BERT's LayerNorm(x + h + bias); GPUs run mx.fast.layer_norm
    "context_mix": ("cpu",),  # the next-concept head's lag mixture; GPUs run MLX's fused ops
}


@dataclass
class KernelStatus:
    name: str
    backend: str | None  # "cpu", "metal", "cuda", or None: the MLX-ops reference runs
    reason: str


def extension():
    """The CPU extension module, or None (the reason is `extension_problem()`)."""
    return _load_extension()[0]


def extension_problem() -> str | None:
    return _load_extension()[1]


@cache
def _load_extension():
    from meqg_metal import BUILD_FAILED

    try:
        from meqg_metal import _meqg_kernels
    except ImportError as exc:
        if BUILD_FAILED.exists():
            return None, f"the C++ extension did not build: {BUILD_FAILED.read_text().strip()}"
        return None, f"the C++ extension is not built (run `make kernels`): {exc}"
    try:  # an extension built against another MLX or nanobind imports, then fails on its first call
        one = mx.ones((1, 1, 1, 1))
        step = one[..., 0]
        mx.eval(_meqg_kernels.ssd_scan_forward(one, step, step, one, one, one.reshape(1), one, 1, stream=mx.cpu))
    except (TypeError, RuntimeError, ValueError) as exc:
        return None, f"the C++ extension does not run with mlx {mx.__version__} (rebuild: `make kernels`): {exc}"
    return _meqg_kernels, None


def device_backend() -> str:
    """The backend the default device runs: "cpu", "metal" or "cuda"."""
    if mx.default_device().type == mx.DeviceType.cpu:
        return "cpu"
    return "metal" if mx.metal.is_available() else "cuda"


def kernel_status(name: str) -> KernelStatus:
    """Which backend `name` runs on the default device now, and why."""
    if os.environ.get("MEQG_KERNELS", "1") == "0":
        return KernelStatus(name, None, "MEQG_KERNELS=0: the MLX-ops reference runs")
    backend = device_backend()
    if backend not in KERNELS[name]:
        return KernelStatus(name, None, f"no {backend} kernel: the MLX-ops reference runs")
    if backend == "cpu" and extension() is None:
        return KernelStatus(name, None, extension_problem())
    how = {"cpu": "C++ extension", "metal": "mx.fast.metal_kernel", "cuda": "mx.fast.cuda_kernel"}[backend]
    return KernelStatus(name, backend, f"{how} on {mx.default_device()}")


def status() -> list[KernelStatus]:
    return [kernel_status(name) for name in KERNELS]


def gpu_kernel(name: str, inputs: list[str], outputs: list[str], bodies: list[str], call: str, atomic: bool):
    """A Metal or CUDA kernel (by the default device) running `call`, a shared-body function
    called with the thread's `row`, behind the dialect's prelude. Rows beyond ROWS return."""
    from meqg_metal import source

    if device_backend() == "metal":
        header = ("#define MEQG_ATOMIC_OUTPUTS\n" if atomic else "") + source("prelude_metal.h")
        header += "".join(source(body) for body in bodies)
        entry = f"int row = int(thread_position_in_grid.x);\nif (row >= ROWS) return;\n{call};"
        return mx.fast.metal_kernel(
            name=name, input_names=inputs, output_names=outputs, source=entry, header=header, atomic_outputs=atomic
        )
    header = source("prelude_cuda.h") + "".join(source(body) for body in bodies)
    entry = f"int row = blockIdx.x * blockDim.x + threadIdx.x;\nif (row >= ROWS) return;\n{call};"
    return mx.fast.cuda_kernel(name=name, input_names=inputs, output_names=outputs, source=entry, header=header)


def launch(kernel, inputs: list, dims: dict, output_shapes: list, **options):
    """Run a `gpu_kernel` over dims["ROWS"] threads on float32 inputs; dims become template constants."""
    return kernel(
        inputs=[v.astype(mx.float32) for v in inputs],
        template=list(dims.items()),
        grid=(dims["ROWS"], 1, 1),
        threadgroup=(min(dims["ROWS"], 256), 1, 1),
        output_shapes=output_shapes,
        output_dtypes=[mx.float32] * len(output_shapes),
        **options,
    )


def kernel_function(forward, backward, reference, internal_outputs: int = 0):
    """A differentiable function run by kernels.

    `forward(*inputs)` -> tuple of outputs, of which the last `internal_outputs` (states kept
    for the backward pass) are the kernel's own; `backward(inputs, outputs, cotangents)` ->
    tuple of the inputs' gradients; `reference(*inputs)` -> the other outputs by MLX ops.
    Kernels have no derivative of their derivative, so second order (Hessian-vector
    products, train/curvature.py) differentiates the reference's VJP.
    """

    @mx.custom_function
    def gradient(inputs, outputs, cotangents):
        return tuple(backward(inputs, outputs, cotangents))

    @gradient.vjp
    def gradient_vjp(primals, d_gradient, _):
        inputs, outputs, cotangents = primals
        count, kept = len(inputs), len(cotangents) - internal_outputs

        def reference_vjp(*flat):
            return mx.vjp(reference, list(flat[:count]), list(flat[count:]))[1]

        second = mx.vjp(reference_vjp, [*inputs, *cotangents[:kept]], _as_tuple(d_gradient))[1]
        internal = [mx.zeros_like(c) for c in cotangents[kept:]]
        return tuple(second[:count]), tuple(mx.zeros_like(o) for o in outputs), (*second[count:], *internal)

    @mx.custom_function
    def function(*inputs):
        return tuple(forward(*inputs))

    @function.vjp
    def function_vjp(primals, cotangents, outputs):
        return gradient(_as_tuple(primals), _as_tuple(outputs), _as_tuple(cotangents))

    return function


def reference_vjp(reference):
    """A `kernel_function` backward that differentiates the reference, for kernels written
    forward only (the encoders', which meqg runs for inference)."""
    return lambda inputs, outputs, cotangents: mx.vjp(reference, list(inputs), list(cotangents))[1]


def _as_tuple(arrays) -> tuple:
    """MLX hands a custom function's VJP a lone array where there is one, else a sequence."""
    return (arrays,) if isinstance(arrays, mx.array) else tuple(arrays)
