"""Shared test setup: deterministic seeds and small-model helpers."""

from __future__ import annotations

import pytest
import torch

from flowaug.flows.layers import CouplingNet, GaussianPrior

# the models under test are tiny: one thread is faster than two fighting over small kernels,
# and keeps runs reproducible on a shared machine
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Every test starts seeded and on one thread, whatever the test before it changed."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield


def perturb_zero_init(module: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    """Give zero-initialized output layers small random weights.

    Freshly built flows start as the identity (coupling outputs and priors are zero), which would
    make invertibility and log-det checks pass trivially; tests call this first.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, CouplingNet):
                m.out.weight.normal_(0, scale)
                m.out.bias.normal_(0, scale)
            if isinstance(m, GaussianPrior):
                m.base.normal_(0, scale)
                if m.cond is not None:
                    m.cond.weight.normal_(0, scale)
    return module


@pytest.fixture(scope="session")
def digits_glow():
    """A tiny Glow trained briefly (Adam, 100 steps of 64) on scikit-learn's digits, in eval mode.

    Returns ``(model, x, y)``: ``x`` the digits as int64 levels ``[1797, 1, 8, 8]`` in 0..16,
    ``y`` their classes. Shared by the session: tests must not change the weights.
    """
    from sklearn.datasets import load_digits

    from flowaug import Glow

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.long).unsqueeze(1)
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = Glow((1, 8, 8), 10, depth=2, hidden=16, levels=17)
        model.initialize(model.prepare_batch(x[:512], g), y[:512])
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(100):
            idx = torch.randint(0, len(x), (64,), generator=g)
            loss = -model.log_prob(model.prepare_batch(x[idx], g), y[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.set_num_threads(threads)
    return model.eval(), x, y


@pytest.fixture(scope="module")
def model():
    """An untrained, ActNorm-initialized tiny Glow ``(1, 8, 8)``, 10 classes, 17 levels, with
    non-trivial couplings, in eval mode. Files that need another model define their own."""
    from flowaug import Glow

    torch.manual_seed(0)
    m = perturb_zero_init(Glow((1, 8, 8), 10, depth=2, hidden=16, levels=17), 0.2)
    m.initialize(torch.rand(64, 1, 8, 8), torch.arange(64) % 10)
    return m.eval()


@pytest.fixture(scope="module")
def quiet_datasets():
    """No datasets progress bars for a module (``pytestmark = usefixtures(...)``)."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    yield
    if was_enabled:
        datasets.enable_progress_bars()


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_two_cpu(*args: str, cpu_env: bool = True, **run_kwargs):
    """Run ``torchrun --nproc_per_node 2 ARGS`` on the loopback with one thread per rank.

    ``cpu_env`` sets ``ACCELERATE_USE_CPU=1`` (without it a CPU-only rank under Accelerate
    silently runs as one process). Raises ``CalledProcessError`` when a rank fails.
    """
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    if cpu_env:
        env["ACCELERATE_USE_CPU"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]
    return subprocess.run(cmd, env=env, check=True, timeout=600, **run_kwargs)
