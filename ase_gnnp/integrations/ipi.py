"""i-PI: serve any ASE calculator as a socket client, launch i-PI, read its output.

i-PI (``pip install 'ase_gnnp[ipi]'``) runs the (path-integral) dynamics and asks its
clients for energies, forces and virials of one bead at a time over a UNIX or TCP socket;
ASE's :class:`~ase.calculators.socketio.SocketClient` speaks the protocol and converts
i-PI's atomic units to eV and Å. Several clients may connect to the same address: i-PI
hands each a different bead, so the beads of one step are computed in parallel.

Examples
--------
Serve the shipped model to an i-PI that listens on ``/tmp/ipi_si``::

    ase-gnnp ipi --model sige-small --structure init.xyz --unix si
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.io import write

__all__ = [
    "IPIServer",
    "read_properties",
    "serve",
    "unix_socket_path",
    "write_pimd_input",
]


def unix_socket_path(name: str) -> Path:
    """Where i-PI puts the UNIX socket of address ``name`` (``/tmp/ipi_<name>``)."""
    if not name or "/" in name:
        raise ValueError(f"a UNIX socket name must be non-empty and without '/', got {name!r}")
    return Path("/tmp") / f"ipi_{name}"


def _check_address(unix: str | None, host: str | None, port: int | None) -> None:
    if (unix is None) == (port is None):
        raise ValueError("give either a UNIX socket name (unix) or a TCP port (with host)")
    if port is not None and not 0 < int(port) < 65536:
        raise ValueError(f"port must be in 1..65535, got {port!r}")


def _connect(unix: str | None, host: str, port: int | None, timeout: float, wait: float):
    """A connected ``SocketClient``, retrying until ``wait`` seconds have passed."""
    from ase.calculators.socketio import SocketClient

    where = f"UNIX socket {unix_socket_path(unix)}" if unix else f"{host}:{port}"
    deadline = time.monotonic() + wait
    while True:
        try:
            return SocketClient(host=host, port=port, unixsocket=unix, timeout=timeout)
        except (FileNotFoundError, ConnectionRefusedError) as err:
            if time.monotonic() > deadline:
                raise ConnectionError(
                    f"no i-PI server at {where} after {wait:g} s (start i-pi first, and "
                    "check the address in its <ffsocket>)"
                ) from err
            time.sleep(0.2)


def serve(
    calc: Calculator,
    atoms: Atoms,
    *,
    unix: str | None = None,
    host: str = "localhost",
    port: int | None = None,
    timeout: float | None = 600.0,
    wait: float = 60.0,
    log=None,
) -> int:
    """Serve ``calc`` to i-PI until it sends EXIT; return the number of evaluations.

    Parameters
    ----------
    calc
        Any ASE calculator (the model's, or a teacher).
    atoms
        Species and order of i-PI's system (its initial structure); i-PI sends positions
        and cell at every call. Stress (virial) is computed for periodic cells.
    unix, host, port
        The address of i-PI's ``<ffsocket>``: a UNIX socket name (``mode='unix'``) or a
        TCP host and port (``mode='inet'``).
    timeout
        Seconds to wait for any message from i-PI before giving up (None: forever).
    wait
        Seconds to keep trying to connect while i-PI starts.
    log
        File object for the protocol log.

    Raises
    ------
    ConnectionError
        No server within ``wait``, or the server closed the connection without EXIT
        (killed or crashed).
    TimeoutError
        i-PI sent nothing for ``timeout`` seconds.
    """
    from ase.calculators.socketio import SocketClosed

    _check_address(unix, host, port)
    if not isinstance(atoms, Atoms):
        raise TypeError(f"atoms must be ase.Atoms, got {type(atoms).__name__}")
    atoms = atoms.copy()
    atoms.calc = calc
    client = _connect(unix, host, port, timeout, wait)
    protocol = client.protocol
    receive = protocol.recvmsg
    state = {"exit": False, "dropped": False}

    def recvmsg():  # ASE treats a closed socket as EXIT; tell them apart
        try:
            msg = receive()
        except SocketClosed:
            state["dropped"] = True
            raise
        except TimeoutError as err:  # socket.timeout is TimeoutError since Python 3.10
            silent = f"i-PI sent nothing for {timeout:g} s; is it still running?"
            raise TimeoutError(silent) from err
        state["exit"] = msg == "EXIT"
        return msg

    protocol.recvmsg = recvmsg
    count = 0
    dropped = (
        "i-PI closed the connection without EXIT after {} evaluations (was it killed, or "
        "did it crash? see its output){}"
    )
    try:
        for _ in client.irun(atoms, use_stress=bool(np.all(atoms.pbc))):
            count += 1
    except TimeoutError:
        raise
    except OSError as err:  # reset by peer, broken pipe: the server went away mid-call
        raise ConnectionError(dropped.format(count, f": {err}")) from err
    if state["dropped"] or not state["exit"]:
        raise ConnectionError(dropped.format(count, ""))
    return count


# ----------------------------------------------------------------------------- i-PI runs
def _address_in_use(unix: str | None, host: str, port: int | None) -> str | None:
    if unix is not None:
        path = unix_socket_path(unix)
        if path.exists():
            return (
                f"{path} exists: another i-PI uses the name {unix!r}, or a killed run "
                "left it behind (delete it or choose another name)"
            )
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, int(port)))
        except OSError:
            return f"{host}:{port} is in use; choose another port"
    return None


def write_pimd_input(
    path: str | Path,
    atoms: Atoms,
    *,
    nbeads: int,
    temperature: float,
    steps: int,
    unix: str | None = None,
    host: str = "localhost",
    port: int | None = None,
    timestep: float = 1.0,
    tau: float = 100.0,
    seed: int = 31415,
    stride: int = 1,
    prefix: str = "sim",
    properties: tuple[str, ...] = (
        "step",
        "time{picosecond}",
        "conserved{electronvolt}",
        "temperature{kelvin}",
        "kinetic_cv{electronvolt}",
        "kinetic_td{electronvolt}",
        "potential{electronvolt}",
        "r_gyration{angstrom}",
    ),  # fmt: skip
) -> Path:
    """Write an i-PI input for PIMD in the NVT ensemble with the PILE-L thermostat.

    The structure goes next to it as ``<prefix>_init.extxyz`` (read by i-PI through
    ASE); velocities are drawn at ``temperature``. ``timestep`` and ``tau`` (the
    centroid thermostat's time constant) are in fs. Properties are written every
    ``stride`` steps to ``<prefix>.out`` in eV, Å, K and ps.
    """
    _check_address(unix, host, port)
    if not isinstance(nbeads, int) or nbeads < 1:
        raise ValueError(f"nbeads must be a positive integer, got {nbeads!r}")
    if not temperature > 0 or not steps >= 0:
        raise ValueError(f"need temperature > 0 K and steps >= 0, got {temperature}, {steps}")
    path = Path(path)
    init = path.parent / f"{prefix}_init.extxyz"
    write(init, atoms, format="extxyz")
    address = (
        f"<ffsocket name='gnnp' mode='unix'><address>{unix}</address>"
        if unix is not None
        else f"<ffsocket name='gnnp' mode='inet'><address>{host}</address><port>{port}</port>"
    )
    path.write_text(f"""<simulation verbosity='low' safe_stride='{max(steps, 1)}'>
  <output prefix='{prefix}'>
    <properties stride='{stride}' filename='out'> [ {", ".join(properties)} ] </properties>
  </output>
  <total_steps>{steps}</total_steps>
  <prng><seed>{seed}</seed></prng>
  {address}<latency>1e-4</latency><timeout>600</timeout></ffsocket>
  <system>
    <initialize nbeads='{nbeads}'>
      <file mode='ase'> {init.name} </file>
      <velocities mode='thermal' units='kelvin'> {temperature} </velocities>
    </initialize>
    <forces><force forcefield='gnnp'/></forces>
    <ensemble><temperature units='kelvin'> {temperature} </temperature></ensemble>
    <motion mode='dynamics'>
      <dynamics mode='nvt'>
        <timestep units='femtosecond'> {timestep} </timestep>
        <thermostat mode='pile_l'><tau units='femtosecond'> {tau} </tau></thermostat>
      </dynamics>
    </motion>
  </system>
</simulation>
""")
    return path


class IPIServer:
    """Run ``i-pi input.xml`` in its folder until it ends (a context manager).

    Parameters
    ----------
    input_xml
        The i-PI input; i-PI runs in its folder and writes its outputs there.
    unix, host, port
        The address in the input (checked to be free before i-PI starts).
    wait
        Seconds to wait for i-PI to open its socket.
    """

    def __init__(
        self,
        input_xml: str | Path,
        *,
        unix: str | None = None,
        host: str = "localhost",
        port: int | None = None,
        wait: float = 60.0,
    ) -> None:
        _check_address(unix, host, port)
        self.input_xml = Path(input_xml).resolve()
        if not self.input_xml.is_file():
            raise FileNotFoundError(f"no i-PI input at {self.input_xml}")
        self.unix, self.host, self.port, self.wait = unix, host, port, wait
        self.process: subprocess.Popen | None = None
        self.log_path = self.input_xml.with_suffix(".log")

    def _ready(self) -> bool:
        if self.unix is not None:
            return unix_socket_path(self.unix).exists()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            return probe.connect_ex((self.host, int(self.port))) == 0

    def start(self) -> IPIServer:
        executable = shutil.which("i-pi")
        if executable is None:
            raise ImportError(
                "the i-pi program is needed; install it with pip install 'ase_gnnp[ipi]'"
            )
        problem = _address_in_use(self.unix, self.host, self.port)
        if problem:
            raise ValueError(f"i-PI address in use: {problem}")
        exit_file = self.input_xml.parent / "EXIT"
        exit_file.unlink(missing_ok=True)  # a soft-exit file of an earlier run stops i-PI
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [executable, self.input_xml.name], cwd=self.input_xml.parent,
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + self.wait
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text()[-2000:]
                raise RuntimeError(f"i-PI did not open its socket; its output ends with:\n{tail}")
            time.sleep(0.1)
        return self

    def join(self, timeout: float | None = None, clients: Sequence[subprocess.Popen] = ()) -> int:
        """Wait for i-PI to finish; its exit code.

        ``clients`` are client processes (started with ``stderr=PIPE``) to watch meanwhile:
        if one fails, i-PI would wait for it forever, so it is stopped and a
        ``RuntimeError`` carries the end of the client's error output.
        """
        if self.process is None:
            raise RuntimeError("i-PI was not started")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.process.poll() is None:
            failed = [c for c in clients if c.poll() not in (None, 0)]
            if failed:
                self.stop()
                raise RuntimeError(f"an i-PI client failed:\n{failed[0].communicate()[1][-2000:]}")
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.process.args, timeout)
            time.sleep(0.1)
        self._log.close()
        return self.process.returncode

    def stop(self, grace: float = 10.0) -> None:
        """Ask i-PI to stop (EXIT file), then terminate it if it does not."""
        if self.process is None or self.process.poll() is not None:
            if hasattr(self, "_log"):
                self._log.close()
            return
        (self.input_xml.parent / "EXIT").touch()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        if self.unix is not None:
            unix_socket_path(self.unix).unlink(missing_ok=True)

    def __enter__(self) -> IPIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_COLUMN = re.compile(r"#\s*(?:column|cols\.)\s+(\d+)(?:-(\d+))?\s*-->\s*(\S+)")


def read_properties(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of an i-PI properties file by name (units in braces are dropped)."""
    path = Path(path)
    names: list[tuple[str, int, int]] = []
    rows = []
    for line in path.read_text().splitlines():
        match = _COLUMN.match(line)
        if match:
            first = int(match.group(1))
            last = int(match.group(2) or first)
            names.append((match.group(3).split("{")[0], first - 1, last))
        elif line.strip() and not line.startswith("#"):
            rows.append([float(x) for x in line.split()])
    if not names:
        raise ValueError(f"{path} has no i-PI column header")
    data = np.array(rows, dtype=float).reshape(len(rows), -1)
    return {name: data[:, a:b].squeeze(-1) if b - a == 1 else data[:, a:b]
            for name, a, b in names}  # fmt: skip
