"""The E(3)-equivariant potential: energy model plus one-pass forces and stress."""

from __future__ import annotations

import contextlib
import re

import torch
from e3nn import o3
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch_geometric.data import Data

from ase_gnnp import keys as K
from ase_gnnp.config import ModelConfig
from ase_gnnp.elements import MAX_Z
from ase_gnnp.graph import batch_index, edge_vectors
from ase_gnnp.longrange import ChargeEquilibration, Coulomb
from ase_gnnp.nn import ElementEmbedding, FieldEmbedding, Interaction, RadialEmbedding
from ase_gnnp.nn.interaction import hidden_irreps

# e3nn compiles tensor products with torch.fx; a deep copy re-registers some Clebsch–Gordan
# constants of the generated code as buffers named like this. They are code artefacts fixed
# by the architecture, not state: keep them out of checkpoints and ignore them on load.
_CODEGEN_CONSTANT = re.compile(r"\._compiled_main\w*\._tensor_constant\d+$")


def _drop_codegen_constants(module, state_dict, prefix, local_metadata) -> None:
    for key in [k for k in state_dict if _CODEGEN_CONSTANT.search(k)]:
        del state_dict[key]


def _fill_codegen_constants(module, state_dict, prefix, *args) -> None:
    own = dict(module.named_buffers())
    for key in [k for k in state_dict if _CODEGEN_CONSTANT.search(k)]:
        del state_dict[key]
    for name, value in own.items():
        if _CODEGEN_CONSTANT.search("." + name):
            state_dict[prefix + name] = value


__all__ = ["GNNPModel"]


class _CompiledCache:
    """Holds a ``torch.compile``-d network; empty again in a copy of the model."""

    def __init__(self) -> None:
        self.fn = None

    def __deepcopy__(self, memo) -> _CompiledCache:
        return _CompiledCache()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.fn = None


class GNNPModel(nn.Module):
    """Message-passing potential ``E = Σ_i [s · ε(h_i) + μ + E0(Z_i)]``.

    Element embedding → ``num_layers`` equivariant interactions (the last one keeps only
    scalars) → per-atom MLP readout ``ε``, scaled by ``s`` (``scale``) and shifted by
    ``μ`` (``shift``) and by per-element reference energies ``E0`` (least-squares fit on
    the training set, see :func:`ase_gnnp.train.statistics.fit_statistics`).

    Parameters
    ----------
    config
        Architecture, see :class:`ase_gnnp.config.ModelConfig`.

    Examples
    --------
    >>> from ase.build import bulk
    >>> from ase_gnnp.graph import atoms_to_batch
    >>> model = GNNPModel(ModelConfig(cutoff=4.0))
    >>> out = model(atoms_to_batch([bulk("Si")], 4.0), stress=True)
    >>> out["forces"].shape, out["stress"].shape
    (torch.Size([2, 3]), torch.Size([1, 3, 3]))
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.embedding = ElementEmbedding(c)
        self.radial = RadialEmbedding(config.cutoff, config.num_radial, config.cutoff_p)
        irreps_sh = o3.Irreps.spherical_harmonics(config.lmax)
        self.spherical_harmonics = o3.SphericalHarmonics(
            irreps_sh, normalize=True, normalization="component"
        )
        irreps = o3.Irreps(f"{c}x0e")
        self.field_embedding = None
        if config.field:
            self.field_embedding = FieldEmbedding(c)
            irreps = irreps + o3.Irreps(f"{c}x1o")
        layers = []
        for k in range(config.num_layers):
            last = k == config.num_layers - 1
            irreps_out = o3.Irreps(f"{c}x0e") if last else hidden_irreps(c, config.lmax)
            layers.append(
                Interaction(
                    irreps,
                    irreps_out,
                    irreps_sh,
                    config.num_radial,
                    config.radial_hidden,
                    correlation=config.correlation,
                    product_lmax=config.last_lmax if last else None,
                )
            )
            irreps = layers[-1].irreps_out
        self.layers = nn.ModuleList(layers)
        self.readout = nn.Sequential(
            nn.Linear(c, config.readout_hidden), nn.SiLU(), nn.Linear(config.readout_hidden, 1)
        )
        self.charge_head = self.coulomb = None
        if config.long_range != "none":
            self.charge_head = ChargeEquilibration(c)
            damping = config.cutoff if config.coulomb_damping is None else config.coulomb_damping
            self.coulomb = Coulomb(
                damping,
                method=config.long_range,
                accuracy=config.coulomb_accuracy,
                real_cutoff=config.coulomb_cutoff,
            )
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("shift", torch.tensor(0.0))
        # float64 whatever the model's dtype (see site_energies and _apply)
        self.register_buffer("atomic_reference", torch.zeros(MAX_Z + 1, dtype=torch.float64))
        # which elements had their reference energy fitted (seen in training)
        self.register_buffer("fitted_elements", torch.zeros(MAX_Z + 1, dtype=torch.bool))
        #: uncertainty statistics (ase_gnnp.uq.UQStatistics), kept in checkpoints beside
        #: the weights; None until ase-gnnp uq fit
        self.uq = None
        # run-time options (not architecture, not saved): see set_performance_options
        self.gradient_checkpointing = False
        self.edge_chunk: int | None = None
        self.autocast_dtype: torch.dtype | None = None
        self.compile_inference = False
        self._compiled = _CompiledCache()
        self.register_state_dict_post_hook(_drop_codegen_constants)
        self.register_load_state_dict_pre_hook(_fill_codegen_constants)

    @property
    def cutoff(self) -> float:
        return self.config.cutoff

    @property
    def dtype(self) -> torch.dtype:
        return self.scale.dtype

    def set_performance_options(
        self,
        gradient_checkpointing: bool | None = None,
        edge_chunk: int | None | str = "keep",
        autocast_dtype: torch.dtype | None | str = "keep",
        compile_inference: bool | None = None,
    ) -> GNNPModel:
        """Trade memory, time and precision; the results stay the same function of the inputs.

        Parameters
        ----------
        gradient_checkpointing
            Keep only each interaction layer's inputs during the forward pass and recompute
            the layer in the backward pass (``torch.utils.checkpoint``, non-reentrant, so
            force training's double backward works): less memory for more time.
        edge_chunk
            Process at most this many edges at a time in every interaction, recomputing
            each chunk's messages in the backward pass (see
            :meth:`ase_gnnp.nn.Interaction.forward`); ``None`` for all at once. Lets
            inference with forces reach large systems.
        autocast_dtype
            ``torch.bfloat16`` or ``torch.float16``: run the interaction layers and the
            readout under ``torch.autocast`` (mixed precision); positions, edge geometry,
            radial and angular bases, message sums, energies and their derivatives stay
            in the model's dtype. ``None`` for full precision.
        compile_inference
            Evaluate energies, forces and stress through ``torch.compile`` (dynamic
            shapes) when no second derivative is needed; training (``create_graph``) and
            field response stay eager, since compiled graphs do not support double
            backward. The first call compiles (a minute or more on a CPU; again for a new
            kind of input). The compiled network shares this model's parameters. On a CPU
            it runs with one torch thread only (a ValueError otherwise): with two, the
            kernels torch 2.13's inductor generated for this model corrupted the heap.
            Used in evaluation mode only, and not together with ``edge_chunk``.

        Returns the model, for chaining. Arguments left out keep their current values.
        """
        if gradient_checkpointing is not None:
            if not isinstance(gradient_checkpointing, bool):
                raise TypeError(f"gradient_checkpointing must be True or False, got "
                                f"{gradient_checkpointing!r}")  # fmt: skip
            self.gradient_checkpointing = gradient_checkpointing
        if edge_chunk != "keep":
            if edge_chunk is not None and (
                isinstance(edge_chunk, bool) or not isinstance(edge_chunk, int) or edge_chunk < 1
            ):
                raise ValueError(f"edge_chunk must be None or a positive integer, got "
                                 f"{edge_chunk!r}")  # fmt: skip
            self.edge_chunk = edge_chunk
        if autocast_dtype != "keep":
            if autocast_dtype not in (None, torch.bfloat16, torch.float16):
                raise ValueError(f"autocast_dtype must be None, torch.bfloat16 or "
                                 f"torch.float16, got {autocast_dtype!r}")  # fmt: skip
            self.autocast_dtype = autocast_dtype
        if compile_inference is not None:
            if not isinstance(compile_inference, bool):
                raise TypeError(f"compile_inference must be True or False, got "
                                f"{compile_inference!r}")  # fmt: skip
            self.compile_inference = compile_inference
        if self.compile_inference and self.edge_chunk is not None:
            self.compile_inference = False
            raise ValueError(
                "compile_inference and edge_chunk exclude each other: the chunk loop over a "
                "changing number of edges would recompile each time"
            )
        self._compiled = _CompiledCache()  # options are baked into a compiled graph
        return self

    def _apply(self, fn, *args, **kwargs):
        # .to(), .double(), .cuda() ... make new tensors: a compiled twin would keep the old
        self._compiled = _CompiledCache()
        reference = self.atomic_reference
        out = super()._apply(fn, *args, **kwargs)
        # the reference energies stay float64 (a float32 copy would round them): only moved
        self.atomic_reference = reference.to(device=self.scale.device, dtype=torch.float64)
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._compiled = _CompiledCache()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _compiled_network(self):
        """``torch.compile`` of the network of a twin model sharing these parameters.

        The twin is built with e3nn's fx code generation not scripted
        (``jit_script_fx=False``, restored afterwards), which dynamo can trace.
        """
        if self._compiled.fn is None:
            import e3nn

            saved = e3nn.get_optimization_defaults()
            e3nn.set_optimization_defaults(jit_script_fx=False)
            try:
                twin = GNNPModel(self.config)
            finally:
                e3nn.set_optimization_defaults(**saved)
            twin.load_state_dict(self.state_dict(), assign=True)
            twin.set_performance_options(edge_chunk=self.edge_chunk,
                                         autocast_dtype=self.autocast_dtype)  # fmt: skip
            twin.train(self.training)
            self._compiled.fn = torch.compile(twin._network, dynamic=True)
        return self._compiled.fn

    def set_avg_num_neighbors(self, value: float) -> None:
        for layer in self.layers:
            layer.avg_num_neighbors.fill_(float(value))

    def atomic_energies(
        self, data: Data, pos: torch.Tensor, cell: torch.Tensor, field: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-atom network energies (N,) in eV and latent invariant features (N, C)."""
        energies, latent, _ = self._network(data, pos, cell, field)
        return energies, latent

    def _network(
        self, data: Data, pos: torch.Tensor, cell: torch.Tensor, field: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        vectors = edge_vectors(data, pos, cell)
        lengths = torch.linalg.norm(vectors, dim=-1)
        edge_sh = self.spherical_harmonics(vectors)
        edge_radial = self.radial(lengths)
        numbers = data[K.ATOMIC_NUMBERS]
        h = self.embedding(numbers)
        if self.field_embedding is not None:
            if field is None:
                field = torch.zeros(data[K.CELL].shape[0], 3, dtype=h.dtype, device=h.device)
            h = torch.cat([h, self.field_embedding(h, field[batch_index(data)])], dim=-1)
        edge_index = data[K.EDGE_INDEX]
        mixed = self.autocast_dtype is not None
        if mixed and self.dtype == torch.float64:
            raise ValueError("autocast_dtype needs a float32 model: autocast leaves float64 "
                             "tensors in float64")  # fmt: skip
        precision = (torch.autocast(h.device.type, dtype=self.autocast_dtype) if mixed
                     else contextlib.nullcontext())  # fmt: skip
        with precision:
            for layer in self.layers:
                if self.gradient_checkpointing and torch.is_grad_enabled():
                    h = checkpoint(layer, h, edge_sh, edge_radial, edge_index, self.edge_chunk,
                                   use_reentrant=False)  # fmt: skip
                else:
                    h = layer(h, edge_sh, edge_radial, edge_index, self.edge_chunk)
            eps = self.readout(h).squeeze(-1)
        latent = h.to(self.dtype)
        return self.site_energies(eps.to(self.dtype), numbers), latent, lengths

    def site_energies(self, eps: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """``s · ε + μ + E0(Z)`` per atom (N,), in float64 whatever the model's dtype.

        The network's part ``s · ε + μ`` (tenths of an eV) runs in the model's dtype; the
        reference energies (float64) and the sums over atoms do not: a 27-atom molecule of
        -1.8e4 eV has a float32 resolution of 2 meV in its total energy, as large as the
        errors a good potential makes, whereas float64 keeps it to 1e-11 eV.
        """
        network = (self.scale * eps + self.shift).to(torch.float64)
        return network + self.atomic_reference[numbers]

    def forward(
        self,
        data: Data,
        forces: bool = True,
        stress: bool = False,
        create_graph: bool = False,
        response: bool = False,
        dipole: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Energy and, in the same autograd pass, forces, stress and field response.

        Parameters
        ----------
        data
            Graph or batch from :mod:`ase_gnnp.graph` (with ``total_charge`` and
            ``electric_field`` per structure).
        forces
            Compute forces (N, 3), eV/Å: ``-∂E/∂r``, plus ``q_i 𝓔`` on periodic cells.
        stress
            Compute ``(1/V) ∂E/∂ε`` (B, 3, 3), eV/Å^3 (ASE sign), and the virial
            ``-∂E/∂ε`` (eV). Stress is zero for graphs not periodic in all directions.
        create_graph
            Keep the graph of the derivatives (training on them).
        response
            Also the dipole ``-∂E/∂𝓔`` (B, 3) e·Å, the polarizability ``-∂²E/∂𝓔²``
            (B, 3, 3) e·Å²/V and the Born charges ``∂F_iβ/∂𝓔_α`` (N, 3, 3) e; needs
            ``field=True``. The dipole and polarizability of periodic graphs are those of
            the field-dependent network alone (the polarization of a crystal is not a
            function of positions), and are not physical observables.
        dipole
            Only the dipole, in the same gradient pass as forces (training on dipoles).

        Returns
        -------
        dict
            ``energy`` (B,), ``energies`` (N,), ``latent`` (N, C), ``charges`` (N,) with
            long range; ``forces``, ``stress``, ``virial``, ``dipole``, ``polarizability``,
            ``born_effective_charges`` when asked. ``energy`` and ``energies`` are float64
            (:meth:`site_energies`), the rest in the model's dtype.

        Notes
        -----
        With charges and a field, molecules (no periodic direction) get the coupling
        ``-Σ_i q_i r_i·𝓔`` in their energy, so every response property is an exact
        derivative of ``E(r; 𝓔)``. For periodic cells that term depends on the choice of
        images and is left out of the energy; the force on each atom gets ``q_i 𝓔``
        instead, and the Born charges the matching ``q_i δ_αβ + 𝓔_β ∂q_i/∂𝓔_α``.
        """
        field_grad = response or dipole
        if field_grad and self.field_embedding is None:
            raise ValueError("dipole, polarizability and Born charges need a model with field=True")
        batch = batch_index(data)
        num_graphs = data[K.CELL].shape[0]
        pos = data[K.POSITIONS]
        cell = data[K.CELL]
        field = data[K.FIELD] if K.FIELD in data else None
        if field is None:
            field = torch.zeros(num_graphs, 3, dtype=pos.dtype, device=pos.device)
        field = field.to(pos.dtype)
        periodic = data[K.PBC].any(dim=1)  # (B,) any periodic direction: no field coupling
        inputs = []
        if forces or response:
            pos = pos.detach().requires_grad_(True)
            inputs.append(pos)
        if stress:
            strain = torch.zeros_like(cell, requires_grad=True)
            inputs.append(strain)
            sym = 0.5 * (strain + strain.transpose(1, 2))
            pos = pos + torch.einsum("na,nab->nb", pos, sym[batch])
            cell = cell + torch.bmm(cell, sym)
        if field_grad:
            field = field.detach().requires_grad_(True)
            inputs.append(field)
        # compiled: inference only (no double backward; gradients of the twin's parameters
        # would not reach this model's, so never while training)
        eager = not self.compile_inference or create_graph or field_grad or self.training
        if not eager and pos.device.type == "cpu" and torch.get_num_threads() > 1:
            raise ValueError(
                f"compiled inference on CPU runs with one torch thread only (with "
                f"{torch.get_num_threads()}, inductor's kernels of torch 2.13 corrupted the heap "
                f"here): call torch.set_num_threads(1) or leave compile off"
            )
        network = self._network if eager else self._compiled_network()
        energies, latent, lengths = network(data, pos, cell, field)
        out = {K.LATENT: latent}
        charges = None
        if self.charge_head is not None:
            total = data[K.TOTAL_CHARGE] if K.TOTAL_CHARGE in data else field[:, 0] * 0.0
            charges = self.charge_head(latent, batch, total, data[K.ATOMIC_NUMBERS])
            natoms = data[K.NUM_ATOMS].to(pos.device)
            ptr = torch.cat([natoms.new_zeros(1), natoms.cumsum(0)])
            pbc = data[K.PBC]
            energies = energies + self.coulomb(
                charges, pos, cell, pbc, ptr, data[K.EDGE_INDEX], lengths
            )
            if self.field_embedding is not None:
                coupling = -charges * (pos * field[batch]).sum(-1)
                energies = energies + torch.where(periodic[batch], 0.0, coupling)
            out[K.CHARGES] = charges
        energy = torch.zeros(num_graphs, dtype=energies.dtype, device=energies.device)
        energy = energy.index_add(0, batch, energies)
        out[K.ENERGY] = energy
        out[K.ATOMIC_ENERGIES] = energies
        if not inputs:
            return out
        grads = torch.autograd.grad(
            energy.sum(), inputs, create_graph=create_graph or response, allow_unused=True
        )
        grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
        if forces:
            f = -grads[0]
            if charges is not None and self.field_embedding is not None:
                f = f + torch.where(periodic[batch, None], charges[:, None] * field[batch], 0.0)
            out[K.FORCES] = f
        if stress:
            dE_dstrain = grads[1]
            out[K.VIRIAL] = -dE_dstrain
            # stress is defined for cells periodic in 3-D; other graphs of a batch get 0
            full = data[K.PBC].all(dim=1).view(-1, 1, 1)
            volume = torch.linalg.det(data[K.CELL]).abs().view(-1, 1, 1)
            safe = torch.where(full, volume, torch.ones_like(volume))
            out[K.STRESS] = torch.where(full, dE_dstrain / safe, 0.0)
        if field_grad:
            out[K.DIPOLE] = -grads[-1]
        if response:
            out.update(self._response(out[K.DIPOLE], pos, field, charges, periodic, batch,
                                      create_graph))  # fmt: skip
        return out

    def _response(self, dipole, pos, field, charges, periodic, batch, create_graph) -> dict:
        """Polarizability and Born charges from second derivatives of the dipole."""
        out = {}
        columns_p, rows_b = [], []
        for a in range(3):
            d_pos, d_field = torch.autograd.grad(
                dipole[:, a].sum(), [pos, field], create_graph=create_graph,
                retain_graph=True, allow_unused=True,
            )  # fmt: skip
            rows_b.append(torch.zeros_like(pos) if d_pos is None else d_pos)
            columns_p.append(torch.zeros_like(field) if d_field is None else d_field)
        # polar[g, a, b] = dμ_b/d𝓔_a;  born[i, a, b] = dμ_a/dr_ib = dF_ib/d𝓔_a
        polar = torch.stack(columns_p, dim=-1)
        born = torch.stack(rows_b, dim=1)
        if charges is not None and bool(periodic.any()):
            eye = torch.eye(3, dtype=born.dtype, device=born.device)
            extra = charges[:, None, None] * eye
            if bool(field.detach().abs().max() > 0):
                probe = torch.zeros_like(charges, requires_grad=True)
                # dq_i/d𝓔_a for all atoms at once: a vector-Jacobian product with a probe,
                # differentiated again with respect to the probe
                (g,) = torch.autograd.grad((charges * probe).sum(), field, create_graph=True,
                                           retain_graph=True, allow_unused=True)  # fmt: skip
                if g is not None:
                    dq = torch.stack(
                        [torch.autograd.grad(g[:, a].sum(), probe, create_graph=create_graph,
                                             retain_graph=True)[0] for a in range(3)], dim=-1
                    )  # fmt: skip
                    extra = extra + dq[:, :, None] * field[batch][:, None, :]
            born = born + torch.where(periodic[batch, None, None], extra, 0.0)
        out[K.POLARIZABILITY] = polar
        out[K.BORN_CHARGES] = born
        return out
