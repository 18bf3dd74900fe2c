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

Or launch i-PI and two such clients from Python, with the wall time of each step::

    xml = write_pimd_input("run/input.xml", atoms, nbeads=8, temperature=100.0, steps=20,
                           unix="si", floatformat="%.16e")
    run = run_with_clients(xml, clients=2, unix="si")
    run.seconds_per_step(warmup=5), read_restart_positions("run/RESTART")
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.io import write

__all__ = [
    "ClientsRun",
    "IPIServer",
    "read_properties",
    "read_restart_positions",
    "run_with_clients",
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
    floatformat: str | None = None,
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
    ``stride`` steps to ``<prefix>.out`` in eV, Å, K and ps. ``floatformat`` is i-PI's
    format of the numbers in that file and in its final checkpoint ``RESTART`` (default
    ``"%16.8e"``, 9 digits); ``"%.16e"`` writes float64 exactly, for bit-for-bit
    comparisons of runs (:func:`read_restart_positions`).
    """
    _check_address(unix, host, port)
    if not isinstance(nbeads, int) or nbeads < 1:
        raise ValueError(f"nbeads must be a positive integer, got {nbeads!r}")
    if not temperature > 0 or not steps >= 0:
        raise ValueError(f"need temperature > 0 K and steps >= 0, got {temperature}, {steps}")
    fmt = ""
    if floatformat is not None:
        try:
            floatformat % 1.0
        except (TypeError, ValueError) as err:
            raise ValueError(f"floatformat must format one float, got {floatformat!r}") from err
        if "'" in floatformat:
            raise ValueError(f"floatformat must not contain quotes, got {floatformat!r}")
        fmt = f" floatformat='{floatformat}'"
    path = Path(path)
    init = path.parent / f"{prefix}_init.extxyz"
    write(init, atoms, format="extxyz")
    address = (
        f"<ffsocket name='gnnp' mode='unix'><address>{unix}</address>"
        if unix is not None
        else f"<ffsocket name='gnnp' mode='inet'><address>{host}</address><port>{port}</port>"
    )
    path.write_text(f"""<simulation verbosity='low' safe_stride='{max(steps, 1)}'{fmt}>
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


def read_restart_positions(path: str | Path) -> np.ndarray:
    """Bead positions ``(nbeads, natoms, 3)`` in Å from an i-PI checkpoint (``RESTART``).

    i-PI writes ``RESTART`` in its folder when a run ends: the state after its last step.
    Its numbers have i-PI's ``floatformat`` precision (see :func:`write_pimd_input`;
    ``"%.16e"`` for exact float64).
    """
    from ase.units import Bohr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no i-PI checkpoint at {path}")
    beads = ET.parse(path).getroot().find(".//beads")
    q = None if beads is None else beads.find("q")
    if q is None or q.text is None:
        raise ValueError(f"{path} holds no bead positions (<beads><q>)")
    values = np.array([float(x) for x in q.text.replace("[", " ").replace("]", " ")
                       .replace(",", " ").split()])  # fmt: skip
    nbeads, natoms = int(beads.get("nbeads")), int(beads.get("natoms"))
    if values.size != nbeads * natoms * 3:
        raise ValueError(f"{path}: {values.size} coordinates for {nbeads} × {natoms} atoms")
    return values.reshape(nbeads, natoms, 3) * Bohr  # i-PI's atomic units to Å


@dataclass
class ClientsRun:
    """One i-PI run served by several clients (see :func:`run_with_clients`).

    Times are wall-clock seconds counted from i-PI's launch.
    """

    clients: int  #: client processes
    threads: int  #: torch threads of each client
    seconds: float  #: i-PI's launch to its exit, s
    steps: np.ndarray  #: step of each properties line
    times: np.ndarray  #: when each properties line appeared, s (polled)
    evaluations: list[int]  #: force evaluations each client served
    cpu_seconds: dict[str, float] = field(default_factory=dict)  #: user + system, s
    #: CPU time (s) of i-PI and of all clients together when each properties line appeared
    #: (Linux; NaN elsewhere): shape (lines, 2)
    cpu_at_lines: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    output: str = ""  #: i-PI's own output (its log)
    folder: Path = Path()  #: i-PI's folder (outputs, RESTART, logs of the clients)

    def seconds_per_step(self, warmup: int = 0) -> float:
        """Mean wall time per MD step after step ``warmup`` (s): the time between the
        properties lines of step ``warmup`` and of the last step, over the steps between.
        Connecting the clients and the first force call fall before step 0's line.

        Lines are timed when they are read (every ``poll`` seconds, and only once i-PI
        has flushed them), so steps much shorter than that read as 0: time systems whose
        steps take well over the poll interval (tutorials/ipi_clients.py: ~0.1 s)."""
        later = np.flatnonzero(self.steps >= warmup)
        if later.size < 2 or self.steps[later[-1]] == self.steps[later[0]]:
            raise ValueError(
                f"need properties lines of two steps at or after step {warmup}, "
                f"have steps {self.steps.tolist()}"
            )
        a, b = later[0], later[-1]
        return float((self.times[b] - self.times[a]) / (self.steps[b] - self.steps[a]))

    def cpu_per_step(self, warmup: int = 0) -> tuple[float, float]:
        """CPU time per MD step (s) of i-PI and of all clients together, over the window of
        :meth:`seconds_per_step`. Other jobs on the cores do not add to it as they add to
        wall time, but threads that spin while they wait for a core do."""
        self.seconds_per_step(warmup)  # checks the window
        later = np.flatnonzero(self.steps >= warmup)
        a, b = later[0], later[-1]
        ipi, clients = (self.cpu_at_lines[b] - self.cpu_at_lines[a]) / (
            self.steps[b] - self.steps[a]
        )
        return float(ipi), float(clients)


def _input_files(input_xml: Path) -> tuple[Path, Path]:
    """The initial structure and the properties file named by an i-PI input."""
    root = ET.parse(input_xml).getroot()
    init = root.find(".//initialize/file")
    output = root.find("output")
    props = None if output is None else output.find("properties")
    if init is None or not (init.text or "").strip() or props is None:
        raise ValueError(f"{input_xml} needs an <initialize><file> and an <output><properties>")
    prefix = output.get("prefix", "i-pi")
    return (input_xml.parent / init.text.strip(),
            input_xml.parent / f"{prefix}.{props.get('filename', 'out')}")  # fmt: skip


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process (Linux /proc), s; None elsewhere/ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else ""


def run_with_clients(
    input_xml: str | Path,
    clients: int,
    *,
    source: Sequence[str] = ("--model", "sige-small"),
    threads: int = 1,
    unix: str | None = None,
    host: str = "localhost",
    port: int | None = None,
    timeout: float = 1800.0,
    poll: float = 0.05,
) -> ClientsRun:
    """Run i-PI on ``input_xml`` with ``clients`` ``ase-gnnp ipi`` clients sharing its beads.

    The clients start first, each with ``threads`` torch (and OpenMP) threads, and load
    their model; then i-PI starts, so that all of them connect before its first step.
    While i-PI runs, the arrival of each line of its properties file is timed (every
    ``poll`` s) for :meth:`ClientsRun.seconds_per_step`. The properties file and
    ``RESTART`` of an earlier run in the same folder are deleted first; each client's
    output goes to ``client_<k>.log`` there. Whatever happens, i-PI and the clients are
    stopped, and the socket and the ``EXIT`` file removed, before this returns.

    Parameters
    ----------
    input_xml
        i-PI input (e.g. from :func:`write_pimd_input`) whose socket address is given
        by ``unix`` or ``host`` and ``port``.
    clients
        Number of client processes (≥ 1). More clients than beads leave some idle; more
        clients × threads than free cores slows every one of them down.
    source
        Arguments choosing what ``ase-gnnp ipi`` serves: ``("--model", NAME_OR_PATH)`` or
        ``("--teacher", "tersoff")``, with any other options of that command.
    threads
        Torch threads per client (≥ 1).
    timeout
        Seconds the whole run may take (clients loading, then i-PI).
    poll
        Seconds between checks of i-PI, the clients and the properties file.

    Raises
    ------
    ValueError
        Bad numbers or address (also: an address in use).
    RuntimeError
        A client or i-PI failed; the message ends with its output.
    TimeoutError
        The run took longer than ``timeout``.
    """
    if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
        raise ValueError(f"clients must be a positive integer, got {clients!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if not timeout > 0 or not poll > 0:
        raise ValueError(f"timeout and poll must be positive, got {timeout!r}, {poll!r}")
    _check_address(unix, host, port)
    server = IPIServer(input_xml, unix=unix, host=host, port=port)  # checks the file
    problem = _address_in_use(unix, host, port)  # else the clients join another i-PI
    if problem:
        raise ValueError(f"i-PI address in use: {problem}")
    folder = server.input_xml.parent
    structure, props_path = _input_files(server.input_xml)
    for stale in (props_path, folder / "RESTART"):
        stale.unlink(missing_ok=True)
    address = ["--unix", unix] if unix is not None else ["--host", host, "--port", str(port)]
    cmd = [sys.executable, "-m", "ase_gnnp.cli", "ipi", *source, "--structure", str(structure),
           *address, "--threads", str(threads), "--wait", str(timeout),
           "--timeout", str(timeout)]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    logs = [folder / f"client_{k}.log" for k in range(clients)]
    procs: list[subprocess.Popen] = []
    cpu: dict[str, float] = {}
    deadline = time.monotonic() + timeout

    def check_clients() -> None:
        for k, proc in enumerate(procs):
            if proc.poll() not in (None, 0):
                raise RuntimeError(f"i-PI client {k} failed:\n{_tail(logs[k])}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the i-PI run took longer than {timeout:g} s")

    def sample_cpu() -> None:
        named = {"i-pi": server.process} | {f"client_{k}": p for k, p in enumerate(procs)}
        for name, proc in named.items():
            value = None if proc is None else _cpu_seconds(proc.pid)
            if value is not None:
                cpu[name] = value

    try:
        for log in logs:
            with open(log, "w") as handle:
                procs.append(subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT,
                                              env=env))  # fmt: skip
        while not all("serving " in _tail(log, 100_000) for log in logs):  # models loaded
            check_clients()
            time.sleep(poll)
        start = time.monotonic()
        server.start()
        times: list[float] = []
        cpu_at_lines: list[list[float]] = []
        size = -1
        while True:
            running = server.process.poll() is None
            now = time.monotonic() - start
            if props_path.is_file() and props_path.stat().st_size != size:
                size = props_path.stat().st_size
                # a data line counts once its newline is written
                lines = props_path.read_text().splitlines(keepends=True)
                done = sum(ln.endswith("\n") and ln.strip() != "" and ln[0] != "#" for ln in lines)
                if done > len(times) and running:
                    sample_cpu()
                clients_cpu = sum(cpu.get(f"client_{k}", np.nan) for k in range(clients))
                cpu_at_lines.extend([[cpu.get("i-pi", np.nan), clients_cpu]] * (done - len(times)))
                times.extend([now] * (done - len(times)))
            if not running:
                break
            sample_cpu()
            check_clients()
            time.sleep(poll)
        seconds = time.monotonic() - start
        server.join()
        output = server.log_path.read_text(errors="replace")
        if server.process.returncode != 0:
            raise RuntimeError(f"i-PI failed (exit code {server.process.returncode}):\n"
                               f"{output[-2000:]}")  # fmt: skip
        evaluations = []
        for k, proc in enumerate(procs):
            proc.wait(max(deadline - time.monotonic(), 1.0))
            check_clients()
            found = re.search(r"i-PI sent EXIT: (\d+) evaluations", _tail(logs[k]))
            if found is None:
                raise RuntimeError(f"i-PI client {k} did not report EXIT:\n{_tail(logs[k])}")
            evaluations.append(int(found.group(1)))
    finally:
        server.stop()
        for proc in procs:  # only the clients started here
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        (folder / "EXIT").unlink(missing_ok=True)
        if unix is not None and server.process is not None:
            unix_socket_path(unix).unlink(missing_ok=True)
    steps = read_properties(props_path)["step"] if times else np.zeros(0)
    steps = np.atleast_1d(np.asarray(steps, dtype=int))
    if len(steps) != len(times):
        raise RuntimeError(f"{props_path}: {len(steps)} steps read, {len(times)} lines timed")
    return ClientsRun(clients=clients, threads=threads, seconds=seconds, steps=steps,
                      times=np.asarray(times), evaluations=evaluations, cpu_seconds=cpu,
                      cpu_at_lines=np.asarray(cpu_at_lines, dtype=float).reshape(-1, 2),
                      output=output, folder=folder)  # fmt: skip
