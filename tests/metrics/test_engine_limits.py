"""The compiled engine at the edges of its input range: tiny spacings terminate and stay exact."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from rdcl.metrics import _engine

# Runs in a child process so that a hang fails the test (after the timeout) instead of the suite.
_TINY_SPACINGS = textwrap.dedent(
    """
    import numpy as np
    from rdcl.metrics import _engine
    from rdcl.metrics.reference import surface_distances_reference

    ext = _engine.extension()
    gt = np.zeros((4, 20, 20), bool)
    gt[0, 1:4, 1:4] = True
    pred = np.zeros((4, 20, 20), bool)
    pred[3, 15:19, 15:19] = True  # far from gt: no target inside a query's search window
    rng = np.random.default_rng(3)
    cases = [(pred, gt), (rng.random((4, 20, 20)) < 0.05, rng.random((4, 20, 20)) < 0.05)]
    for s in (1e-8, 1e-6, 1e-12):
        for spacing in ((s, s, s), (1.0, s, s), (s, 1.0, 2 * s)):
            for p, g in cases:
                ours = ext.surface_distances_cpu(
                    p.view(np.uint8), g.view(np.uint8), list(spacing), "corner", 1
                )
                ref = surface_distances_reference(p, g, spacing)
                # The reference's distances are scipy's EDT, whose last bit is scipy's (its build,
                # its version): isotropic, within 2 ulp (a tie between two offsets at the same true
                # distance can round differently, docs/metrics.md "Exactness"); at anisotropy 1e8
                # the plane transform may pick a neighbour whose squared distance differs below one
                # ulp of the sum (the documented last-bit limit). The areas are rdcl's own table on
                # both sides: equal as multisets (their order follows the distances).
                rtol = 4.5e-16 if len(set(spacing)) == 1 else 1e-14
                for k in (0, 2):
                    np.testing.assert_allclose(ours[k], ref[k], rtol=rtol, atol=0)
                    np.testing.assert_array_equal(np.sort(ours[k + 1]), np.sort(ref[k + 1]))
    print("ok")
    """
)


@pytest.mark.skipif(not _engine.HAVE_EXTENSION, reason="rdcl._surface not built")
def test_tiny_spacing_terminates_and_matches_reference():
    # A hang guard, not a timing assertion: before the fix 1e-8 mm ran for minutes.
    proc = subprocess.run(
        [sys.executable, "-c", _TINY_SPACINGS], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


needs_ext = pytest.mark.skipif(not _engine.HAVE_EXTENSION, reason="rdcl._surface not built")


@needs_ext
@pytest.mark.parametrize(
    ("shape", "spacing", "match"),
    [
        ((4, 4, 4), (1.0, float("nan"), 1.0), "finite positive spacing, found nan on axis 1"),
        ((4, 4, 4), (1.0, 1.0, 0.0), "finite positive spacing, found 0 on axis 2"),
        ((4, 4, 4), (-1e-9, 1.0, 1.0), "finite positive spacing, found -1.0000000000000001e-09"),
        ((4, 4), (1.0, float("inf")), "finite positive spacing, found inf"),
        ((4, 0, 4), (1.0, 1.0, 1.0), r"sizes in \[1, 2147483644\], found 0 on axis 1"),
        ((1, 2**31, 1), (1.0, 1.0, 1.0), "found 2147483648 on axis 1"),
        ((2**30, 2**30, 2**20), (1.0, 1.0, 1.0), "expected at most 281474976710656 voxels"),
        ((4, 4, 4, 4), (1.0,) * 4, "2D or 3D shape, found 4"),
        ((4, 4, 4), (1.0, 1.0), "3 spacing values, found 2"),
    ],
)
def test_cpp_validates_problems(shape, spacing, match):
    # The C++ engine's own checks (no Python validation in between), for both engines' entry.
    ext = _engine.extension()
    with pytest.raises(ValueError, match=match):
        ext.validate_problem(list(shape), list(spacing))
    with pytest.raises(ValueError, match=match):
        ext.surface_distances_cuda(0, 0, list(shape), list(spacing))


@needs_ext
def test_cpp_cpu_entry_validates_arrays():
    import numpy as np

    ext = _engine.extension()
    a = np.zeros((3, 3, 3), np.uint8)
    with pytest.raises(ValueError, match="finite positive spacing"):
        ext.surface_distances_cpu(a, a, [1.0, float("nan"), 1.0])
    with pytest.raises(ValueError, match="same shape"):
        ext.surface_distances_cpu(a, a[:2], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="sizes in"):
        ext.surface_distances_cpu(a[:0], a[:0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="boundary"):
        ext.surface_distances_cpu(a, a, [1.0, 1.0, 1.0], "mesh")


@needs_ext
def test_cuda_entry_refuses_non_device_pointers():
    import numpy as np

    ext = _engine.extension()
    host = np.zeros((4, 4, 4), np.uint8)
    if not _engine.CUDA_BUILT:
        with pytest.raises(RuntimeError, match="built without CUDA"):
            ext.surface_distances_cuda(host.ctypes.data, host.ctypes.data, [4, 4, 4], [1.0] * 3)
        return
    with pytest.raises(ValueError, match="expected a device pointer for pred, found null"):
        ext.surface_distances_cuda(0, host.ctypes.data, [4, 4, 4], [1.0] * 3)
    # host memory: "found host memory" with a GPU, "CUDA cannot describe" without a driver/GPU
    with pytest.raises(ValueError, match=r"expected (a )?device (pointer|memory) for pred"):
        ext.surface_distances_cuda(host.ctypes.data, host.ctypes.data, [4, 4, 4], [1.0] * 3)


@needs_ext
@pytest.mark.parametrize(("threads", "throwing"), [(1, 0), (4, 0), (4, 3), (8, 5)])
def test_worker_exception_reaches_the_caller(threads, throwing):
    # Before: an exception in a worker std::thread ended the process with std::terminate.
    with pytest.raises(RuntimeError, match=f"worker {throwing} failed"):
        _engine.extension()._run_worker_pool_for_test(threads, throwing)
    _engine.extension()._run_worker_pool_for_test(threads, -1)  # no worker throws: no error


@needs_ext
def test_cuda_memory_plan_is_bounded():
    ext = _engine.extension()
    grid = [1001, 513, 513]  # a 1000x512x512 volume with the corner grid's extra points
    n = grid[0] * grid[1] * grid[2]
    need = ext.cuda_grid_bytes(grid)
    # 2 code bytes + 2 float64 transform buffers per point, plus <= 256 MiB of transform scratch
    # (was about 52 bytes per voxel: 14 GB)
    assert 18 * n < need <= 18 * n + (256 << 20)
    # 3x4x5: the y pass (15 lines of 4: 15*4 ints, 15*5 doubles) is the larger scratch
    assert ext.cuda_grid_bytes([3, 4, 5]) == 18 * 60 + 15 * 4 * 4 + 15 * 5 * 8
    # a long thin grid: scratch only for the lines that exist (the x pass has 2 lines of 100000,
    # not a block of 256; the y pass's 100000 lines of 2 are the larger)
    assert ext.cuda_grid_bytes([1, 2, 100_000]) == 18 * 200_000 + 100_000 * (2 * 4 + 3 * 8)
    assert ext.cuda_point_bytes(10, 4) == 10 * 8 + 2 * 14 * 8


@pytest.mark.cuda
@pytest.mark.skipif(not _engine.CUDA_BUILT, reason="needs the CUDA build")
def test_cuda_refuses_a_plan_beyond_free_memory():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from rdcl.metrics import surface_distances

    free, _ = torch.cuda.mem_get_info()
    # masks of free/12 voxels each (1/6 of the free memory together) whose plan needs 18 bytes
    # per voxel (1.5x the free memory): refused with the need named, nothing allocated
    n = free // 12
    side = int((n // 64) ** 0.5)
    shape = (64, side, side)
    pred = torch.zeros(shape, dtype=torch.uint8, device="cuda")
    gt = torch.zeros_like(pred)
    pred[0, 0, 0] = 1
    gt[-1, -1, -1] = 1  # the bounding box spans the whole volume
    with pytest.raises(RuntimeError, match=r"needs \d+ bytes .* of GPU memory for a .* grid"):
        surface_distances(pred, gt, 1.0)
    del pred, gt
    torch.cuda.empty_cache()
