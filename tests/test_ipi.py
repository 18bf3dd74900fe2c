"""i-PI: real i-PI runs served by `ase-gnnp ipi` clients; EXIT, dropped servers, bad input."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
from ase.build import bulk

from ase_gnnp.cli import main
from ase_gnnp.integrations.ipi import (
    IPIServer,
    read_properties,
    read_restart_positions,
    run_with_clients,
    serve,
    unix_socket_path,
    write_pimd_input,
)
from ase_gnnp.teachers import tersoff_sige

pytestmark = [
    pytest.mark.skipif(shutil.which("i-pi") is None, reason="i-pi is not installed"),
    pytest.mark.filterwarnings("ignore:'where' used without 'out':UserWarning"),
]


def _name() -> str:
    """A unique socket name, so that tests (and test runs) can run in parallel."""
    return f"gnnp_test_{uuid.uuid4().hex[:10]}"


def _client(structure, name: str, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "ase_gnnp.cli", "ipi", "--structure", str(structure),
           "--unix", name, "--wait", "60", *extra]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip


def _pimd(tmp_path, name: str, clients: int, steps: int = 4, nbeads: int = 4, *extra: str):
    xml = write_pimd_input(tmp_path / "input.xml", bulk("Si", cubic=True), nbeads=nbeads,
                           temperature=100.0, steps=steps, unix=name, seed=7)  # fmt: skip
    # clients first: each loads its model, says so on stderr, then polls for the socket
    # every 0.2 s. i-PI waits 0.5 s for more clients after each one it accepts, so all of
    # them join before the first step instead of racing a short run.
    procs = [_client(tmp_path / "sim_init.extxyz", name, *extra) for _ in range(clients)]
    for proc in procs:
        first = proc.stderr.readline()
        assert first.startswith("serving"), first + proc.communicate()[1][-2000:]
    with IPIServer(xml, unix=name) as server:
        deadline = time.monotonic() + 300
        while server.process.poll() is None and time.monotonic() < deadline:
            failed = [p for p in procs if p.poll() not in (None, 0)]
            assert not failed, failed[0].communicate()[1][-2000:]
            time.sleep(0.2)
        assert server.join(1) == 0, server.log_path.read_text()[-2000:]
        outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-2000:]
        assert "i-PI sent EXIT" in out
    return read_properties(tmp_path / "sim.out"), outputs


@pytest.mark.slow
def test_pimd_with_two_clients_matches_one_client(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one, _ = _pimd(tmp_path / "one", _name(), 1)
    two, outputs = _pimd(tmp_path / "two", _name(), 2)
    np.testing.assert_array_equal(one["step"], np.arange(5))
    # the estimators are physical: positive kinetic energies, a bound crystal
    assert np.all(one["kinetic_cv"][1:] > 0) and np.all(one["potential"] < -30.0)
    # beads shared by two clients: the same trajectory to round-off
    for key in ("potential", "kinetic_cv", "r_gyration", "conserved"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-10, atol=1e-12)
    served = [int(out.split("EXIT: ")[1].split()[0]) for out, _ in outputs]
    assert sum(served) == 5 * 4  # 5 force calls (steps 0-4) × 4 beads, split between them
    assert min(served) > 0


@pytest.mark.slow
def test_teacher_and_tcp_port(tmp_path):
    with socket.socket() as probe:  # a free port
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    xml = write_pimd_input(tmp_path / "input.xml", bulk("Si", cubic=True), nbeads=2,
                           temperature=100.0, steps=2, port=port)  # fmt: skip
    with IPIServer(xml, port=port) as server:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "ase_gnnp.cli", "ipi", "--teacher", "tersoff",
               "--structure", str(tmp_path / "sim_init.extxyz"), "--port", str(port)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert server.join(120) == 0
    assert done.returncode == 0, done.stderr[-2000:]
    props = read_properties(tmp_path / "sim.out")
    atoms = bulk("Si", cubic=True)
    atoms.calc = tersoff_sige()
    # step 0: all beads at the initial structure, so the potential is the teacher's
    assert props["potential"][0] == pytest.approx(atoms.get_potential_energy(), abs=1e-5)


@pytest.mark.slow
def test_dropped_server_is_a_clear_error_not_a_hang(tmp_path):
    name = _name()
    xml = write_pimd_input(tmp_path / "input.xml", bulk("Si", cubic=True), nbeads=2,
                           temperature=100.0, steps=100000, unix=name)  # fmt: skip
    server = IPIServer(xml, unix=name).start()
    client = _client(tmp_path / "sim_init.extxyz", name)
    try:
        for _ in range(600):  # until the client is being served
            if (tmp_path / "sim.out").is_file() and (tmp_path / "sim.out").stat().st_size > 400:
                break
            time.sleep(0.1)
        server.process.send_signal(signal.SIGKILL)
        out, err = client.communicate(timeout=60)  # returns: no hang
    finally:
        server.stop()
        unix_socket_path(name).unlink(missing_ok=True)
    assert client.returncode == 2
    assert "closed the connection without EXIT" in err


def test_no_server_and_address_in_use(tmp_path):
    name = _name()
    with pytest.raises(ConnectionError, match="no i-PI server"):
        serve(tersoff_sige(), bulk("Si"), unix=name, wait=0.5)
    path = unix_socket_path(name)
    with socket.socket(socket.AF_UNIX) as busy:
        busy.bind(str(path))
        busy.listen()
        xml = write_pimd_input(tmp_path / "input.xml", bulk("Si"), nbeads=2,
                               temperature=100.0, steps=1, unix=name)  # fmt: skip
        try:
            with pytest.raises(ValueError, match="address in use"):
                IPIServer(xml, unix=name).start()
        finally:
            path.unlink()
    with socket.socket() as busy:
        busy.bind(("localhost", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=f"localhost:{port} is in use"):
            IPIServer(xml, port=port).start()


def test_bad_input(tmp_path):
    atoms = bulk("Si")
    with pytest.raises(ValueError, match="either a UNIX socket name"):
        write_pimd_input(tmp_path / "x.xml", atoms, nbeads=2, temperature=100, steps=1)
    with pytest.raises(ValueError, match="either a UNIX socket name"):
        serve(tersoff_sige(), atoms, unix="a", port=1234)
    with pytest.raises(ValueError, match="nbeads"):
        write_pimd_input(tmp_path / "x.xml", atoms, nbeads=0, temperature=100, steps=1, unix="a")
    with pytest.raises(ValueError, match="without '/'"):
        unix_socket_path("a/b")
    with pytest.raises(ValueError, match="port"):
        IPIServer(tmp_path / "x.xml", port=70000)
    with pytest.raises(FileNotFoundError, match="no i-PI input"):
        IPIServer(tmp_path / "missing.xml", unix="a")
    with pytest.raises(TypeError, match="ase.Atoms"):
        serve(tersoff_sige(), "Si", unix=_name(), wait=0.1)
    # the CLI turns a missing server into a message and exit code 2
    code = main(["ipi", "--teacher", "tersoff", "--structure", "Si", "--unix", _name(),
                 "--wait", "0.3"])  # fmt: skip
    assert code == 2


def test_read_properties_parses_multi_column_headers(tmp_path):
    path = tmp_path / "sim.out"
    path.write_text(
        "# column   1    --> step : The current step.\n"
        "#     cols.  2-4     --> atom_x{angstrom}(0) : position\n"
        "# column   5    --> potential{electronvolt} : The potential.\n"
        "0 1.0 2.0 3.0 -5.0\n1 1.5 2.5 3.5 -4.0\n"
    )
    props = read_properties(path)
    np.testing.assert_array_equal(props["step"], [0, 1])
    assert props["atom_x"].shape == (2, 3)
    np.testing.assert_array_equal(props["potential"], [-5.0, -4.0])
    (tmp_path / "empty.out").write_text("0 1\n")
    with pytest.raises(ValueError, match="no i-PI column header"):
        read_properties(tmp_path / "empty.out")


def test_join_stops_i_pi_when_a_client_fails(tmp_path):
    name = _name()
    xml = write_pimd_input(tmp_path / "input.xml", bulk("Si"), nbeads=2, temperature=100.0,
                           steps=100, unix=name)  # fmt: skip
    with IPIServer(xml, unix=name) as server:
        failing = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.exit('no such model')"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        with pytest.raises(RuntimeError, match="no such model"):
            server.join(timeout=60, clients=[failing])
        assert server.process.poll() is not None  # i-PI was stopped, not left waiting


@pytest.mark.slow
def test_run_with_clients_two_clients_give_the_positions_of_one(tmp_path):
    positions, props = {}, {}
    for n in (1, 2):
        folder = tmp_path / f"clients{n}"
        folder.mkdir()
        name = _name()
        xml = write_pimd_input(folder / "input.xml", bulk("Si", cubic=True), nbeads=2,
                               temperature=100.0, steps=3, unix=name, seed=7,
                               floatformat="%.16e")  # fmt: skip
        run = run_with_clients(xml, n, unix=name, timeout=300)
        np.testing.assert_array_equal(run.steps, np.arange(4))
        assert len(run.evaluations) == n and sum(run.evaluations) == 4 * 2  # 4 calls × 2 beads
        assert min(run.evaluations) > 0  # the beads were shared, not served by one client
        # 8-atom steps take milliseconds, below the line timing's resolution (lines flushed
        # together are read at once): the timing is checked for order, not for size
        assert run.seconds_per_step(1) >= 0 and np.all(np.diff(run.times) >= 0)
        assert run.seconds > run.times[-1] - run.times[0] >= 0
        if sys.platform.startswith("linux"):  # CPU times from /proc
            assert min(run.cpu_per_step(1)) >= 0 and run.cpu_at_lines.shape == (4, 2)
        assert "Exiting cleanly" in run.output
        assert not unix_socket_path(name).exists() and not (folder / "EXIT").exists()
        positions[n] = read_restart_positions(folder / "RESTART")
        props[n] = read_properties(folder / "sim.out")
    assert positions[1].shape == (2, 8, 3)
    start = bulk("Si", cubic=True).positions
    assert np.abs(positions[1] - start).max() > 1e-4  # the beads moved
    # the same trajectory, bit for bit (floatformat %.16e writes float64 exactly)
    np.testing.assert_array_equal(positions[2], positions[1])
    for key in ("potential", "kinetic_cv", "conserved"):
        np.testing.assert_array_equal(props[2][key], props[1][key])


def test_run_with_clients_bad_input(tmp_path):
    name = _name()
    xml = write_pimd_input(tmp_path / "input.xml", bulk("Si"), nbeads=2, temperature=100.0,
                           steps=1, unix=name)  # fmt: skip
    for clients in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="clients must be a positive integer"):
            run_with_clients(xml, clients, unix=name)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        run_with_clients(xml, 1, threads=0, unix=name)
    with pytest.raises(ValueError, match="either a UNIX socket name"):
        run_with_clients(xml, 1)
    with pytest.raises(FileNotFoundError, match="no i-PI input"):
        run_with_clients(tmp_path / "missing.xml", 1, unix=name)
    path = unix_socket_path(name)
    with socket.socket(socket.AF_UNIX) as busy:  # no client may join a stranger's i-PI
        busy.bind(str(path))
        try:
            with pytest.raises(ValueError, match="address in use"):
                run_with_clients(xml, 1, unix=name)
        finally:
            path.unlink()
    assert not list(tmp_path.glob("client_*.log"))  # nothing was started
    with pytest.raises(ValueError, match="floatformat"):
        write_pimd_input(tmp_path / "x.xml", bulk("Si"), nbeads=2, temperature=100.0, steps=1,
                         unix=name, floatformat="%d %d")  # fmt: skip
    with pytest.raises(FileNotFoundError, match="no i-PI checkpoint"):
        read_restart_positions(tmp_path / "RESTART")
